"""Issue 3: WADO-RS retrieval of the whole CT study (PS3.18 10.4), as stored.

`multipart/related; type="application/dicom"; transfer-syntax=*` (no transcoding),
body to /dev/null, checked to carry at least the stored bytes; median of RUNS.
References: `cp -r` of the same 271 files to a new folder, `cat` of them to
/dev/null (page cache warm, like the servers'), and the same bytes sent to curl by
`sendfile(2)` with no HTTP server at all (bench/sendfile_floor.py), asked in turn with
the archives: the floor of any answer of that size over this loopback.
"""

from __future__ import annotations

import shutil

from bench import web
from bench.http import DICOM_MULTIPART, get_ok
from bench.lab import Lab
from bench.procs import CommandFailed
from bench.procs import run as run_command
from bench.results import Scenario
from bench.sendfile_floor import alternate_with_floor

NAME = "wado"
TITLE = "WADO-RS retrieve study, 271 CT instances (142 MB)"
ACCEPT = DICOM_MULTIPART + "; transfer-syntax=*"
RUNS = 5


def run(lab: Lab) -> Scenario:
    s = Scenario(
        NAME,
        TITLE,
        target="Isthmus ≤ 0.7× Orthanc (issue 10)",
        ratios={
            "Isthmus/Orthanc": ("isthmus", "orthanc", 0.7),
            "Isthmus/file copy": ("isthmus", "file copy", None),
            "Isthmus/file read": ("isthmus", "file read", None),
            "Isthmus/sendfile": ("isthmus", "sendfile", None),
            "sendfile/Orthanc": ("sendfile", "orthanc", None),
        },
    )
    ct = lab.data("ct")
    study = ct.study_uids[0]
    urls = {}
    for system, server in web.servers(lab, "main", s).items():
        urls[system] = f"{server.dicomweb}/studies/{study}"  # type: ignore[attr-defined]
        rsp = get_ok(urls[system], ACCEPT)  # warm-up, checked
        if rsp.size < ct.size_bytes:
            raise CommandFailed(f"{system}: {rsp.size} bytes, less than the {ct.size_bytes} stored")
        s.details[f"{system}_content_type"] = rsp.content_type.split(";")[0]
        s.details[f"{system}_bytes"] = rsp.size
    alternate_with_floor(
        s,
        urls,
        ACCEPT,
        RUNS,
        ct.files(),
        "the same bytes by sendfile(2), no HTTP server: the floor",
        size_bytes=ct.size_bytes,
    )
    copy = s.measure("file copy", size_bytes=ct.size_bytes, note="cp -r of the same files")
    read = s.measure(
        "file read", size_bytes=ct.size_bytes, note="cat of the same files to /dev/null"
    )
    for n in range(RUNS):
        target = lab.work / f"copy{n}"
        copy.seconds.append(run_command(["cp", "-r", str(ct.folders[0]), str(target)], 120)[0])
        shutil.rmtree(target)
        read.seconds.append(
            run_command(["sh", "-c", 'cat "$1"/*.dcm > /dev/null', "sh", str(ct.folders[0])], 120)[
                0
            ]
        )
    return s
