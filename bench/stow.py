"""Issue 3: STOW-RS of the CT study (PS3.18 10.5) into a fresh archive.

One `multipart/related; type="application/dicom"` request of 271 parts, posted by
curl from a file (streamed, not read into memory); each repetition on a fresh,
empty archive; checked: 271 instances stored.
"""

from __future__ import annotations

from bench import web
from bench.http import DICOM_MULTIPART, curl, multipart_body, serves_dicomweb
from bench.lab import Lab
from bench.procs import CommandFailed
from bench.results import Scenario

NAME = "stow"
TITLE = "STOW-RS 271 CT instances (142 MB), one request"
BOUNDARY = "isthmus-bench-boundary-7d3f"


def run(lab: Lab) -> Scenario:
    s = Scenario(
        NAME,
        TITLE,
        target="Isthmus ≤ 0.3× Orthanc (issue 10)",
        ratios={"Isthmus/Orthanc": ("isthmus", "orthanc", 0.3)},
    )
    ct = lab.data("ct")
    body = multipart_body(ct.files(), lab.data_dir / "ct-stow.multipart", BOUNDARY)
    content_type = f"{DICOM_MULTIPART}; boundary={BOUNDARY}"
    for _ in range(lab.repeat):
        for system in web.SYSTEMS:
            server = lab.fresh(system, "stow")
            with server:
                if not serves_dicomweb(server.dicomweb):  # type: ignore[attr-defined]
                    s.status, s.note = "partial", f"{system} does not serve /dicom-web yet"
                    lab.discard(server)
                    continue
                cpu = server.cpu()
                rsp = curl(
                    f"{server.dicomweb}/studies",
                    "application/dicom+json",  # type: ignore[attr-defined]
                    upload=body,
                    content_type=content_type,
                )
                cpu = server.cpu() - cpu
                stored = server.count()  # type: ignore[attr-defined]
            lab.discard(server)
            if rsp.status != 200 or stored != ct.count:
                raise CommandFailed(f"{system}: STOW answered {rsp.status}, {stored} stored")
            m = s.measure(system, size_bytes=ct.size_bytes)
            m.seconds.append(rsp.seconds)
            m.server_cpu.append(cpu)
    return s
