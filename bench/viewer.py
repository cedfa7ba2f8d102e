"""Viewer speed: the 271-instance 512x512 CT study opened in headless Chromium.

    .venv/bin/python -m bench.viewer [--runs 5] [--json bench/out/viewer.json]

Reports, per run (each in a fresh browser context, so nothing is cached by the browser):
- first image: from navigation start to the first image drawn on the canvas (page, scripts,
  QIDO series, WADO-RS series metadata, the first frame from /frames, decode and draw);
- whole series: from navigation start until every frame is loaded and decoded in the browser;
- scrolling: once loaded, the images shown per second when stepping one image per animation
  frame through the series, and the cost of drawing one image (W/L LUT, RGBA, canvas).
The server is `isthmus serve` in a subprocess on a fresh SQLite archive; everything on loopback.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import data as bench_data
from isthmus.testing.chromium import CHROMIUM, CHROMIUM_ARGS
from isthmus.testing.net import free_port

DATA_DIR = Path(__file__).resolve().parent / "out" / "data"

SCROLL = """async () => {
  const v = window.__isthmusViewer;
  const n = v.stack.length;
  v.setIndex(0);
  await new Promise(r => requestAnimationFrame(r));
  let drawn = 0;
  const count = () => { drawn++; };
  v.viewport.addEventListener('drawn', count);
  const start = performance.now();
  for (let i = 1; i < n; i++) {
    v.setIndex(i);
    await new Promise(r => requestAnimationFrame(r));
  }
  const elapsed = performance.now() - start;
  v.viewport.removeEventListener('drawn', count);
  // Draw cost alone: every image drawn synchronously, no waiting for the display.
  const t0 = performance.now();
  for (let i = 0; i < n; i++) { v.index = i; v.viewport.setFrame(v.loader.get(i), v.stack[i], {index: i, total: n}); v.viewport.draw(); }
  const drawMs = (performance.now() - t0) / n;
  return { images: n - 1, drawn, seconds: elapsed / 1000, fps: drawn / (elapsed / 1000), drawMs };
}"""


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as rsp:
            return rsp.status == 200
    except OSError:
        return False


def start_server(workdir: Path, files: list[Path]) -> tuple[subprocess.Popen, int]:
    """Import the study into a fresh archive, then `isthmus serve` it."""
    exe = Path(sys.executable).with_name("isthmus")
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "isthmus"]
    archive = workdir / "data"
    subprocess.run(
        base + ["import", "--data", str(archive), "--log-level", "warning", *map(str, files)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    http_port = free_port()
    proc = subprocess.Popen(
        base
        + [
            "serve",
            "--data",
            str(archive),
            "--dicom-port",
            str(free_port()),
            "--http-port",
            str(http_port),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not http_ok(f"http://127.0.0.1:{http_port}/health"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("isthmus serve did not start")
        time.sleep(0.2)
    return proc, http_port


def one_run(browser: Any, url: str) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    try:
        page.goto(url)
        page.wait_for_function("() => window.__isthmusViewer?.timing.seriesLoaded", timeout=120_000)
        timing = page.evaluate("() => window.__isthmusViewer.timing")
        loaded = page.evaluate("() => window.__isthmusViewer.loader.loaded")
        scroll = page.evaluate(SCROLL)
    finally:
        context.close()
    if errors:
        raise RuntimeError(f"console errors: {errors[:3]}")
    return {
        "first_image_s": timing["firstImage"] / 1000,
        "series_loaded_s": timing["seriesLoaded"] / 1000,
        "images": loaded,
        "scroll_fps": scroll["fps"],
        "draw_ms": scroll["drawMs"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.viewer", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    ct = bench_data.load("ct", DATA_DIR)
    with tempfile.TemporaryDirectory(prefix="bench-viewer-") as tmp:
        proc, port = start_server(Path(tmp), ct.files())
        try:
            url = f"http://127.0.0.1:{port}/?study={ct.study_uids[0]}"
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    runs = [one_run(browser, url) for _ in range(args.runs)]
                finally:
                    browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    report(runs, ct.count)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": runs}, indent=2))
    return 0


def report(runs: list[dict[str, float]], instances: int) -> None:
    def cell(key: str, fmt: str) -> str:
        values = [r[key] for r in runs]
        return f"{fmt.format(statistics.median(values))} (best {fmt.format(min(values) if key != 'scroll_fps' else max(values))})"

    print(f"viewer, {instances}-instance 512x512 CT study, {len(runs)} runs (median, best):")
    print(f"  first image on screen   {cell('first_image_s', '{:.2f} s')}   target < 1 s")
    print(f"  whole series loaded     {cell('series_loaded_s', '{:.2f} s')}   target < 5 s")
    print(f"  scrolling, loaded       {cell('scroll_fps', '{:.0f} images/s')}   target >= 30")
    print(f"  draw one image          {cell('draw_ms', '{:.1f} ms')}")


if __name__ == "__main__":
    sys.exit(main())
