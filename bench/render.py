"""Issue 3: rendered JPEG of one 512×512 CT frame (PS3.18 10.4.1.1.3).

`/studies/{s}/series/{r}/instances/{i}/rendered`, `Accept: image/jpeg`, default
windowing (the instance's Window Center/Width).  One warm-up (checked: a JPEG),
then the median of RUNS.  Reference, asked in turn with the archives: Isthmus's JPEG
sent by `sendfile(2)` with no HTTP server (bench/sendfile_floor.py), the floor of any
answer over this loopback.
"""

from __future__ import annotations

from bench import web
from bench.http import get_ok
from bench.lab import Lab
from bench.procs import CommandFailed
from bench.results import Scenario
from bench.sendfile_floor import alternate_with_floor

NAME = "render"
TITLE = "Rendered JPEG of one 512×512 CT instance"
RUNS = 20


def run(lab: Lab) -> Scenario:
    s = Scenario(
        NAME,
        TITLE,
        target="Isthmus ≤ 0.5× Orthanc (issue 10)",
        ratios={
            "Isthmus/Orthanc": ("isthmus", "orthanc", 0.5),
            "sendfile/Orthanc": ("sendfile", "orthanc", None),
        },
    )
    study, series, instance = web.ct_uids(lab)
    image, kept = lab.work / "rendered.jpg", lab.work / "rendered-isthmus.jpg"
    urls = {}
    for system, server in web.servers(lab, "main", s).items():
        urls[system] = (
            f"{server.dicomweb}/studies/{study}/series/{series}"  # type: ignore[attr-defined]
            f"/instances/{instance}/rendered"
        )
        get_ok(urls[system], "image/jpeg", image)  # warm-up, checked
        if image.read_bytes()[:2] != b"\xff\xd8":
            raise CommandFailed(f"{system}: /rendered did not answer a JPEG")
        s.details[f"{system}_jpeg_bytes"] = image.stat().st_size
        if system == "isthmus":
            image.replace(kept)
    note = "Isthmus's JPEG by sendfile(2), no HTTP server: the floor"
    alternate_with_floor(s, urls, "image/jpeg", RUNS, [kept], note)
    return s
