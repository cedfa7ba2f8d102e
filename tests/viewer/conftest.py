"""Browser tests of the viewer: a running node (SQLite) with generated studies, and Chromium.

The data: a 512x512 CT phantom (body, lungs, spine) whose Hounsfield units are known, so
pixels on the canvas can be checked against the window; a few small studies of named
patients; and enough one-image studies to need a second page of results.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.uid import generate_uid
from tests.viewer.browser import CHROMIUM, CHROMIUM_ARGS

from isthmus.config import Settings
from isthmus.server import Node
from isthmus.testing.generate import ROOT, StudySpec, ct_instance, patients, study
from isthmus.testing.net import free_port

playwright_api = pytest.importorskip("playwright.sync_api")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "viewer"
PHANTOM_SLICES = 24
PAGING_STUDIES = 27

# Hounsfield units of the phantom's parts.
AIR, LUNG, SOFT, BONE = -1000, -850, 40, 700


@dataclass
class ViewerData:
    """UIDs and facts the tests check against."""

    phantom_study: str
    phantom_slices: int
    pixel_spacing: float
    studies: int


def phantom_pixels(rows: int, columns: int, z: int) -> np.ndarray:
    """Hounsfield units of one axial slice: air, a body ellipse, two lungs, a spine."""
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float32)
    cy, cx = rows / 2, columns / 2
    hu = np.full((rows, columns), AIR, np.float32)
    body = ((xx - cx) / (0.42 * columns)) ** 2 + ((yy - cy) / (0.33 * rows)) ** 2 < 1
    hu[body] = SOFT
    lung_r = 0.12 + 0.03 * np.sin(z / 6)
    for side in (-1, 1):
        lung = ((xx - cx - side * 0.19 * columns) / (lung_r * columns)) ** 2 + (
            (yy - cy + 0.02 * rows) / (0.2 * rows)
        ) ** 2 < 1
        hu[lung] = LUNG
    spine = (xx - cx) ** 2 + (yy - cy - 0.22 * rows) ** 2 < (0.05 * rows) ** 2
    hu[spine] = BONE
    noise = np.random.default_rng(z).normal(0, 6, size=hu.shape)
    return hu + noise * body


def phantom(rows: int = 512, columns: int = 512, slices: int = PHANTOM_SLICES) -> list[Dataset]:
    """A CT series whose pixels are the phantom (stored = HU + 1024, 12 bits stored)."""
    spec = StudySpec(
        patient_name="PHANTOM^CHEST",
        patient_id="PH001",
        accession="PHACC",
        description="CT THORAX PHANTOM",
        study_date="20240301",
        rows=rows,
        columns=columns,
    )
    study_uid, series_uid = generate_uid(ROOT), generate_uid(ROOT)
    out = []
    for n in range(1, slices + 1):
        ds = ct_instance(spec, study_uid, series_uid, 1, n)
        ds.SeriesDescription = "AXIAL 1mm"
        stored = np.clip(np.round(phantom_pixels(rows, columns, n)) + 1024, 0, 4095).astype(
            np.int16
        )
        ds.PixelData = stored.tobytes()
        out.append(ds)
    return out


def part10(ds: Dataset) -> bytes:
    buffer = DicomBytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def tiny_study(i: int) -> list[Dataset]:
    spec = StudySpec(
        patient_name=f"PAGE^TEST{i:02d}",
        patient_id=f"PG{i:03d}",
        accession=f"PGACC{i}",
        description=f"PAGING {i}",
        study_date=f"2019{1 + i % 12:02d}{1 + i % 27:02d}",
        modality="MR",
        rows=16,
        columns=16,
        instances_per_series=1,
    )
    return list(study(spec))


def populate(node: Node) -> ViewerData:
    datasets: list[Dataset] = phantom()
    phantom_uid = str(datasets[0].StudyInstanceUID)
    named = patients(6)
    for spec in named:
        spec.series_count, spec.instances_per_series, spec.rows, spec.columns = 2, 3, 64, 64
        datasets += list(study(spec))
    for i in range(PAGING_STUDIES):
        datasets += tiny_study(i)
    for ds in datasets:
        result = node.archive.store(part10(ds))
        assert result.status == "stored", result.reason
    return ViewerData(phantom_uid, PHANTOM_SLICES, 0.7, 1 + len(named) + PAGING_STUDIES)


@pytest.fixture(scope="package")
def viewer_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, ViewerData]]:
    """One node for the browser tests (SQLite; the viewer only speaks to the HTTP API)."""
    data = tmp_path_factory.mktemp("viewer-node")
    settings = Settings(
        data=data,
        dicom_port=free_port(),
        http_port=free_port(),
        index_url=f"sqlite:///{data / 'index.sqlite'}",
        check_on_start=False,
    )
    with Node(settings) as node:
        yield node, populate(node)


@pytest.fixture(scope="package")
def base_url(viewer_node: tuple[Node, ViewerData]) -> str:
    return f"http://127.0.0.1:{viewer_node[0].http_port}/"


@pytest.fixture(scope="package")
def viewer_data(viewer_node: tuple[Node, ViewerData]) -> ViewerData:
    return viewer_node[1]


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class ConsoleWatch:
    """Console errors and uncaught exceptions of a page; tests may allow expected ones."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.allowed: list[re.Pattern[str]] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


def _open_page(
    browser: Any, request: pytest.FixtureRequest, **context_options: Any
) -> Iterator[Any]:
    context = browser.new_context(**context_options)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.console_watch = ConsoleWatch(page)
    try:
        yield page
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
        errors = page.console_watch.unexpected()
        assert not errors, f"console errors: {errors}"
    finally:
        context.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A desktop page (1920x1080); fails the test on any console error."""
    yield from _open_page(browser, request, viewport={"width": 1920, "height": 1080})


@pytest.fixture
def phone(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A phone page: 390x844, touch, mobile."""
    yield from _open_page(
        browser,
        request,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
