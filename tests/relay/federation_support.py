"""What the system-level relay tests share: the workstation's DCMTK calls on its site's
node, byte-wise comparison of what arrived, and bounded waits."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom

from isthmus.dicom.part10 import dataset_offset
from isthmus.testing.dcmtk import dcmtk_env
from isthmus.testing.federation import Federation, Site


def dataset_digest(path: Path) -> str:
    """SHA-256 of the data set (the file meta may differ: who wrote the file)."""
    data = path.read_bytes()
    return hashlib.sha256(data[dataset_offset(data) :]).hexdigest()


def digests(paths: list[Path]) -> list[str]:
    return sorted(map(dataset_digest, paths))


def dcmtk(
    site: Site, name: str, called: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """A DCMTK tool of site `site`'s workstation, calling `called` on the site's node."""
    return site.dcmtk(name, called, *args, timeout=timeout)


def move_args(destination: str, study: str) -> list[str]:
    """movescu's arguments for a study-level C-MOVE of `study` to `destination`."""
    return [
        "-S",
        "-aem",
        destination,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study}",
    ]


def movescu(site: Site, called: str, destination: str, study: str) -> subprocess.Popen[str]:
    """A C-MOVE started in the background (the caller of a fault test keeps waiting)."""
    return subprocess.Popen(
        site.dcmtk_command("movescu", called, *move_args(destination, study)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dcmtk_env(),
    )


def study_uid(files: list[Path]) -> str:
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def sop_instances(paths: list[Path]) -> Counter[str]:
    """How many files hold each SOP Instance UID."""
    return Counter(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)


@contextmanager
def running(federation: Federation) -> Iterator[Federation]:
    """Start `federation`, print its sites' logs if anything fails, close it."""
    try:
        yield federation.start()
    except BaseException:
        for site in federation.sites.values():
            print(f"--- site {site.name}\n{site.tail()}")
        if federation.bridge_log.exists():
            print(f"--- bridge\n{federation.bridge_log.read_text()[-4000:]}")
        raise
    finally:
        federation.close()


def failed(done: subprocess.CompletedProcess[str]) -> bool:
    """movescu reported a failure: its exit status, or the final response's status."""
    final = done.stdout.split("Received Final Move Response")[-1]
    return done.returncode != 0 or not re.search(r"Success", final)
