"""Issue 3: QIDO-RS /studies?PatientName=…* over 10,000 studies (PS3.18 10.6).

Two queries on an archive of 10,000 one-instance studies: a selective prefix
(`SMITH^01*`, 10 matches) and a broad one (`SMITH*`, 1,000 matches), both
`application/dicom+json` with the default return attributes.  One warm-up
(checked: both archives return the same number of studies), then the median of RUNS.
"""

from __future__ import annotations

import json

from bench import web
from bench.http import get_ok
from bench.lab import Lab
from bench.procs import CommandFailed
from bench.results import Scenario

NAME = "qido"
RUNS = 20
# name → (PatientName, matches, target ratio to Orthanc: issue 10 sets one for 1,000 matches)
QUERIES = {"qido": ("SMITH^01*", 10, None), "qido-broad": ("SMITH*", 1000, 0.05)}


def run(lab: Lab) -> list[Scenario]:
    out = []
    for name, (pattern, expected, target) in QUERIES.items():
        s = Scenario(
            name,
            f"QIDO-RS /studies?PatientName={pattern} over 10,000 studies ({expected} matches)",
            target=f"Isthmus ≤ {target}× Orthanc (issue 10)" if target else "report",
            ratios={"Isthmus/Orthanc": ("isthmus", "orthanc", target)},
        )
        body = lab.work / "qido.json"
        urls = {}
        for system, server in web.servers(lab, "qido", s).items():
            urls[system] = f"{server.dicomweb}/studies?PatientName={pattern}&limit=100000"  # type: ignore[attr-defined]
            get_ok(urls[system], "application/dicom+json", body)  # warm-up, checked
            count = len(json.loads(body.read_bytes()))
            s.details[f"{system}_matches"] = count
            if count != expected:
                raise CommandFailed(f"{system}: {count} matches for {pattern}, not {expected}")
        web.alternate(s, urls, "application/dicom+json", RUNS)
        out.append(s)
    return out
