"""`python -m bench.p2p_share [--images 271] [--size 512]`: node → node over WebRTC.

Standalone (the `python -m bench --only p2p` scenario is bench/p2p.py): two `isthmus
serve` processes on 127.0.0.1, a generated CT study imported into the first, `isthmus share` there and
`isthmus fetch` on the second; prints MB/s from the fetch command's start to its exit
(complete and verified: every instance hashed and durably stored).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.procs import CommandFailed
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port, wait_for_port


def isthmus(*args: str) -> str:
    """`isthmus ARGS` in this Python; its stdout (CommandFailed with its stderr's tail)."""
    done = subprocess.run(
        [sys.executable, "-m", "isthmus", *args], capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise CommandFailed(f"isthmus {args[0]} failed: {done.stderr[-2000:]}")
    return done.stdout


def arguments(*extra: tuple[str, int]) -> argparse.Namespace:
    """--images and --size of the generated study (and `extra` integer options)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=271)
    parser.add_argument("--size", type=int, default=512)
    for name, default in extra:
        parser.add_argument(name, type=int, default=default)
    return parser.parse_args()


def imported_study(folder: Path, images: int, size: int) -> tuple[list[Path], int]:
    """A generated CT series of `images` slices imported into the archive folder/"a";
    its files and their size in bytes."""
    spec = StudySpec(series_count=1, instances_per_series=images, rows=size, columns=size)
    files = write_study(spec, folder / "input")
    isthmus("import", "--data", str(folder / "a"), str(folder / "input"))
    return files, sum(f.stat().st_size for f in files)


def main() -> None:
    args = arguments()
    with tempfile.TemporaryDirectory(prefix="p2p-bench-") as tmp:
        folder = Path(tmp)
        files, total = imported_study(folder, args.images, args.size)
        procs, urls = [], []
        for name in ("a", "b"):
            port = free_port()
            command = [
                sys.executable,
                "-m",
                "isthmus",
                "serve",
                "--data",
                str(folder / name),
                "--log-level",
                "warning",
            ]
            command += [
                "--aet",
                name.upper(),
                "--http-port",
                str(port),
                "--dicom-port",
                str(free_port()),
            ]
            procs.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            wait_for_port(port, timeout=60)
            urls.append(f"http://127.0.0.1:{port}")
        try:
            import pydicom

            study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
            link = isthmus("share", study, "--server", urls[0]).strip().splitlines()[-1]
            start = time.perf_counter()
            out = isthmus("fetch", link, "--server", urls[1])
            seconds = time.perf_counter() - start
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
        print(out.strip())
        print(
            f"{len(files)} instances, {total / 1e6:.1f} MB in {seconds:.2f} s: {total / 1e6 / seconds:.1f} MB/s node → node"
        )


if __name__ == "__main__":
    main()
