"""Helpers for the viewer's browser tests: open a study, read canvas pixels, expected grays."""

from __future__ import annotations

from typing import Any

from isthmus.testing.chromium import CHROMIUM, CHROMIUM_ARGS, WEBRTC_ARGS

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "WEBRTC_ARGS"]


def open_study(page: Any, base_url: str, study_uid: str) -> None:
    """Open a study and wait until its first image is on the canvas."""
    page.goto(f"{base_url}?study={study_uid}")
    page.wait_for_function("() => window.__isthmusViewer?.viewport.frame?.values !== undefined")
    settle(page)


def settle(page: Any) -> None:
    """Wait two animation frames, so pending draws have happened."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


GRAY_AT = """([ix, iy]) => {
  const v = window.__isthmusViewer.viewport;
  const m = v.matrix();
  const dpr = v.canvas.width / v.el.clientWidth;
  const x = Math.round((m[0] * ix + m[2] * iy + m[4]) * dpr);
  const y = Math.round((m[1] * ix + m[3] * iy + m[5]) * dpr);
  const d = v.canvas.getContext('2d').getImageData(x - 2, y - 2, 5, 5).data;
  let sum = 0;
  for (let i = 0; i < d.length; i += 4) sum += d[i];
  return sum / (d.length / 4);
}"""

CANVAS_STATS = """() => {
  const c = window.__isthmusViewer.viewport.canvas;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0, sum = 0, sq = 0;
  for (let i = 0; i < d.length; i += 16) { const g = d[i]; n++; sum += g; sq += g * g; }
  const mean = sum / n;
  return { mean, std: Math.sqrt(sq / n - mean * mean) };
}"""


def gray_at(page: Any, x: float, y: float) -> float:
    """Mean gray of a 5x5 canvas patch around image pixel (x, y)."""
    return page.evaluate(GRAY_AT, [x, y])


def canvas_stats(page: Any) -> dict[str, float]:
    return page.evaluate(CANVAS_STATS)


def expected_gray(hu: float, center: float, width: float) -> float:
    """PS3.3 C.11.2.1.2.1 linear window, scaled to 0..255."""
    lo = center - 0.5 - (width - 1) / 2
    hi = center - 0.5 + (width - 1) / 2
    if hu <= lo:
        return 0.0
    if hu > hi:
        return 255.0
    return ((hu - (center - 0.5)) / (width - 1) + 0.5) * 255


# Image coordinates of the phantom's parts (512x512, see conftest.phantom_pixels).
SOFT_TISSUE_AT = (256, 256)
LUNG_AT = (159, 246)
BONE_AT = (256, 369)
AIR_AT = (20, 20)
