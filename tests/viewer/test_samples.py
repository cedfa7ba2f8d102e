"""Pydicom's bundled files in the viewer: every pixel encoding shows an image, no console error.

Covers signed 16-bit, 32-bit multi-frame, RGB (interleaved, planar through RLE), YBR and
compressed transfer syntaxes (the server sends frames uncompressed), and palette
color (which the browser leaves to the server's /rendered).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from isthmus.config import Settings
from isthmus.server import Node
from isthmus.testing.net import free_port

from .browser import canvas_stats, settle

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
SAMPLES = {
    "CT_small.dcm": "signed 16-bit CT",
    "MR_small_RLE.dcm": "RLE lossless",
    "JPEG2000.dcm": "JPEG 2000",
    "SC_rgb_jpeg_dcmtk.dcm": "JPEG baseline YBR",
    "examples_rgb_color.dcm": "RGB",
    "SC_ybr_full_422_uncompressed.dcm": "uncompressed YBR_FULL_422",
    "SC_rgb_rle_2frame.dcm": "two-frame RGB",
    "rtdose.dcm": "32-bit multi-frame dose",
    "examples_palette.dcm": "palette color",
}


@pytest.fixture(scope="module")
def samples_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    data = tmp_path_factory.mktemp("samples-node")
    settings = Settings(
        data=data,
        dicom_port=free_port(),
        http_port=free_port(),
        index_url=f"sqlite:///{data / 'index.sqlite'}",
        check_on_start=False,
    )
    with Node(settings) as node:
        studies = {}
        for name in [*SAMPLES, "test-SR.dcm"]:
            path = TEST_FILES / name
            result = node.archive.store(path.read_bytes())
            assert result.status == "stored", (name, result.reason)
            studies[name] = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
        yield f"http://127.0.0.1:{node.http_port}/", studies


SHOW = """([sop, frame]) => {
  const v = window.__isthmusViewer;
  const i = v?.stack.findIndex(e => e.sopUid === sop && e.frame === frame);
  if (i === undefined || i < 0) return false;
  if (v.index !== i) v.setIndex(i);
  const f = v.viewport.frame;
  return v.viewport.entry === v.stack[i] && ['gray', 'rgb', 'bitmap'].includes(f?.kind);
}"""


@pytest.mark.parametrize("name", list(SAMPLES), ids=list(SAMPLES))
def test_sample_file_is_displayed(
    page: Any, samples_url: tuple[str, dict[str, str]], name: str
) -> None:
    base_url, studies = samples_url
    header = pydicom.dcmread(TEST_FILES / name, stop_before_pixels=True)
    page.goto(f"{base_url}?study={studies[name]}&series={header.SeriesInstanceUID}")
    for frame in range(1, min(int(header.get("NumberOfFrames", 1) or 1), 2) + 1):
        # Several of these files share a series: show this file's frame, wherever it is.
        page.wait_for_function(SHOW, arg=[str(header.SOPInstanceUID), frame])
        settle(page)
        stats = canvas_stats(page)
        assert stats["std"] > 3, f"{name} frame {frame}: canvas looks blank: {stats}"
        if frame > 1:
            assert f"Fr {frame}/" in page.locator(".overlay.bl").text_content()
    if name == "SC_rgb_jpeg_dcmtk.dcm":  # top band pure red, decoded by the browser
        red = page.evaluate("""() => { const v = window.__isthmusViewer.viewport; const m = v.matrix();
          const dpr = v.canvas.width / v.el.clientWidth;
          return Array.from(v.canvas.getContext('2d').getImageData(Math.round((m[4] + m[0] * 50) * dpr),
            Math.round((m[5] + m[3] * 5) * dpr), 1, 1).data); }""")
        assert red[0] > 200 and red[1] < 60 and red[2] < 60, red


def test_a_series_without_images_says_so(
    page: Any, samples_url: tuple[str, dict[str, str]]
) -> None:
    base_url, studies = samples_url
    page.goto(f"{base_url}?study={studies['test-SR.dcm']}")
    page.wait_for_function(
        "document.querySelector('#viewport-message').textContent.includes('no images')"
    )
    assert page.locator(".series-button .thumb").text_content() == "SR"
