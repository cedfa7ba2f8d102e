"""Issue 10's browser row: storescu → gateway → Chromium → IndexedDB, 271 CT images.

DCMTK `storescu` sends the `ct` series to an AE title registered by headless Chromium
running `/node.html` (bench/dicom_ws.py says how: Chromium on its own, no DevTools client
attached while `storescu` runs).  The browser answers each C-STORE only after the
IndexedDB transaction holding the instance has completed, so the time is "every instance
in IndexedDB".  The target is absolute (under 3 s), so it is a reference row of its own;
in the same run DCMTK storescu → storescp (files) and the browser keeping nothing.
"""

from __future__ import annotations

from bench import dicom_ws
from bench.lab import Lab
from bench.results import Scenario

NAME = "browser"
TITLE = "storescu → gateway → Chromium → IndexedDB, 271 CT images"
TARGET = "target 3 s"


def run(lab: Lab) -> Scenario:
    s = Scenario(
        NAME,
        TITLE,
        target="Isthmus < 3 s (issue 10)",
        ratios={
            "Isthmus/3 s": ("isthmus", TARGET, 1.0),
            "Isthmus/storescp": ("isthmus", "storescp", None),
        },
    )
    ct = lab.data("ct")
    files = ct.files()
    work = lab.work / "browser"
    direct = s.measure("storescp", size_bytes=ct.size_bytes, note="storescu → storescp, files")
    for n in range(lab.repeat):
        direct.seconds.append(dicom_ws.direct(files, work / f"storescp{n}"))
    stored, discarded = dicom_ws.through_gateway(files, work, lab.repeat)
    s.measure("isthmus", size_bytes=ct.size_bytes).seconds.extend(stored)
    s.measure(
        "browser keeping nothing", size_bytes=ct.size_bytes, note="the same path minus IndexedDB"
    ).seconds.extend(discarded)
    s.measure(TARGET, note="the issue's target").seconds.append(3.0)
    return s
