"""File store against S3 store, same run: `python -m bench.blobstores [--instances N]`.

Starts SeaweedFS (`weed mini`, loopback) and two `isthmus serve` processes on SQLite,
one with its blobs in files, one in S3, then for each:

- **C-STORE**: DCMTK's storescu sends N generated CT instances (512×512, 16 bit,
  about 0.5 MB each) on one association; then N others on 4 associations at once;
- **WADO-RS study**: the whole study as one multipart response, as stored;
- **WADO-RS instances**: each instance by its own request, one after the other;
- **blob store, 64 MiB**: one put and one streamed read of a 64 MiB blob, through the
  blob store interface in this process (what a large multi-frame instance costs).

Prints a table (instances/s and MB/s, median of `--repeat` runs) and writes it to
bench/out/blobstores.md.  Every server binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from isthmus.archive.storage import open_blob_store
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port, wait_for_port
from isthmus.testing.seaweedfs import TemporarySeaweedFS

OUT = Path(__file__).resolve().parent / "out"
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


class Server:
    """`isthmus serve` in a child process (so client and server do not share a GIL)."""

    def __init__(self, folder: Path, blob_url: str, env: dict[str, str]) -> None:
        self.dicom_port, self.http_port = free_port(), free_port()
        args = [sys.executable, "-m", "isthmus", "serve", "--data", str(folder / "data")]
        args += ["--dicom-port", str(self.dicom_port), "--http-port", str(self.http_port)]
        args += ["--log-level", "warning"] + (["--blob-url", blob_url] if blob_url else [])
        self.process = subprocess.Popen(
            args, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.http_port, timeout=60)
        wait_for_port(self.dicom_port, timeout=60)
        self.root = f"http://127.0.0.1:{self.http_port}/dicom-web"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def timed(action: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    action(*args)
    return time.perf_counter() - started


def store(server: Server, folder: Path) -> None:
    subprocess.run(
        ["storescu", "-aec", "ISTHMUS", "+sd", "127.0.0.1", str(server.dicom_port), str(folder)],
        check=True,
        capture_output=True,
        timeout=600,
    )


def retrieve_study(server: Server, study_uid: str) -> int:
    with httpx.Client(timeout=300) as client:
        with client.stream(
            "GET", f"{server.root}/studies/{study_uid}", headers={"Accept": AS_STORED}
        ) as rsp:
            rsp.raise_for_status()
            return sum(len(chunk) for chunk in rsp.iter_bytes())


def retrieve_each(server: Server, paths: list[tuple[str, str, str]]) -> int:
    total = 0
    with httpx.Client(base_url=server.root, timeout=300) as client:
        for study, series, sop in paths:
            rsp = client.get(
                f"/studies/{study}/series/{series}/instances/{sop}",
                headers={"Accept": "application/dicom; transfer-syntax=*"},
            )
            rsp.raise_for_status()
            total += len(rsp.content)
    return total


def store_parallel(server: Server, folders: list[Path]) -> None:
    """One storescu (one association) per folder, all at once."""
    children = [
        subprocess.Popen(
            ["storescu", "-aec", "ISTHMUS", "+sd", "127.0.0.1", str(server.dicom_port), str(f)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for f in folders
    ]
    if any(child.wait(timeout=600) for child in children):
        raise RuntimeError("storescu failed")


def measure(server: Server, work: Path, uids: list[tuple[str, str, str]]) -> dict[str, float]:
    quarters = sorted((work / "in4").iterdir())
    return {
        "C-STORE": timed(store, server, work / "in"),
        "C-STORE, 4 associations": timed(store_parallel, server, quarters),
        "WADO-RS study": timed(retrieve_study, server, uids[0][0]),
        "WADO-RS instances": timed(retrieve_each, server, uids),
    }


def large_blob(url: str, work: Path) -> tuple[float, float]:
    store = open_blob_store(url or f"file://{work / 'large'}")
    data = os.urandom(64 << 20)
    put = timed(store.put, "ab/large.dcm", [data])

    def read() -> None:
        with store.open("ab/large.dcm") as fh:
            while fh.read(1 << 20):
                pass

    get = timed(read)
    store.delete("ab/large.dcm")
    return put, get


def run(count: int, repeat: int) -> list[tuple[str, str, str]]:
    rows: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="isthmus-bench-blobs-") as tmp:
        work = Path(tmp)
        files = write_study(
            StudySpec(rows=512, columns=512, instances_per_series=count), work / "in"
        )
        size = sum(p.stat().st_size for p in files)
        for quarter in range(4):  # another study of as many instances, in four parts
            spec = StudySpec(rows=512, columns=512, instances_per_series=count // 4)
            write_study(spec, work / "in4" / str(quarter))
        import pydicom

        uids = []
        for path in files:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            uids.append((ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID))
        s3 = TemporarySeaweedFS().start()
        try:
            for attempt in range(repeat):
                for name, url in (("files", ""), ("S3", s3.url())):
                    server = Server(work / f"{name}-{attempt}", url, s3.env)
                    try:
                        for what, seconds in measure(server, work, uids).items():
                            rows.setdefault((name, what), []).append(seconds)
                    finally:
                        server.stop()
                    env_before = dict(os.environ)
                    os.environ.update(s3.env)
                    try:
                        put, get = large_blob(url, work / f"{name}-{attempt}")
                    finally:
                        os.environ.clear()
                        os.environ.update(env_before)
                    rows.setdefault((name, "put 64 MiB blob"), []).append(put)
                    rows.setdefault((name, "read 64 MiB blob"), []).append(get)
        finally:
            s3.close()
    table = []
    for (name, what), seconds in rows.items():
        median = statistics.median(seconds)
        large = "64 MiB" in what
        mb = (64 * 1.048576 if large else size / 1e6) / median
        rate = "" if large else f"{count / median:.0f}"
        table.append((what, name, f"{median:.2f} s", rate, f"{mb:.0f}"))
    return sorted(table, key=lambda r: (r[0], r[1]))  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    table = run(args.instances, args.repeat)
    lines = [
        f"{args.instances} CT instances (512x512, 16 bit), median of {args.repeat} runs, "
        "SQLite index, loopback:",
        "",
        "| what | blob store | time | instances/s | MB/s |",
        "|---|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in table),
    ]
    text = "\n".join(lines)
    print(text)
    OUT.mkdir(exist_ok=True)
    (OUT / "blobstores.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
