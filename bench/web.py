"""What the DICOMweb scenarios share: finding which archives serve DICOMweb yet."""

from __future__ import annotations

from bench.http import get_ok, serves_dicomweb
from bench.lab import Lab
from bench.procs import Server
from bench.results import Scenario

SYSTEMS = ("isthmus", "orthanc")


def servers(lab: Lab, archive: str, scenario: Scenario) -> dict[str, Server]:
    """Loaded servers whose /dicom-web answers; notes the others in `scenario`."""
    ready = {}
    for system in SYSTEMS:
        server = lab.started(system, archive)
        if serves_dicomweb(server.dicomweb):  # type: ignore[attr-defined]
            ready[system] = lab.archive(system, archive)
        else:
            scenario.note = f"{system} does not serve /dicom-web/studies yet"
            scenario.status = "partial"
    return ready


def ct_uids(lab: Lab) -> tuple[str, str, str]:
    """(study, series, middle instance) UIDs of the CT data set."""
    from pydicom import dcmread

    files = lab.data("ct").files()
    ds = dcmread(files[len(files) // 2], stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def alternate(
    scenario: Scenario, urls: dict[str, str], accept: str, runs: int, size_bytes: int | None = None
) -> None:
    """GET each system's URL in turn, `runs` rounds, so that the shared machine's
    noise falls on every system alike; times go into `scenario`'s measurements."""
    for system in urls:
        scenario.measure(system, size_bytes=size_bytes)
    for _ in range(runs):
        for system, url in urls.items():
            scenario.measurements[system].seconds.append(get_ok(url, accept).seconds)
