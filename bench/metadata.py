"""Issue 3: WADO-RS /studies/{s}/metadata of the 271-instance CT study (PS3.18 10.4).

`application/dicom+json`; one warm-up request (checked: 271 instances), then the
median of RUNS.  Target: Isthmus 10× faster than Orthanc's DICOMweb plugin.
"""

from __future__ import annotations

import json

from bench import web
from bench.http import get_ok
from bench.lab import Lab
from bench.procs import CommandFailed
from bench.results import Scenario

NAME = "metadata"
TITLE = "WADO-RS /studies/{s}/metadata, 271 CT instances"
RUNS = 10


def run(lab: Lab) -> Scenario:
    s = Scenario(
        NAME,
        TITLE,
        target="Isthmus ≤ 0.05× Orthanc (issue 10)",
        ratios={"Isthmus/Orthanc": ("isthmus", "orthanc", 0.05)},
    )
    study = lab.data("ct").study_uids[0]
    body = lab.work / "metadata.json"
    urls = {}
    for system, server in web.servers(lab, "main", s).items():
        urls[system] = f"{server.dicomweb}/studies/{study}/metadata"  # type: ignore[attr-defined]
        get_ok(urls[system], "application/dicom+json", body)  # warm-up, checked
        count = len(json.loads(body.read_bytes()))
        if count != lab.data("ct").count:
            raise CommandFailed(f"{system}: metadata of {count} instances, not 271")
        s.details[f"{system}_bytes"] = body.stat().st_size
    web.alternate(s, urls, "application/dicom+json", RUNS)
    return s
