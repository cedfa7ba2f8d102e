"""Issue 2: C-MOVE of the 271-instance CT study to a DCMTK storescp.

movescu wall time from request to the final response; the archive is the one
holding the 10,000 small instances plus the CT study.  A fresh storescp (known to
both archives as BENCHSCP) receives each repetition.
"""

from __future__ import annotations

from bench import dimse, profile
from bench.lab import Lab
from bench.procs import CommandFailed
from bench.results import Scenario

NAME = "move"
TITLE = "C-MOVE 271 CT images to storescp (movescu wall)"


def run(lab: Lab) -> Scenario:
    s = Scenario(
        NAME,
        TITLE,
        target="report (Orthanc 0.45 s in the issue)",
        ratios={"Isthmus/Orthanc": ("isthmus", "orthanc", None)},
    )
    ct = lab.data("ct")
    servers = {system: lab.archive(system, "main") for system in ("isthmus", "orthanc")}
    for _ in range(lab.repeat):
        for system, server in servers.items():
            receiver = lab.fresh("storescp", f"move-{system}", port=lab.move_port)
            with receiver:
                seconds = dimse.movescu(server, ct.study_uids[0])
                received = receiver.count()  # type: ignore[attr-defined]
            lab.discard(receiver)
            if received != ct.count:
                raise CommandFailed(f"{system}: storescp received {received} of {ct.count}")
            s.measure(system, size_bytes=ct.size_bytes).seconds.append(seconds)
    if lab.profile:  # one extra, uncounted run under py-spy
        receiver = lab.fresh("storescp", "move-profile", port=lab.move_port)
        with (
            receiver,
            profile.maybe_record(True, servers["isthmus"], lab.out_dir / "profile-move", s.details),
        ):
            dimse.movescu(servers["isthmus"], ct.study_uids[0])
        lab.discard(receiver)
    return s
