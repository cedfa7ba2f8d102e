"""One measured run per system: grow (or load) the archive, then ask it everything."""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import dimse
from bench.procs import CommandFailed, Server
from bench.scale import population, queries
from bench.scale.load import load as archive_load
from bench.scale.servers import LoadedIsthmus, OrthancPostgres, orthanc_index_bytes
from bench.systems import OrthancServer
from isthmus.archive import Archive
from isthmus.testing.net import free_port
from isthmus.testing.postgres import TemporaryPostgres

WORKERS = 4


@dataclass
class Rival:
    """A running Orthanc holding the first `size` instances, asked alongside Isthmus when
    Isthmus holds as many; its results go into `out`."""

    server: Server
    size: int
    out: dict[str, Any]


def isthmus(
    backend: str,
    sizes: list[int],
    work: Path,
    ingest_count: int,
    out: dict[str, Any],
    rival: Rival | None = None,
) -> None:
    """Isthmus on `backend` ("sqlite" or "postgresql"), grown through `sizes`; results go
    into `out` as they come (a failure keeps what was measured before it)."""
    folder = work / f"isthmus-{backend}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pg = TemporaryPostgres(durable=True).start() if backend == "postgresql" else None
    url = pg.create_database("scale") if pg else f"sqlite:///{folder / 'index.sqlite'}"
    blob_url = f"file://{folder / 'serve' / 'data' / 'blobs'}"
    try:
        print(f"== isthmus on {backend}: ingest into an empty archive", flush=True)
        with LoadedIsthmus(folder / "serve", free_port(), url) as server:
            out["ingest_empty_per_s"] = ingest(server, 1, ingest_count, work)
        loaded, run = 0, 1
        for size in sizes:
            archive = Archive(url, blob_url)
            try:
                print(f"== isthmus on {backend}: loading to {size:,} instances", flush=True)
                seconds = archive_load(archive, loaded, size)
            finally:
                archive.close()
            loaded, run = size, run + 1
            with LoadedIsthmus(folder / "serve", free_port(), url) as server:
                beside = rival if rival is not None and rival.size == size else None
                servers = [server] + ([beside.server] if beside else [])
                results = measure(servers, size, [run, 90], ingest_count, work)
                if beside is not None:
                    beside.out.update(results[1])
            row = out["sizes"][str(size)] = results[0]
            row["load_seconds"] = round(seconds, 1)
            row["index_bytes_per_instance"] = round(
                index_bytes(url) / (size + ingest_count * run), 1
            )
            print(f"   {row}", flush=True)
    finally:
        if pg:
            pg.stop()


def measure(
    servers: list[Server], size: int, runs: list[int], ingest_count: int, work: Path
) -> list[dict[str, Any]]:
    """Queries, C-FIND and ingest against running servers holding the same `size`
    instances, asked in turn (queries.py); ingest runs `runs` (one per server)."""
    held = population.first_studies(size)
    timings = queries.qido([s.dicomweb for s in servers], held)  # type: ignore[attr-defined]
    finds = queries.find(
        [lambda pid, s=s: dimse.findscu(s, {"PatientID": pid}) for s in servers], held
    )
    results = []
    for server, timing, find, run in zip(servers, timings, finds, runs, strict=False):
        result: dict[str, Any] = {name: t.summary() for name, t in timing.items()}
        result["C-FIND study (findscu)"] = find.summary()
        if ingest_count:
            result["ingest_per_s"] = ingest(server, run, ingest_count, work)
        results.append(result)
    return results


def ingest(server: Server, run: int, count: int, work: Path) -> float:
    """Instances per second for `count` new instances, one association per study,
    four storescu at a time (the ingest method of bench/ingest.py)."""
    folder = work / f"ingest-{server.name}-{run}"
    groups = write_files(population.batch(count, run), folder)
    before = server.count()  # type: ignore[attr-defined]
    seconds = dimse.storescu_parallel(server, groups, workers=WORKERS)
    stored = server.count() - before  # type: ignore[attr-defined]
    shutil.rmtree(folder, ignore_errors=True)
    if stored != count:
        raise CommandFailed(f"{server.name}: {stored} of {count} instances stored")
    return round(count / seconds, 1)


def write_files(items: list[population.Instance], folder: Path) -> list[list[Path]]:
    """Part 10 files, one folder per study; the files of each study, in order."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for item in items:
        study_dir = folder / f"{item.study.index:07d}"
        if not groups[item.study.uid]:
            study_dir.mkdir(parents=True, exist_ok=True)
        path = study_dir / f"{item.series:02d}-{item.number:03d}.dcm"
        path.write_bytes(population.encode(item, part10=True))
        groups[item.study.uid].append(path)
    return list(groups.values())


def index_bytes(url: str) -> int:
    """Bytes the index takes on disk (SQLite file with its WAL; PostgreSQL database)."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    engine = sa.create_engine("postgresql+psycopg://" + url.split("://", 1)[1])
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
            )
    finally:
        engine.dispose()


@contextmanager
def orthanc(index: str, size: int, work: Path) -> Iterator[Rival]:
    """Orthanc with `index` ("sqlite" or "postgresql") loaded with the first `size`
    instances over C-STORE (four storescu at a time), running while the context lasts;
    its measurements are filled in by the Isthmus run it stands beside."""
    folder = work / f"orthanc-{index}"
    shutil.rmtree(folder, ignore_errors=True)
    data = work / f"orthanc-data-{size}"
    if not data.exists():
        print(f"== writing {size:,} instances for Orthanc", flush=True)
        write_files(list(population.instances(size)), data)
    groups = [sorted(d.glob("*.dcm")) for d in sorted(p for p in data.iterdir() if p.is_dir())]
    pg = TemporaryPostgres(durable=True).start() if index == "postgresql" else None
    try:
        if pg:
            pg.create_database("orthanc")
            server: OrthancServer = OrthancPostgres(
                folder, free_port(), "127.0.0.1", pg.port, pg.user, "orthanc"
            )
        else:
            server = OrthancServer(folder, free_port())
        with server:
            print(f"== orthanc ({index}): loading {size:,} instances over C-STORE", flush=True)
            seconds = dimse.storescu_parallel(server, groups, workers=WORKERS, timeout=7200)
            if server.count() != size:
                raise CommandFailed(f"orthanc: {server.count()} of {size} instances stored")
            rival = Rival(server, size, {"size": size})
            rival.out["load_seconds"] = round(seconds, 1)
            rival.out["load_per_s"] = round(size / seconds, 1)
            yield rival
            stored = size + 2000
            if pg:
                rival.out["index_bytes_per_instance"] = round(
                    index_bytes(pg.url("orthanc")) / stored, 1
                )
            else:
                rival.out["index_bytes_per_instance"] = round(
                    orthanc_index_bytes(server) / stored, 1
                )
            print(f"   orthanc ({index}): {rival.out}", flush=True)
    finally:
        if pg:
            pg.stop()
