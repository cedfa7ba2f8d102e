"""Issue 2: ingest of 10,000 small instances (64×64) over 200 studies.

Method, identical for both archives: one association per study (50 instances, as a
modality sends a study), four DCMTK storescu processes at a time, into a fresh
archive; `--repeat` rounds, systems in turn.  The archives filled in the last round
are kept for the C-FIND and C-MOVE scenarios.  An extra row, Isthmus with
durable=false (no fsync), shows what durability costs here, and one with two worker
processes (`isthmus serve --workers 2`) what the second core brings; on this benchmark
the four storescu processes share the machine's cores with the server.  DCMTK's
storescp with `--fork` (a process per association, each writing files; no index, no
fsync) is the floor: what the same clients and file system take with a receiver that
does the least a C-STORE SCP can.
"""

from __future__ import annotations

from bench import dimse, profile
from bench.lab import Lab
from bench.procs import CommandFailed, Server
from bench.results import Scenario

NAME = "ingest"
TITLE = "Ingest 10,000 small instances / 200 studies (4 parallel storescu)"
WORKERS = 4
NOSYNC_NOTE = "Isthmus with durable=false: no fsync, SQLite synchronous=NORMAL"
SERVER_WORKERS = 2
WORKERS_NOTE = f"isthmus serve --workers {SERVER_WORKERS}, durable"
STORESCP_NOTE = "DCMTK storescp --fork: files only, no index, no fsync (the floor)"
SYSTEMS = ("isthmus", "orthanc", "isthmus-nosync", "isthmus-workers", "storescp")
NOTES = {"isthmus-nosync": NOSYNC_NOTE, "isthmus-workers": WORKERS_NOTE, "storescp": STORESCP_NOTE}


def run(lab: Lab) -> Scenario:
    s = Scenario(
        NAME,
        TITLE,
        target="Isthmus ≤ 0.5× Orthanc (issue 10)",
        ratios={
            "Isthmus/Orthanc": ("isthmus", "orthanc", 0.5),
            f"--workers {SERVER_WORKERS}/Orthanc": ("isthmus-workers", "orthanc", 0.5),
            "storescp --fork/Orthanc": ("storescp", "orthanc", None),
        },
    )
    small = lab.data("small")
    groups = [small.files(f) for f in small.folders]
    for n in range(lab.repeat):
        last = n == lab.repeat - 1
        for system in SYSTEMS:
            if system == "storescp":
                server = lab.fresh("storescp", "fork", extra=["--fork"])
            elif system == "isthmus-nosync":
                server = lab.fresh("isthmus", system, durable=False)
            elif system == "isthmus-workers":
                server = lab.fresh("isthmus", system, workers=SERVER_WORKERS)
            else:
                server = lab.fresh(system, "main")
            seconds, cpu = _ingest(server.start(), groups, small.count, lab)
            m = s.measure(system, size_bytes=small.size_bytes, note=NOTES.get(system, ""))
            m.seconds.append(seconds)
            m.server_cpu.append(cpu)
            if last and system in ("isthmus", "orthanc"):
                lab.adopt(system, "main", server, {"small": seconds})
            else:
                lab.discard(server)
    if lab.profile:  # one extra, uncounted Isthmus run under py-spy
        server = lab.fresh("isthmus", "profile")
        with server, profile.maybe_record(True, server, lab.out_dir / "profile-ingest", s.details):
            dimse.storescu_parallel(server, groups, workers=WORKERS)
        lab.discard(server)
    s.details["instances_per_second"] = {
        k: round(small.count / m.median, 1) for k, m in s.measurements.items() if m.median
    }
    return s


def _ingest(server: Server, groups: list, expected: int, lab: Lab) -> tuple[float, float]:
    """Send every group to a started `server`; (wall seconds, server CPU seconds)."""
    try:
        cpu = server.cpu()
        seconds = dimse.storescu_parallel(server, groups, workers=WORKERS)
        cpu = server.cpu() - cpu
        stored = server.count()  # type: ignore[attr-defined]
    except BaseException:
        lab.discard(server)
        raise
    if stored != expected:
        lab.discard(server)
        raise CommandFailed(f"{server.name}: {stored} of {expected} instances stored")
    return seconds, cpu
