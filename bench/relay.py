"""Issue 11: the relay between two sites (isthmus.testing.federation), DCMTK at both ends.

- C-MOVE of the 271-CT study from site B's PACS (dcmqrscp) to a storescp at site A
  through the relay, on plain loopback: study bytes / movescu wall time (target ≥ 50 MB/s).
- The same over an emulated WAN of 25 ms each way between the sites (each site 12.5 ms
  from the cloud services), next to a direct DIMSE C-MOVE from B's PACS to a storescp at
  A over a link of 25 ms each way (target: relay ≤ 0.5 × direct).
- C-FIND at study level from A to B's PACS over that WAN, in round trips beyond the far
  PACS's own C-FIND time (findscu straight at it on loopback; target ≤ 3).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.lab import Lab
from bench.procs import CommandFailed, dcmtk, dcmtk_env
from bench.results import Scenario
from isthmus.testing.dcmtk import StoreSCP
from isthmus.testing.federation import WORKSTATION, Federation
from isthmus.testing.latency import LatencyProxy
from isthmus.testing.seaweedfs import TemporarySeaweedFS

NAME = "relay"
TITLE = "relay: C-MOVE and C-FIND between two sites"
ONE_WAY = 0.025  # seconds between the two sites, each way


def run(lab: Lab) -> list[Scenario]:
    ct = lab.data("ct")
    s3 = TemporarySeaweedFS().start()
    try:
        loopback = _move_on_loopback(lab, s3, ct.files(), ct.study_uids[0], ct.size_bytes)
        wan = _over_the_wan(lab, s3, ct.files(), ct.study_uids[0])
    finally:
        s3.close()
    return [loopback, *wan]


def _move_on_loopback(
    lab: Lab, s3: TemporarySeaweedFS, files: list[Path], study: str, size: int
) -> Scenario:
    s = Scenario("relay-move", "relay C-MOVE 271 CT, B → A, loopback (MB/s)", target="≥ 50 MB/s")
    federation = Federation(lab.work / "relay-loopback", s3, ("A", "B")).start()
    try:
        federation.sites["B"].pacs.load(files)
        for _ in range(lab.repeat):
            seconds = _move(federation, study, "STOREA", len(files))
            s.measure("isthmus", size_bytes=size).seconds.append(seconds)
        m = s.measurements["isthmus"]
        s.details["mb_per_s"] = round(size / 1e6 / (m.median or 1), 1)
        s.note = f"{s.details['mb_per_s']} MB/s"
    finally:
        federation.close()
    return s


def _over_the_wan(
    lab: Lab, s3: TemporarySeaweedFS, files: list[Path], study: str
) -> list[Scenario]:
    move = Scenario(
        "relay-move-wan",
        f"C-MOVE 271 CT over a {2 * ONE_WAY * 1000:.0f} ms RTT WAN: relay vs direct DIMSE",
        target="≤ 0.5",
        ratios={"relay/direct": ("relay", "direct", 0.5)},
    )
    find = Scenario(
        "relay-find-wan", "C-FIND study level across the WAN (round trips)", target="≤ 3 RTT"
    )
    federation = Federation(lab.work / "relay-wan", s3, ("A", "B"), wan=ONE_WAY / 2)
    direct = StoreSCP(lab.work / "relay-wan-direct", aet="DIRECTA").start()
    link = LatencyProxy(("127.0.0.1", direct.port), ONE_WAY).start()
    federation.sites["B"].extra_destinations = {"DIRECTA": link.port}
    try:
        federation.start()
        b = federation.sites["B"]
        b.pacs.load(files)
        for _ in range(lab.repeat):
            move.measure("relay").seconds.append(_move(federation, study, "STOREA", len(files)))
            started = time.perf_counter()
            _run(study_command("movescu", b.pacs.aet, b.pacs.port, study, "-aem", "DIRECTA"))
            move.measure("direct").seconds.append(time.perf_counter() - started)
            far = _find(b.pacs.aet, b.pacs.port, study)
            across = _find(b.pacs.aet, federation.sites["A"].dicom_port, study)
            find.measure("isthmus").seconds.append(across)
            find.details.setdefault("far_pacs_seconds", []).append(round(far, 4))
        m = find.measurements["isthmus"]
        far_median = sorted(find.details["far_pacs_seconds"])[
            len(find.details["far_pacs_seconds"]) // 2
        ]
        find.details["round_trips"] = round(((m.median or 0) - far_median) / (2 * ONE_WAY), 2)
        find.note = f"{find.details['round_trips']} round trips beyond the far PACS's own time"
    finally:
        federation.close()
        link.close()
        direct.stop()
    return [move, find]


def _move(federation: Federation, study: str, destination: str, count: int) -> float:
    a = federation.sites["A"]
    for path in a.store.received():  # storescp names files by UID: a repeat overwrites
        path.unlink()
    started = time.perf_counter()
    output = _run(move_command(federation, study, destination))
    seconds = time.perf_counter() - started
    arrived = len(a.store.received())
    if arrived != count:
        raise CommandFailed(f"relay C-MOVE delivered {arrived} of {count}: {output[-400:]}")
    return seconds


def _find(called: str, port: int, study: str) -> float:
    started = time.perf_counter()
    _run(study_command("findscu", called, port, study, "-k", "PatientName"))
    return time.perf_counter() - started


def study_command(tool: str, called: str, port: int, study: str, *args: str) -> list[str]:
    """DCMTK's `tool` as the workstation WSA, at study level for `study`, calling
    `called` at 127.0.0.1:`port`."""
    keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"]
    address = ["127.0.0.1", str(port)]
    return [dcmtk(tool), "-aet", WORKSTATION, "-aec", called, "-S", *keys, *args, *address]


def move_command(federation: Federation, study: str, destination: str) -> list[str]:
    """movescu at site A's workstation: PACSB's `study` to `destination`, through A."""
    return study_command(
        "movescu", "PACSB", federation.sites["A"].dicom_port, study, "-aem", destination
    )


def _run(command: list[str]) -> str:
    """Run a DCMTK tool; its output (CommandFailed when it fails)."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=dcmtk_env())
    if done.returncode != 0:
        raise CommandFailed(f"{Path(command[0]).name}: {done.stderr[-500:]}")
    return done.stdout + done.stderr
