"""`python -m bench.dicom_ws`: C-STORE of a CT series into a browser through the gateway.

Seed 003 (Table 4) stored 271 CT images of 514 KB into the browser in 12.4 s on
localhost.  Here DCMTK `storescu` sends the same shape of series (bench/data.py `ct`:
271 × 512×512×16 bit) to an AE title registered by headless Chromium running the DICOM
node page; the time runs from `storescu` starting to `storescu` exiting, and the
browser answers each C-STORE only after the IndexedDB transaction holding the instance
has committed, so that is the time to have every instance in IndexedDB (on disk: a
persistent browser profile).  In the same run: DCMTK `storescu` → `storescp` (writing
files), the transfer without gateway and browser; `storescu` → gateway → a minimal Python
WebSocket client that answers at once, the gateway's own cost; and the browser with a
C-STORE SCP that keeps nothing, the cost of IndexedDB.

Chromium runs on its own (`--remote-debugging-port`); Playwright connects over CDP to
register the AE titles and to count and clear what IndexedDB holds, and disconnects
before every timed `storescu` (class Browser: a DevTools client attached during the
transfer would be timed too).

Runs inside a private network namespace (bench/netns.py) because storescp binds every
interface.  Options: --repeat N (default 3), --keep-browser-db (do not clear between runs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import netns
from bench.data import load
from bench.procs import StoreSCP, dcmtk, dcmtk_env, run
from isthmus.testing.chromium import CHROMIUM, CHROMIUM_ARGS

OUT = Path(__file__).resolve().parent / "out"
AET = "BENCHWEB"


def storescu(port: int, aet: str, files: list[Path]) -> float:
    seconds, _ = run(
        [dcmtk("storescu"), "-aec", aet, "127.0.0.1", str(port), *map(str, files)],
        timeout=600,
        env=dcmtk_env(),
    )
    return seconds


def direct(files: list[Path], work: Path) -> float:
    """DCMTK to DCMTK: storescu → storescp (files on disk)."""
    shutil.rmtree(work, ignore_errors=True)
    with StoreSCP(work) as scp:
        seconds = storescu(scp.dicom_port, scp.aet, files)
        assert scp.count() == len(files), f"storescp kept {scp.count()} of {len(files)}"
    return seconds


# A second AE title whose C-STORE SCP keeps nothing: the same path minus IndexedDB.
REGISTER_DISCARDING = """async () => {
  const d = window.dicomNode.dicomnet, s = window.dicomNode.session;
  await s.gateway.listen('BENCHNULL', { decide: d.storageNodePolicy('BENCHNULL'), maxPDU: s.info.max_pdu,
    handlers: { [d.COMMAND.C_STORE_RQ]: d.storeHandler(async () => {}) } });
}"""


class Browser:
    """Headless Chromium showing /node.html, driven over CDP only between timed runs.

    A DevTools client (Playwright) enables the Network domain, and Chromium then reports
    every WebSocket frame to it, base64-encoded: 142 MB of frames cost ~1.3 s of renderer,
    browser and driver CPU on this machine, more than the page's own work.  Nobody has
    DevTools attached to a DICOM node in use, so the client connects to set up and to
    check, and disconnects before each `storescu` starts.
    """

    def __init__(self, work: Path, url: str) -> None:
        from isthmus.testing.net import free_port

        self.port = free_port()
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                *CHROMIUM_ARGS,
                f"--user-data-dir={work / 'profile'}",
                f"--remote-debugging-port={self.port}",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def run(self, work: Any) -> Any:
        """Connect, hand the node page to `work(page)`, disconnect; returns what it returned."""
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            for _ in range(100):
                try:
                    browser = p.chromium.connect_over_cdp(f"http://127.0.0.1:{self.port}")
                    break
                except Exception:  # not listening yet
                    time.sleep(0.1)
            else:
                raise RuntimeError("Chromium's DevTools endpoint never answered")
            try:
                page = next(pg for c in browser.contexts for pg in c.pages if "node.html" in pg.url)
                page.set_default_timeout(600_000)
                return work(page)
            finally:
                browser.close()  # disconnects; the browser and its page stay

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _register(page: Any) -> None:
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#aet", AET)
    page.click("#register-button")
    page.wait_for_function("() => window.dicomNode.session.aet === 'BENCHWEB'")
    page.evaluate(REGISTER_DISCARDING)


# How many records IndexedDB holds, counted by IndexedDB: no value (142 MB) is read back,
# so nothing of the check is left for the renderer to collect during the next run.
COUNT = """() => new Promise((resolve, reject) => {
  const request = window.dicomNode.session.store.db
    .transaction("instances").objectStore("instances").count();
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
})"""


def _count(page: Any) -> int:
    return int(page.evaluate(COUNT))


def through_gateway(files: list[Path], work: Path, repeat: int) -> tuple[list[float], list[float]]:
    """storescu → Isthmus DICOM port → gateway → Chromium (→ IndexedDB), `repeat` times each."""
    from isthmus.config import Settings
    from isthmus.server import Node
    from isthmus.testing.net import free_port

    settings = Settings(
        data=work / "isthmus", dicom_port=free_port(), http_port=free_port(), check_on_start=False
    )
    times, discarded = [], []
    with Node(settings) as node:
        browser = Browser(work, f"http://127.0.0.1:{node.http_port}/node.html")
        try:
            browser.run(_register)
            for _ in range(repeat):
                discarded.append(storescu(node.dicom_port, "BENCHNULL", files))
                browser.run(
                    lambda page: page.evaluate("() => window.dicomNode.session.store.clear()")
                )
                seconds = storescu(node.dicom_port, AET, files)
                stored = browser.run(_count)
                assert stored == len(files), f"IndexedDB holds {stored} of {len(files)}"
                times.append(seconds)
        finally:
            browser.close()
    return times, discarded


def _items(data: bytes, start: int, end: int):
    while start < end:
        kind, length = data[start], struct.unpack(">H", data[start + 2 : start + 4])[0]
        yield kind, start + 4, start + 4 + length
        start += 4 + length


def _minimal_acceptor(base: str, ready: Any) -> None:
    """A non-browser WebSocket client that accepts one association and answers every
    C-STORE with success at once: the gateway's own cost, without a browser's."""
    from websockets.sync.client import connect

    def element(tag: int, value: bytes) -> bytes:
        return struct.pack("<HHI", 0, tag, len(value)) + value

    with connect(base + "listen?aet=BENCHPY", subprotocols=["dicom-ws"], max_size=None) as listener:
        listener.recv()
        ready.set()
        announced = json.loads(listener.recv())
        with connect(
            base + f"accept?id={announced['id']}", subprotocols=["dicom-ws"], max_size=None
        ) as conn:
            rq = conn.recv()
            items = b"".join(
                struct.pack(">BBHBBBB", 0x21, 0, 4 + e2 - s2 + 4, rq[s], 0, 0, 0)
                + struct.pack(">BBH", 0x40, 0, e2 - s2)
                + rq[s2:e2]
                for kind, s, e in _items(rq, 74, len(rq))
                if kind == 0x20
                for _, s2, e2 in [next(x for x in _items(rq, s + 4, e) if x[0] == 0x40)]
            )
            body = (
                rq[6:74]
                + struct.pack(">BBH", 0x10, 0, 21)
                + b"1.2.840.10008.3.1.1.1"
                + items
                + struct.pack(">BBHBBHI", 0x50, 0, 8, 0x51, 0, 4, 1 << 20)
            )
            conn.send(struct.pack(">BBI", 2, 0, len(body)) + body)
            command: dict[int, bytes] = {}
            while (pdu := conn.recv())[0] == 4:
                if pdu[11] & 1:
                    offset, command = 12, {}
                    while offset < len(pdu):
                        _, tag, length = struct.unpack("<HHI", pdu[offset : offset + 8])
                        command[tag] = pdu[offset + 8 : offset + 8 + length]
                        offset += 8 + length
                elif pdu[11] & 2:
                    rsp = (
                        element(2, command[2])
                        + element(0x100, struct.pack("<H", 0x8001))
                        + element(0x120, command[0x110])
                        + element(0x800, struct.pack("<H", 0x101))
                        + element(0x900, bytes(2))
                        + element(0x1000, command[0x1000])
                    )
                    rsp = element(0, struct.pack("<I", len(rsp))) + rsp
                    pdv = struct.pack(">IBB", len(rsp) + 2, pdu[10], 3) + rsp
                    conn.send(struct.pack(">BBI", 4, 0, len(pdv)) + pdv)
            if pdu[0] == 5:
                conn.send(struct.pack(">BBIBBBB", 6, 0, 4, 0, 0, 0, 0))
                with contextlib.suppress(Exception):
                    conn.recv(timeout=5)


def gateway_only(files: list[Path], work: Path) -> float:
    """storescu → gateway → a minimal Python WebSocket client (another process)."""
    from isthmus.config import Settings
    from isthmus.server import Node
    from isthmus.testing.net import free_port

    settings = Settings(
        data=work / "isthmus-py",
        dicom_port=free_port(),
        http_port=free_port(),
        check_on_start=False,
    )
    with Node(settings) as node:
        ready = multiprocessing.Event()
        client = multiprocessing.Process(
            target=_minimal_acceptor, args=(f"ws://127.0.0.1:{node.http_port}/dicom-ws/", ready)
        )
        client.start()
        ready.wait(60)
        try:
            return storescu(node.dicom_port, "BENCHPY", files)
        finally:
            client.join(60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dicom_ws", description=__doc__.split("\n")[0]
    )
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
        python_times = [gateway_only(files, work / f"py{n}") for n in range(args.repeat)]
        gateway_times, discard_times = through_gateway(files, work, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best_direct, best_gateway = min(direct_times), min(gateway_times)
    print(f"\n{len(files)} CT images, {size_mb:.0f} MB, {args.repeat} runs each (best / median):")
    print(
        f"  DCMTK storescu → storescp (files):               {best_direct:6.2f} s / {statistics.median(direct_times):6.2f} s"
    )
    print(
        f"  DCMTK storescu → gateway → minimal Python client: {min(python_times):5.2f} s / {statistics.median(python_times):6.2f} s"
    )
    print(
        f"  DCMTK storescu → gateway → Chromium (discarded): {min(discard_times):6.2f} s / {statistics.median(discard_times):6.2f} s"
    )
    print(
        f"  DCMTK storescu → gateway → Chromium IndexedDB:   {best_gateway:6.2f} s / {statistics.median(gateway_times):6.2f} s"
    )
    print(
        f"  gateway's own overhead (best): {min(python_times) - best_direct:+.2f} s; "
        f"with the browser and IndexedDB: {best_gateway - best_direct:+.2f} s, "
        f"{size_mb / best_gateway:.0f} MB/s into IndexedDB"
    )
    print("  seed 003, Table 4 (DICOM JS, localhost, FileSystem API): 12.4 s")
    return 0


def reexec(argv: list[str]) -> int:
    """Run this module again inside a namespace with only loopback (as bench/netns.py does)."""
    flags = "-n" if os.geteuid() == 0 else "-rn"
    cmd = [
        "unshare",
        flags,
        "sh",
        "-c",
        'ip link set lo up && exec "$@"',
        "sh",
        sys.executable,
        "-m",
        "bench.dicom_ws",
        *argv,
    ]
    return subprocess.run(cmd, env=dict(os.environ, **{netns.MARKER: "1"}), timeout=3600).returncode


if __name__ == "__main__":
    raise SystemExit(main())
