"""Issue 2: study-level C-FIND latency over the 10,000-instance / 200-study archive.

DCMTK findscu process wall time (client start-up included, as in the issue's
Orthanc figure), study root, `PatientName=SMITH*` (40 studies match, case-
insensitively on both archives), nine return keys including the computed
ModalitiesInStudy and NumberOfStudyRelatedInstances.  One warm-up, then the
median of 20.  Reference: echoscu's wall time to each archive (process start,
association, C-ECHO, release), the floor under any DCMTK client's figure; each
archive's share, findscu's time less echoscu's to the same archive in the same round,
is what the archive itself adds for the query and its matches.
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
        ratios={
            "Isthmus/Orthanc": ("isthmus", "orthanc", 0.5),
            "share Isthmus/Orthanc": ("isthmus share", "orthanc share", None),
        },
    )
    servers = {system: lab.archive(system, "main") for system in ("isthmus", "orthanc")}
    counts = {system: dimse.find_count(server, KEYS) for system, server in servers.items()}
    s.details["matches"] = counts
    if len(set(counts.values())) != 1:
        raise CommandFailed(f"the archives disagree on the matches: {counts}")
    for system in servers:
        s.measure(system)
        s.measure(f"echoscu {system}", note=f"C-ECHO to {system}: the client's fixed cost")
        s.measure(f"{system} share", note="findscu less echoscu, same archive, same round")
    for _ in range(RUNS):
        for system, server in servers.items():
            find, echo = dimse.findscu(server, KEYS), dimse.echoscu(server)
            s.measurements[system].seconds.append(find)
            s.measurements[f"echoscu {system}"].seconds.append(echo)
            s.measurements[f"{system} share"].seconds.append(max(find - echo, 0.0))
    if lab.profile:  # extra, uncounted runs under py-spy
        with profile.maybe_record(
            True, servers["isthmus"], lab.out_dir / "profile-find", s.details
        ):
            for _ in range(RUNS):
                dimse.findscu(servers["isthmus"], KEYS)
    return s
