"""Issue 2: study-level C-FIND latency over the 10,000-instance / 200-study archive.

DCMTK findscu process wall time (client start-up included, as in the issue's
Orthanc figure), study root, `PatientName=SMITH*` (40 studies match, case-
insensitively on both archives), nine return keys including the computed
ModalitiesInStudy and NumberOfStudyRelatedInstances.  One warm-up, then the
median of 20.  Reference: echoscu's wall time (process start, association,
C-ECHO, release), the floor under any DCMTK client's figure.
"""

from __future__ import annotations

from bench import dimse, profile
from bench.lab import Lab
from bench.procs import CommandFailed
from bench.results import Scenario

NAME = "find"
TITLE = "C-FIND study level, PatientName=SMITH* over 200 studies (findscu wall)"
KEYS = {"PatientName": "SMITH*"}
RUNS = 20


def run(lab: Lab) -> Scenario:
    s = Scenario(
        NAME,
        TITLE,
        target="Isthmus ≤ 0.5× Orthanc (issue 10)",
        ratios={"Isthmus/Orthanc": ("isthmus", "orthanc", 0.5)},
    )
    servers = {system: lab.archive(system, "main") for system in ("isthmus", "orthanc")}
    counts = {system: dimse.find_count(server, KEYS) for system, server in servers.items()}
    s.details["matches"] = counts
    if len(set(counts.values())) != 1:
        raise CommandFailed(f"the archives disagree on the matches: {counts}")
    floor = s.measure("echoscu", note="C-ECHO to Isthmus: the client's fixed cost")
    for _ in range(RUNS):
        for system, server in servers.items():
            s.measure(system).seconds.append(dimse.findscu(server, KEYS))
        floor.seconds.append(dimse.echoscu(servers["isthmus"]))
    if lab.profile:  # extra, uncounted runs under py-spy
        with profile.maybe_record(
            True, servers["isthmus"], lab.out_dir / "profile-find", s.details
        ):
            for _ in range(RUNS):
                dimse.findscu(servers["isthmus"], KEYS)
    return s
