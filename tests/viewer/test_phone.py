"""A phone (390x844, touch): the list as cards, a study, swipe, one-finger W/L, pinch zoom."""

from __future__ import annotations

from typing import Any

from .browser import SOFT_TISSUE_AT, gray_at, open_study, settle
from .conftest import ARTIFACTS


def touch(page: Any, kind: str, points: list[tuple[float, float]]) -> None:
    """Send a real touch event through the DevTools protocol (what a finger does)."""
    page.cdp.send(
        "Input.dispatchTouchEvent",
        {
            "type": kind,
            "touchPoints": [{"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)],
        },
    )


def drag(
    page: Any, start: list[tuple[float, float]], end: list[tuple[float, float]], steps: int = 8
) -> None:
    touch(page, "touchStart", start)
    for k in range(1, steps + 1):
        touch(
            page,
            "touchMove",
            [
                (a[0] + (b[0] - a[0]) * k / steps, a[1] + (b[1] - a[1]) * k / steps)
                for a, b in zip(start, end, strict=True)
            ],
        )
        page.wait_for_timeout(40)
    touch(page, "touchEnd", [])


def viewport_center(page: Any) -> tuple[float, float]:
    box = page.locator("#viewport").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_phone_list_fits_the_screen(phone: Any, base_url: str) -> None:
    phone.goto(base_url)
    phone.wait_for_selector("#studies tbody tr")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"page is {width}px wide on a 390px screen"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    phone.screenshot(path=str(ARTIFACTS / "phone-study-list.png"))
    phone.tap("#studies tbody tr >> nth=0")
    phone.wait_for_selector("#study-view:not([hidden])")


def test_phone_touch_gestures(phone: Any, base_url: str, viewer_data: Any) -> None:
    phone.cdp = phone.context.new_cdp_session(phone)
    open_study(phone, base_url, viewer_data.phantom_study)
    phone.wait_for_selector("#study-view[data-loaded=true]")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    box = phone.locator("#viewport").bounding_box()
    assert box["width"] > 300 and box["height"] > 400, box
    x, y = viewport_center(phone)

    # A quick flick up shows the next image.
    touch(phone, "touchStart", [(x, y + 60)])
    touch(phone, "touchMove", [(x, y)])
    touch(phone, "touchMove", [(x, y - 60)])
    touch(phone, "touchEnd", [])
    phone.wait_for_function("document.querySelector('#viewport').dataset.instanceNumber === '2'")

    # A slow one-finger drag is window/level (the default tool).
    before = gray_at(phone, *SOFT_TISSUE_AT)
    drag(phone, [(x, y)], [(x, y + 80)])
    settle(phone)
    assert gray_at(phone, *SOFT_TISSUE_AT) < before - 20
    assert phone.locator("#viewport").get_attribute("data-instance-number") == "2"

    # Two fingers apart zoom in.
    zoom = phone.evaluate("window.__isthmusViewer.viewport.effectiveZoom()")
    drag(phone, [(x - 30, y), (x + 30, y)], [(x - 120, y), (x + 120, y)])
    assert phone.evaluate("window.__isthmusViewer.viewport.effectiveZoom()") > zoom * 2

    # The scrollbar is big enough to drag with a finger.
    bar = phone.locator("#scrollbar").bounding_box()
    assert bar["width"] >= 30
