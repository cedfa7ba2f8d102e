"""The per-request cost of the HTTP door: QIDO-RS and WADO-RS metadata on a loaded index.

    .venv/bin/python -m bench.http_door [--instances K] [--requests N] [--postgresql]
                                        [--baseline SRC_DIR] [--profile] [--work DIR]
                                        [--pause MS] [--client keepalive,httpx]

An index of K instances of the scale population (bench/scale/population.py, loaded
in-process by bench/scale/load.py and kept in `--work` between runs) is served by
`isthmus serve` on 127.0.0.1 (no start-up check: the loaded rows have no blobs), and
every query of the scale benchmark (bench/scale/queries.py), `/health`, and three with
`includefield` (indexed attributes, `all`, attributes only the stored JSON holds) are
asked N times each over one keep-alive connection (bench/keepalive.py; `--client
httpx` for httpx's instead, `--client keepalive,httpx` both in turn), the value
changing from request to request.  Printed: p50 and p95 in milliseconds per
endpoint (client wall time, first byte sent to last byte read).

`--postgresql` loads the index into a PostgreSQL server of its own (durable defaults,
started and stopped by the run) instead of a kept SQLite file.
`--baseline SRC_DIR` starts a second server importing Isthmus from SRC_DIR (an older
tree: `git archive COMMIT src | tar -x -C DIR`, then SRC_DIR=DIR/src) and asks both in
turn, request by request, so that the load of a shared machine falls on both alike.
`--profile` records the (first) server with py-spy during the requests and prints
where its samples went (bench/profile.py).  `--pause MS` waits MS milliseconds before
each request: back to back, a server answers warm; after a pause, as a user's requests
and the scale benchmark's (which asks Isthmus and Orthanc in turn) arrive, it answers
from a machine that has been idle (docs/performance.md, "The cost of a pause").
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench.keepalive import CLIENTS, Client
from bench.profile import Recorder
from bench.scale import population, queries
from bench.scale.load import load
from bench.scale.servers import LoadedIsthmus
from isthmus.archive import Archive
from isthmus.testing.net import free_port
from isthmus.testing.postgres import TemporaryPostgres

OUT = Path(__file__).resolve().parent / "out" / "http_door"
HERE = str(Path(__file__).resolve().parent.parent / "src")
JSON = "application/dicom+json"
INCLUDE = "includefield=00081030,00100030,00080090,00200010"  # indexed columns
INCLUDE_STORED = "includefield=00080070,00080080"  # Manufacturer, Institution: stored JSON


class Served(LoadedIsthmus):
    """A loaded server importing Isthmus from `pythonpath`."""

    def __init__(self, workdir: Path, url: str, pythonpath: str) -> None:
        super().__init__(workdir, free_port(), url)
        self.pythonpath = pythonpath

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PYTHONPATH"] = self.pythonpath
        return env


def endpoints() -> dict[str, Callable[[population.Study], str]]:
    """name → request path (under the service root, or absolute from /) of a study."""
    out: dict[str, Callable[[population.Study], str]] = {"/health": lambda s: "!/health"}
    for name, (_, path_of, _must) in queries.QIDO.items():
        out[name] = path_of
    out["PatientID + includefield"] = lambda s: f"/studies?PatientID={s.patient_id}&{INCLUDE}"
    out["PatientID + includefield=all"] = lambda s: (
        f"/studies?PatientID={s.patient_id}&includefield=all"
    )
    out["ModalitiesInStudy + stored includefield"] = lambda s: (
        f"/studies?ModalitiesInStudy={s.modality}&limit=100&{INCLUDE_STORED}"
    )
    return out


def postgres_index(instances: int, server: TemporaryPostgres, work: Path) -> str:
    """The URL of a fresh PostgreSQL database holding the first `instances`."""
    url = server.create_database("door")
    archive = Archive(url, f"file://{work / 'pg-blobs'}")
    try:
        print(f"loading {instances:,} instances: {load(archive, 0, instances):.1f} s")
    finally:
        archive.close()
    return url


def index(instances: int, work: Path) -> str:
    """The SQLite URL of an index holding the first `instances` (loaded once, kept)."""
    folder = work / f"index-{instances}"
    db = folder / "index.sqlite"
    url = f"sqlite:///{db}"
    if not (folder / "loaded").exists():
        folder.mkdir(parents=True, exist_ok=True)
        db.unlink(missing_ok=True)
        archive = Archive(url, f"file://{folder / 'blobs'}")
        try:
            print(f"loading {instances:,} instances: {load(archive, 0, instances):.1f} s")
        finally:
            archive.close()
        (folder / "loaded").touch()
    return url


def ask(
    clients: list[Client],
    roots: list[str],
    held: list[population.Study],
    requests: int,
    pause: float = 0.0,
) -> list[dict[str, list[float]]]:
    """Every endpoint `requests` times per server, servers in turn, `pause` ms before
    each request; ms samples."""
    rng = random.Random(10)
    out: list[dict[str, list[float]]] = [{} for _ in roots]
    for name, path_of in endpoints().items():
        picks = [rng.choice(held[:-1] or held) for _ in range(requests + queries.WARMUP)]
        for n, study in enumerate(picks):
            order = list(range(len(roots))) if n % 2 == 0 else list(range(len(roots)))[::-1]
            for k in order:
                path = path_of(study)
                url = roots[k].rsplit("/dicom-web", 1)[0] + path[1:] if path[0] == "!" else None
                if pause:
                    time.sleep(pause / 1000)
                elapsed = _get(clients[k], url or roots[k] + path)
                if n >= queries.WARMUP:
                    out[k].setdefault(name, []).append(elapsed)
    return out


def _get(client: Client, url: str) -> float:
    started = time.perf_counter()
    status, body = client.get(url, JSON)
    elapsed = (time.perf_counter() - started) * 1000
    if status not in (200, 204):
        raise RuntimeError(f"{url}: HTTP {status} {body[:200]!r}")
    return elapsed


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def report(names: list[str], results: list[dict[str, list[float]]]) -> None:
    head = "".join(f" | {n} p50 / p95" for n in names)
    print(f"| endpoint{head} |")
    print("|---" * (len(names) + 1) + "|")
    for endpoint in results[0]:
        cells = "".join(
            f" | {statistics.median(r[endpoint]):.2f} / {p95(r[endpoint]):.2f}" for r in results
        )
        print(f"| {endpoint}{cells} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--instances", type=int, default=5000)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--baseline", help="source folder (holding isthmus/) to compare with")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--postgresql", action="store_true", help="a PostgreSQL index")
    p.add_argument("--work", type=Path, default=OUT)
    p.add_argument("--pause", type=float, default=0.0, help="ms to wait before each request")
    p.add_argument(
        "--client",
        default="keepalive",
        help=f"the client(s), comma-separated, asked in turn: {', '.join(sorted(CLIENTS))}",
    )
    args = p.parse_args(argv)
    unknown = set(args.client.split(",")) - set(CLIENTS)
    if unknown:
        p.error(f"unknown client(s): {', '.join(sorted(unknown))}")
    pg = TemporaryPostgres(durable=True).start() if args.postgresql else None
    try:
        return _run(args, pg)
    finally:
        if pg is not None:
            pg.stop()


def _run(args: argparse.Namespace, pg: TemporaryPostgres | None) -> int:
    """Serve, ask, report (main's body, with the index chosen)."""
    if pg is not None:
        url = postgres_index(args.instances, pg, args.work)
    else:
        url = index(args.instances, args.work)
    held = population.first_studies(args.instances)
    sides = [("current", HERE)]
    if args.baseline:
        sides.append(("baseline", os.path.abspath(args.baseline)))
    servers = [Served(args.work / f"serve-{name}", url, src) for name, src in sides]
    kinds = args.client.split(",")
    # Every server through every client asked (server, client) pair by pair, in turn.
    pairs = [(server, kind) for server in servers for kind in kinds]
    names = [name + (f" ({kind})" if len(kinds) > 1 else "") for name, _ in sides for kind in kinds]
    clients = [CLIENTS[kind](60.0) for _server, kind in pairs]
    try:
        for server in servers:
            server.start()
        roots = [server.dicomweb for server, _kind in pairs]
        if args.profile and servers[0].proc is not None:
            stem = args.work / "profile"
            with Recorder(servers[0].proc.pid, stem, rate=500) as rec:
                results = ask(clients, roots, held, args.requests, args.pause)
            summary = rec.summary(top=40)
            for key in ("threads_pct", "self_pct", "inclusive_pct"):
                print(key)
                for frame, pct in summary.get(key, []):
                    print(f"  {pct:5.1f}  {frame}")
            print(f"collapsed stacks: {stem.with_suffix('.txt')}")
        else:
            results = ask(clients, roots, held, args.requests, args.pause)
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()
    pause = f", {args.pause:g} ms pause before each" if args.pause else ""
    print(f"{args.instances:,} instances, {args.requests} requests per endpoint{pause}, ms")
    report(names, results)
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
