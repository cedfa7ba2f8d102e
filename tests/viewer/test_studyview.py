"""The study view: thumbnails, the image on the canvas, W/L, scrolling, tools, tags, cine."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from .browser import (
    AIR_AT,
    BONE_AT,
    LUNG_AT,
    SOFT_TISSUE_AT,
    canvas_stats,
    expected_gray,
    gray_at,
    open_study,
    settle,
)
from .conftest import LUNG, SOFT

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "viewer-screenshot.png"


def instance_number(page: Any) -> str:
    return page.get_attribute("#viewport", "data-instance-number")


def wait_instance(page: Any, number: int | str) -> None:
    """Wait until the viewport has drawn the image with this Instance Number."""
    page.wait_for_function(
        f"document.querySelector('#viewport').dataset.instanceNumber === '{number}'"
    )


def test_opening_a_study_shows_series_thumbnails(
    page: Any, base_url: str, viewer_data: Any
) -> None:
    open_study(page, base_url, viewer_data.phantom_study)
    page.wait_for_function(
        "() => { const i = document.querySelector('.series-button img'); return i && i.complete && i.naturalWidth > 0; }"
    )
    assert page.locator(".series-button").count() == 1
    assert "AXIAL 1mm" in page.locator(".series-button").text_content()
    assert page.locator("#study-title").text_content() == "PHANTOM, CHEST"


def test_canvas_shows_the_image_in_the_files_window(
    page: Any, base_url: str, viewer_data: Any
) -> None:
    open_study(page, base_url, viewer_data.phantom_study)
    stats = canvas_stats(page)
    assert stats["std"] > 20, f"canvas looks blank: {stats}"
    # The file's window is 40/400 (soft tissue): tissue mid-gray, lung and air black, bone white.
    assert abs(gray_at(page, *SOFT_TISSUE_AT) - expected_gray(SOFT, 40, 400)) < 8
    assert gray_at(page, *LUNG_AT) < 3
    assert gray_at(page, *AIR_AT) < 3
    assert gray_at(page, *BONE_AT) > 250
    assert "W 400  L 40" in page.locator(".overlay.br").text_content()


def test_lung_preset_shows_lung_as_gray(page: Any, base_url: str, viewer_data: Any) -> None:
    open_study(page, base_url, viewer_data.phantom_study)
    page.select_option("#preset", "lung")
    settle(page)
    assert abs(gray_at(page, *LUNG_AT) - expected_gray(LUNG, -600, 1500)) < 8
    assert abs(gray_at(page, *SOFT_TISSUE_AT) - expected_gray(SOFT, -600, 1500)) < 8
    assert "W 1500  L -600" in page.locator(".overlay.br").text_content()


def test_right_drag_changes_window_and_canvas(page: Any, base_url: str, viewer_data: Any) -> None:
    open_study(page, base_url, viewer_data.phantom_study)
    before = gray_at(page, *SOFT_TISSUE_AT)
    box = page.locator("#viewport").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down(button="right")
    page.mouse.move(x, y + 60, steps=6)  # down: level (center) up, so tissue gets darker
    page.mouse.up(button="right")
    settle(page)
    after = gray_at(page, *SOFT_TISSUE_AT)
    assert after < before - 20, (before, after)
    assert page.input_value("#preset") == "custom"
    center, width = map(float, page.get_attribute("#viewport", "data-window").split(","))
    assert center > 40 and width == 400
    assert abs(after - expected_gray(SOFT, center, width)) < 8


def test_wl_tool_left_drag_widens_the_window(page: Any, base_url: str, viewer_data: Any) -> None:
    open_study(page, base_url, viewer_data.phantom_study)
    box = page.locator("#viewport").bounding_box()
    x, y = box["x"] + 300, box["y"] + 300
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 100, y, steps=5)
    page.mouse.up()
    settle(page)
    _, width = map(float, page.get_attribute("#viewport", "data-window").split(","))
    assert width > 400


def test_wheel_moves_to_the_next_instance(page: Any, base_url: str, viewer_data: Any) -> None:
    open_study(page, base_url, viewer_data.phantom_study)
    assert instance_number(page) == "1"
    page.hover("#viewport")
    page.mouse.wheel(0, 100)
    wait_instance(page, 2)
    page.mouse.wheel(0, 100)
    wait_instance(page, 3)
    page.mouse.wheel(0, -100)
    wait_instance(page, 2)
    assert "Im 2/" in page.locator(".overlay.bl").text_content()


def test_keys_and_scrollbar_move_through_the_series(
    page: Any, base_url: str, viewer_data: Any
) -> None:
    open_study(page, base_url, viewer_data.phantom_study)
    page.focus("#viewport")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    wait_instance(page, 3)
    page.keyboard.press("End")
    wait_instance(page, viewer_data.phantom_slices)
    page.keyboard.press("Home")
    wait_instance(page, 1)
    # Drag the scrollbar's thumb to the bottom.
    bar = page.locator("#scrollbar").bounding_box()
    page.mouse.move(bar["x"] + bar["width"] / 2, bar["y"] + 8)
    page.mouse.down()
    page.mouse.move(bar["x"] + bar["width"] / 2, bar["y"] + bar["height"] - 2, steps=8)
    page.mouse.up()
    wait_instance(page, viewer_data.phantom_slices)


def test_every_image_gets_loaded_with_visible_progress(
    page: Any, base_url: str, viewer_data: Any
) -> None:
    open_study(page, base_url, viewer_data.phantom_study)
    page.wait_for_selector("#study-view[data-loaded=true]")
    assert (
        page.locator("#load-status")
        .text_content()
        .startswith(f"All {viewer_data.phantom_slices} images loaded")
    )
    assert page.evaluate("document.querySelector('#load-fill').style.width") == "100%"


def test_zoom_fit_invert_rotate_flip_and_reset(page: Any, base_url: str, viewer_data: Any) -> None:
    open_study(page, base_url, viewer_data.phantom_study)
    fitted = page.evaluate("window.__isthmusViewer.viewport.effectiveZoom()")
    page.hover("#viewport")
    page.keyboard.down("Control")
    page.mouse.wheel(0, -300)
    page.keyboard.up("Control")
    zoomed = page.evaluate("window.__isthmusViewer.viewport.effectiveZoom()")
    assert zoomed > fitted * 1.5
    page.click("[data-action=fit]")
    assert page.evaluate("window.__isthmusViewer.viewport.effectiveZoom()") == fitted
    page.click("[data-action=invert]")
    settle(page)
    assert gray_at(page, *AIR_AT) > 250
    page.click("[data-action=rotate]")
    page.click("[data-action=flipH]")
    settle(page)
    view = page.evaluate("window.__isthmusViewer.viewport.view")
    assert view["rotation"] == 1 and view["flipH"] is True
    # Rotated a quarter turn and flipped: the spine (below centre) is now left of centre.
    assert gray_at(page, *BONE_AT) < 5  # inverted bone is black
    page.click("[data-action=reset]")
    settle(page)
    assert gray_at(page, *AIR_AT) < 3
    assert page.evaluate("window.__isthmusViewer.viewport.view.rotation") == 0


def test_length_measurement_is_in_millimetres(page: Any, base_url: str, viewer_data: Any) -> None:
    open_study(page, base_url, viewer_data.phantom_study)
    page.click("[data-tool=length]")
    to_screen = """([x, y]) => { const v = window.__isthmusViewer.viewport; const m = v.matrix();
      const r = v.el.getBoundingClientRect(); return [r.left + m[0]*x + m[2]*y + m[4], r.top + m[1]*x + m[3]*y + m[5]]; }"""
    start = page.evaluate(to_screen, [100, 200])
    end = page.evaluate(to_screen, [200, 200])
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=5)
    page.mouse.up()
    label = page.locator("#measure-layer text")
    assert label.count() == 1
    length = float(label.get_attribute("data-length"))
    assert label.get_attribute("data-unit") == "mm"
    assert abs(length - 100 * viewer_data.pixel_spacing) < 1.0  # 100 pixels at 0.7 mm


def test_tags_panel_lists_and_filters_metadata(page: Any, base_url: str, viewer_data: Any) -> None:
    open_study(page, base_url, viewer_data.phantom_study)
    page.click("#tags-toggle")
    page.wait_for_selector("#tags-table tbody tr")
    row = page.locator("#tags-table tbody tr", has_text="PatientName")
    assert "PHANTOM^CHEST" in row.text_content()
    page.fill("#tags-search", "0028,0030")
    visible = page.locator("#tags-table tbody tr:not([hidden])")
    assert visible.count() == 1
    assert "PixelSpacing" in visible.text_content()
    page.fill("#tags-search", "window")
    names = page.locator("#tags-table tbody tr:not([hidden]) td:nth-child(2)").all_text_contents()
    assert set(names) >= {"WindowCenter", "WindowWidth"}
    page.focus("#tags-search")
    page.keyboard.press("Escape")
    assert page.locator("#tags-panel").is_hidden()


def test_cine_plays_through_the_series(page: Any, base_url: str, viewer_data: Any) -> None:
    open_study(page, base_url, viewer_data.phantom_study)
    page.wait_for_selector("#study-view[data-loaded=true]")
    page.select_option("#cine-fps", "30")
    page.click("#cine-play")
    page.wait_for_function(
        "Number(document.querySelector('#viewport').dataset.instanceNumber) >= 5"
    )
    page.click("#cine-play")
    settle(page)
    stopped = instance_number(page)
    page.wait_for_timeout(200)
    settle(page)
    assert instance_number(page) == stopped
    assert page.get_attribute("#cine-play", "aria-pressed") == "false"


def test_study_zip_download_holds_every_instance(
    page: Any, base_url: str, viewer_data: Any, tmp_path: Path
) -> None:
    import zipfile

    import pydicom

    open_study(page, base_url, viewer_data.phantom_study)
    with page.expect_download() as download:
        page.click("#download-zip")
    path = tmp_path / "study.zip"
    download.value.save_as(path)
    assert download.value.suggested_filename == "PH001_20240301_PHACC.zip"
    with zipfile.ZipFile(path) as z:
        names = sorted(z.namelist())
        assert len(names) == viewer_data.phantom_slices
        assert names[0] == "PH001_20240301_PHACC/S001_CT_AXIAL 1mm/IMG00001.dcm"
        ds = pydicom.dcmread(io.BytesIO(z.read(names[0])))
        assert ds.InstanceNumber == 1 and ds.PatientID == "PH001"


def test_screenshot_for_the_readme(page: Any, base_url: str, viewer_data: Any) -> None:
    """docs/viewer-screenshot.png: 1920x1080, a CT study loaded, a lung window and a length."""
    open_study(page, base_url, viewer_data.phantom_study)
    page.wait_for_selector("#study-view[data-loaded=true]")
    page.focus("#viewport")
    for _ in range(11):
        page.keyboard.press("ArrowDown")
    page.select_option("#preset", "lung")
    page.click("[data-tool=length]")
    to_screen = """([x, y]) => { const v = window.__isthmusViewer.viewport; const m = v.matrix();
      const r = v.el.getBoundingClientRect(); return [r.left + m[0]*x + m[2]*y + m[4], r.top + m[1]*x + m[3]*y + m[5]]; }"""
    page.mouse.move(*page.evaluate(to_screen, [110, 246]))
    page.mouse.down()
    page.mouse.move(*page.evaluate(to_screen, [208, 246]), steps=4)
    page.mouse.up()
    page.click("#tags-toggle")
    page.fill("#tags-search", "patient")
    page.locator("#viewport").focus()
    settle(page)
    png = page.screenshot()
    image = Image.open(io.BytesIO(png))
    assert image.size == (1920, 1080)
    out = io.BytesIO()
    image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
        out, format="PNG", optimize=True
    )
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.write_bytes(out.getvalue())
    assert SCREENSHOT.stat().st_size < 400_000


def test_choosing_another_series_shows_it(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}?PatientName=DOE*")
    page.locator("#studies tbody tr td a").first.click()
    page.wait_for_function("document.querySelectorAll('.series-button').length === 2")
    first, second = page.locator(".series-button").all()
    page.wait_for_function("() => window.__isthmusViewer.viewport.frame?.kind === 'gray'")
    second.click()
    assert (
        second.get_attribute("aria-current") == "true"
        and first.get_attribute("aria-current") == "false"
    )
    uid = second.get_attribute("data-series")
    page.wait_for_function(
        """(uid) => { const v = window.__isthmusViewer;
      return v.current?.uid === uid && v.viewport.entry?.meta['0020000E'].Value[0] === uid && v.viewport.frame; }""",
        arg=uid,
    )
    assert f"series={uid}" in page.url
    assert "Se 2:" in page.locator(".overlay.tr").text_content()
