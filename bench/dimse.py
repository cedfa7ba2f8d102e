"""DCMTK clients driving the DICOM port of whatever is measured (same commands for all)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.procs import Server, dcmtk, run
from bench.systems import CALLING_AET, MOVE_AET

# Study-level return keys, as a study browser asks them (PS3.4 C.6.2.1.2).
STUDY_RETURN_KEYS = [
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "PatientName",
    "PatientID",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedInstances",
]


def storescu(server: Server, files: Sequence[Path], timeout: float = 300.0) -> float:
    """Send `files` in one association with DCMTK storescu; wall seconds."""
    cmd = [
        dcmtk("storescu"),
        "-aet",
        CALLING_AET,
        "-aec",
        server.aet,
        "127.0.0.1",
        str(server.dicom_port),
        *map(str, files),
    ]
    return run(cmd, timeout)[0]


def storescu_parallel(
    server: Server, groups: Sequence[Sequence[Path]], workers: int = 4, timeout: float = 900.0
) -> float:
    """Send each group in its own association, `workers` storescu processes at a time."""
    import time

    started = time.perf_counter()
    per_group = max(60.0, timeout / max(1, len(groups)) * workers * 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(lambda g: storescu(server, g, per_group), groups):
            pass
    return time.perf_counter() - started


def find_command(server: Server, keys: dict[str, str], verbose: bool = False) -> list[str]:
    cmd = [dcmtk("findscu"), "-S", "-aet", CALLING_AET, "-aec", server.aet]
    if verbose:
        cmd.append("-v")
    cmd += ["127.0.0.1", str(server.dicom_port), "-k", "QueryRetrieveLevel=STUDY"]
    for keyword in STUDY_RETURN_KEYS:
        cmd += ["-k", f"{keyword}={keys.get(keyword, '')}" if keyword in keys else keyword]
    return cmd


def findscu(server: Server, keys: dict[str, str], timeout: float = 60.0) -> float:
    """One study-level C-FIND with DCMTK findscu (study root); process wall seconds."""
    return run(find_command(server, keys), timeout)[0]


def find_count(server: Server, keys: dict[str, str], timeout: float = 60.0) -> int:
    """How many pending responses (matches) the same C-FIND returns."""
    _, out = run(find_command(server, keys, verbose=True), timeout, capture=True)
    return len(re.findall(r"Find Response: \d+ \(Pending\)", out))


def echoscu(server: Server, timeout: float = 60.0) -> float:
    """One C-ECHO with DCMTK echoscu; process wall seconds (a client's fixed cost)."""
    cmd = [
        dcmtk("echoscu"),
        "-aet",
        CALLING_AET,
        "-aec",
        server.aet,
        "127.0.0.1",
        str(server.dicom_port),
    ]
    return run(cmd, timeout)[0]


def movescu(server: Server, study_uid: str, timeout: float = 300.0) -> float:
    """C-MOVE one study to the storescp known as BENCHSCP; movescu wall seconds."""
    cmd = [
        dcmtk("movescu"),
        "-S",
        "-aet",
        CALLING_AET,
        "-aec",
        server.aet,
        "-aem",
        MOVE_AET,
        "127.0.0.1",
        str(server.dicom_port),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study_uid}",
    ]
    return run(cmd, timeout)[0]
