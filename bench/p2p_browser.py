"""`python -m bench.p2p_browser [--images 271] [--size 512] [--runs 3]`: node → headless Chromium.

Standalone, like bench/p2p_share.py: one `isthmus serve` on 127.0.0.1 holding a generated
CT study, `isthmus share` there, and headless Chromium (the flags of tests/viewer/browser.py)
opening the link.  Per run, in a fresh browser profile: MB/s from opening the link to the
page's "complete and verified" (every instance SHA-256-checked and committed to IndexedDB),
MB/s of the transfer itself (manifest to done, the page's own figure), and the time from
opening the link to the first image on the canvas (performance.now() is measured from the
navigation's start).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.p2p_share import arguments, imported_study, isthmus
from isthmus.testing.chromium import CHROMIUM, CHROMIUM_ARGS, WEBRTC_ARGS
from isthmus.testing.net import free_port, wait_for_port


def one_run(browser: Any, link: str) -> dict[str, Any]:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(link)
        page.wait_for_function(
            "() => ['complete', 'failed'].includes(window.__share?.status)", timeout=600_000
        )
        outcome: dict[str, Any] = page.evaluate("() => ({...window.__share})")
    finally:
        context.close()
    if outcome["status"] != "complete":
        raise SystemExit(f"the transfer failed: {outcome['message']}")
    return outcome


def main() -> None:
    args = arguments(("--runs", 3))
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="p2p-browser-bench-") as tmp:
        folder = Path(tmp)
        files, total = imported_study(folder, args.images, args.size)
        port = free_port()
        command = [sys.executable, "-m", "isthmus", "serve", "--data", str(folder / "a")]
        command += ["--log-level", "warning", "--http-port", str(port)]
        command += ["--dicom-port", str(free_port())]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, timeout=60)
            import pydicom

            study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
            server = f"http://127.0.0.1:{port}"
            link = isthmus("share", study, "--server", server).strip().splitlines()[-1]
            rows = []
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS + WEBRTC_ARGS
                )
                try:
                    for _ in range(args.runs):
                        out = one_run(browser, link)
                        end_to_end = total / 1e6 / (out["doneAt"] / 1000)
                        rows.append(
                            (end_to_end, out["figures"]["mbPerSecond"], out["firstImageAt"])
                        )
                        print(
                            f"{len(files)} instances, {total / 1e6:.1f} MB: "
                            f"{end_to_end:.1f} MB/s from opening the link to verified in IndexedDB "
                            f"({out['doneAt'] / 1000:.2f} s), transfer {rows[-1][1]:.1f} MB/s, "
                            f"first image {out['firstImageAt']:.0f} ms after opening the link"
                        )
                finally:
                    browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        print(
            f"median of {len(rows)}: {statistics.median(r[0] for r in rows):.1f} MB/s end to end,"
            f" {statistics.median(r[1] for r in rows):.1f} MB/s transfer,"
            f" first image {statistics.median(r[2] for r in rows):.0f} ms"
        )


if __name__ == "__main__":
    main()
