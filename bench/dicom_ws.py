"""`python -m bench.dicom_ws`: C-STORE of a CT series into a browser through the gateway.

Seed 003 (Table 4) stored 271 CT images of 514 KB into the browser in 12.4 s on
localhost.  Here DCMTK `storescu` sends the same shape of series (bench/data.py `ct`:
271 × 512×512×16 bit) to an AE title registered by headless Chromium running the DICOM
node page; the time runs from `storescu` starting to `storescu` exiting, and the
browser answers each C-STORE only after the IndexedDB transaction holding the instance
has committed, so that is the time to have every instance in IndexedDB (on disk: a
persistent browser profile).  In the same run DCMTK `storescu` → `storescp` (writing
files) gives the cost of the transfer without the gateway and the browser.

Runs inside a private network namespace (bench/netns.py) because storescp binds every
interface.  Options: --repeat N (default 3), --keep-browser-db (do not clear between runs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import netns
from bench.data import load
from bench.procs import StoreSCP, dcmtk, dcmtk_env, run

OUT = Path(__file__).resolve().parent / "out"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
AET = "BENCHWEB"


def storescu(port: int, aet: str, files: list[Path]) -> float:
    seconds, _ = run([dcmtk("storescu"), "-aec", aet, "127.0.0.1", str(port), *map(str, files)],
                     timeout=600, env=dcmtk_env())
    return seconds


def direct(files: list[Path], work: Path) -> float:
    """DCMTK to DCMTK: storescu → storescp (files on disk)."""
    shutil.rmtree(work, ignore_errors=True)
    with StoreSCP(work) as scp:
        seconds = storescu(scp.dicom_port, scp.aet, files)
        assert scp.count() == len(files), f"storescp kept {scp.count()} of {len(files)}"
    return seconds


def through_gateway(files: list[Path], work: Path, repeat: int) -> list[float]:
    """storescu → Isthmus DICOM port → gateway → Chromium → IndexedDB, `repeat` times."""
    from playwright.sync_api import sync_playwright

    from isthmus.config import Settings
    from isthmus.server import Node
    from isthmus.testing.net import free_port

    settings = Settings(data=work / "isthmus", dicom_port=free_port(), http_port=free_port(),
                        check_on_start=False)
    times = []
    with Node(settings) as node, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(work / "profile"), executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = context.new_page()
            page.set_default_timeout(600_000)
            page.goto(f"http://127.0.0.1:{node.http_port}/node.html")
            page.wait_for_selector("body[data-ready=true]")
            page.fill("#aet", AET)
            page.click("#register-button")
            page.wait_for_function("() => window.dicomNode.session.aet === 'BENCHWEB'")
            for _ in range(repeat):
                page.evaluate("() => window.dicomNode.session.store.clear()")
                seconds = storescu(node.dicom_port, AET, files)
                stored = page.evaluate("async () => (await window.dicomNode.session.store.list()).length")
                assert stored == len(files), f"IndexedDB holds {stored} of {len(files)}"
                times.append(seconds)
        finally:
            context.close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dicom_ws", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if not netns.inside():
        return reexec(sys.argv[1:])
    data = load("ct", OUT / "data")
    files = data.files()
    size_mb = data.size_bytes / 1e6
    work = Path(tempfile.mkdtemp(prefix="dicom-ws-", dir=OUT))
    try:
        direct_times = [direct(files, work / "storescp") for _ in range(args.repeat)]
        gateway_times = through_gateway(files, work, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best_direct, best_gateway = min(direct_times), min(gateway_times)
    print(f"\n{len(files)} CT images, {size_mb:.0f} MB, {args.repeat} runs each (best / median):")
    print(f"  DCMTK storescu → storescp (files):               {best_direct:6.2f} s / {statistics.median(direct_times):6.2f} s")
    print(f"  DCMTK storescu → gateway → Chromium IndexedDB:   {best_gateway:6.2f} s / {statistics.median(gateway_times):6.2f} s")
    print(f"  gateway + browser overhead (best): {best_gateway - best_direct:+.2f} s, "
          f"{size_mb / best_gateway:.0f} MB/s into IndexedDB")
    print("  seed 003, Table 4 (DICOM JS, localhost, FileSystem API): 12.4 s")
    return 0


def reexec(argv: list[str]) -> int:
    """Run this module again inside a namespace with only loopback (as bench/netns.py does)."""
    flags = "-n" if os.geteuid() == 0 else "-rn"
    cmd = ["unshare", flags, "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
           sys.executable, "-m", "bench.dicom_ws", *argv]
    return subprocess.run(cmd, env=dict(os.environ, **{netns.MARKER: "1"}), timeout=3600).returncode


if __name__ == "__main__":
    raise SystemExit(main())
