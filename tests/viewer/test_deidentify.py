"""The viewer opens a de-identified study (PS3.15 Annex E) as it opens its original."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from isthmus.config import Settings
from isthmus.server import Node
from isthmus.testing.net import free_port

from .browser import canvas_stats, open_study
from .conftest import part10, phantom


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """(viewer URL, original study UID, de-identified study UID) on a node of its own."""
    data = tmp_path_factory.mktemp("deid-viewer")
    settings = Settings(
        data=data, dicom_port=free_port(), http_port=free_port(), check_on_start=False
    )
    with Node(settings) as node:
        datasets = phantom(rows=128, columns=128, slices=3)
        for ds in datasets:
            assert node.archive.store(part10(ds)).ok
        source = str(datasets[0].StudyInstanceUID)
        new = node.archive.deidentify_studies([source], "viewer").studies[source]
        yield f"http://127.0.0.1:{node.http_port}/", source, new


def test_a_deidentified_study_opens_with_its_pixels_and_without_the_name(
    page: Any, studies: tuple[str, str, str]
) -> None:
    base_url, source, new = studies
    open_study(page, base_url, source)
    original = canvas_stats(page)
    assert page.locator("#study-title").text_content() == "PHANTOM, CHEST"
    open_study(page, base_url, new)
    assert canvas_stats(page) == original and original["std"] > 20
    title = page.locator("#study-title").text_content() or ""
    assert title.startswith("P") and "PHANTOM" not in title
    assert "PHANTOM" not in (page.text_content("body") or "")
