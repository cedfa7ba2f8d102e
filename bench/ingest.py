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

Each round also counts what the rest of the machine spent meanwhile
(`procs.machine_busy` less the server's CPU: the 200 storescu processes, mostly), and
the row says what that leaves the server per instance at the target: on two cores,
2 × 0.5 × Orthanc's time, less the clients' share, over 10,000 instances (`_budget`).
"""

from __future__ import annotations

import os
import statistics
from typing import Any

from bench import dimse, profile
from bench.lab import Lab
from bench.procs import CommandFailed, Server, machine_busy
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
    rest_of_machine: dict[str, list[float]] = {system: [] for system in SYSTEMS}
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
            seconds, cpu, rest = _ingest(server.start(), groups, small.count, lab)
            rest_of_machine[system].append(rest)
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
    s.details.update(_budget(s, rest_of_machine, small.count))
    budget = s.details.get("server_cpu_ms_per_instance_at_target")
    spent = s.details["server_cpu_ms_per_instance"]
    if budget is not None and "isthmus" in spent:
        s.remark = (
            f"server CPU the target leaves: {budget} ms/instance "
            f"(Isthmus spends {spent['isthmus']}, Orthanc {spent.get('orthanc')})"
        )
    return s


def _budget(s: Scenario, rest_of_machine: dict[str, list[float]], count: int) -> dict[str, Any]:
    """The rest of the machine's CPU in each system's rounds (medians: the clients, and
    the kernel's threads writing back and completing I/O for the server), and the
    server CPU per instance that the target leaves once the clients have had theirs.

    The clients' share is taken as the least rest of any archive's rounds (an upper
    bound: it holds some kernel work too), so the budget is the most the target allows.
    storescp's children have exited when its CPU is read: their share is estimated as
    its rounds' rest less the clients'."""
    rest = {k: round(statistics.median(v), 2) for k, v in rest_of_machine.items() if v}
    archives = [v for k, v in rest.items() if k != "storescp"]
    orthanc = s.measurements.get("orthanc")
    per_instance = {
        k: round(statistics.median(m.server_cpu) / count * 1000, 3)
        for k, m in s.measurements.items()
        if m.server_cpu and k != "storescp"
    }
    out: dict[str, Any] = {
        "rest_of_machine_cpu_s": rest,
        "server_cpu_ms_per_instance": per_instance,
    }
    if not archives:
        return out
    clients_at_most = min(archives)
    out["clients_cpu_s_at_most"] = clients_at_most
    if orthanc is not None and orthanc.median:
        cores = os.cpu_count() or 1
        budget = cores * 0.5 * orthanc.median - clients_at_most
        out["server_cpu_ms_per_instance_at_target"] = round(budget / count * 1000, 3)
    if "storescp" in rest:
        out["storescp_cpu_ms_per_instance_estimated"] = round(
            (rest["storescp"] - clients_at_most) / count * 1000, 3
        )
    return out


def _ingest(server: Server, groups: list, expected: int, lab: Lab) -> tuple[float, float, float]:
    """Send every group to a started `server`; (wall seconds, server CPU seconds, the
    rest of the machine's CPU seconds meanwhile)."""
    try:
        cpu, busy = server.cpu(), machine_busy()
        seconds = dimse.storescu_parallel(server, groups, workers=WORKERS)
        cpu, busy = server.cpu() - cpu, machine_busy() - busy
        stored = server.count()  # type: ignore[attr-defined]
    except BaseException:
        lab.discard(server)
        raise
    if stored != expected:
        lab.discard(server)
        raise CommandFailed(f"{server.name}: {stored} of {expected} instances stored")
    return seconds, cpu, busy - cpu
