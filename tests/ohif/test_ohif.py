"""OHIF v3 against Isthmus in headless Chromium: study list, then a CT series rendered."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from dicomweb_client import DICOMwebClient
from PIL import Image
from playwright.sync_api import sync_playwright
from tests.ohif.conftest import OHIF_CHROMIUM_ARGS
from tests.web.conftest import node_settings

from isthmus.server import Node
from isthmus.testing.chromium import CHROMIUM
from isthmus.testing.generate import StudySpec, study
from isthmus.testing.net import free_port

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ohif"


@pytest.fixture
def isthmus_for_ohif(tmp_path):
    """A node that lets the OHIF origin call it (CORS), holding two CT studies."""
    ohif_port = free_port()
    settings = node_settings(tmp_path, cors_origins=(f"http://127.0.0.1:{ohif_port}",))
    with Node(settings) as node:
        client = DICOMwebClient(f"http://127.0.0.1:{node.http_port}/dicom-web")
        ct = list(
            study(
                StudySpec(
                    patient_name="OHIF^ALICE",
                    patient_id="OHIF-CT-1",
                    description="CT ABDOMEN",
                    instances_per_series=24,
                    rows=128,
                    columns=128,
                )
            )
        )
        other = list(
            study(
                StudySpec(
                    patient_name="OHIF^BOB",
                    patient_id="OHIF-CT-2",
                    description="CT HEAD",
                    instances_per_series=2,
                )
            )
        )
        client.store_instances(ct + other)
        yield node, ohif_port, ct


def test_ohif_lists_studies_and_renders_a_ct_series(isthmus_for_ohif, serve_ohif):
    node, ohif_port, ct = isthmus_for_ohif
    ohif = serve_ohif(f"http://127.0.0.1:{node.http_port}", ohif_port)
    errors: list[str] = []
    failed_requests: list[str] = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=OHIF_CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: failed_requests.append(f"{r.url} {r.failure}"))
            page.on(
                "response",
                lambda r: (
                    failed_requests.append(f"{r.status} {r.url}")
                    if r.status >= 400 and str(node.http_port) in r.url
                    else None
                ),
            )

            page.goto(ohif + "/", wait_until="domcontentloaded", timeout=60_000)
            page.get_by_text("CT ABDOMEN").first.wait_for(timeout=60_000)
            page.get_by_text("CT HEAD").first.wait_for(timeout=10_000)
            assert page.get_by_text("OHIF, ALICE").count() == 1
            page.screenshot(path=str(ARTIFACTS / "study-list.png"))

            uid = ct[0].StudyInstanceUID
            page.goto(
                f"{ohif}/viewer?StudyInstanceUIDs={uid}",
                wait_until="domcontentloaded",
                timeout=60_000,
            )
            canvas = page.locator(".cornerstone-canvas, canvas.cornerstone-canvas").first
            canvas.wait_for(state="visible", timeout=60_000)
            picture = _wait_for_image(page, canvas)
            page.screenshot(path=str(ARTIFACTS / "viewer.png"))
        finally:
            browser.close()
    assert picture is not None, "the viewport never showed the CT image"
    assert failed_requests == [], failed_requests
    assert errors == [], errors


def _wait_for_image(page, canvas, attempts: int = 150):
    """The viewport's pixels once they show an image (a bright disc on a dark background).

    OHIF's onboarding tour ("Scrolling Through Images", "Skip all") may open over the
    viewport and dim it, depending on timing: it is skipped when it shows.
    """
    for _ in range(attempts):
        skip = page.get_by_text("Skip all")
        if skip.count() and skip.first.is_visible():
            skip.first.click()
        shot = np.asarray(Image.open(BytesIO(canvas.screenshot())).convert("L"), dtype=np.int32)
        if shot.size and shot.max() - shot.min() > 100 and (shot > 60).mean() > 0.05:
            return shot
        page.wait_for_timeout(500)
    return None
