"""`python -m bench.p2p_federation [--images 271] [--size 512]`: p2p over a federation.

Standalone: NATS, SeaweedFS, the bridge and three `isthmus serve` sites on 127.0.0.1
(isthmus.testing.federation); a generated CT study stored at site A and shared to the
federation; site B fetches it with the link's HTTP address unreachable (signalling
through the bridge, then WebRTC), site C with a relay-only ICE policy and no TURN
server (no WebRTC path: the relay fallback).  Prints, for each, the node's own
`seconds` (signalling to the last instance stored) and MB/s; for the fallback also the
time from the switch to the relay to the end (the 15 s ICE wait excluded).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from isthmus.testing.federation import Federation, Site
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port
from isthmus.testing.seaweedfs import TemporarySeaweedFS


def api(site: Site, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    reply = httpx.request(method, f"http://127.0.0.1:{site.http_port}{path}", json=body, timeout=60)
    reply.raise_for_status()
    return reply.json()


def fetch(site: Site, link: str) -> tuple[dict[str, Any], float | None]:
    """The final fetch status, and seconds from the switch to the relay to the end."""
    started = api(site, "POST", "/api/admin/p2p/fetch", {"link": link})
    switched = None
    while True:
        state: dict[str, Any] = api(site, "GET", f"/api/admin/p2p/fetch/{started['id']}")
        if state.get("path") == "relay" and switched is None:
            switched = time.monotonic()
        if state["status"] in ("complete", "failed"):
            return state, (time.monotonic() - switched) if switched else None
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=271)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    spec = StudySpec(
        series_count=1, instances_per_series=args.images, rows=args.size, columns=args.size
    )
    with tempfile.TemporaryDirectory(prefix="p2p-federation-") as tmp:
        folder = Path(tmp)
        s3 = TemporarySeaweedFS().start()
        federation = Federation(folder, s3, names=("A", "B", "C"))
        federation.sites["C"].config = "p2p_relay_only = true\n"
        try:
            federation.start()
            a = federation.sites["A"]
            files = write_study(spec, folder / "study")
            assert a.dcmtk("storescu", a.aet, files=files, timeout=900).returncode == 0
            import pydicom

            study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
            made = api(a, "POST", "/api/shares", {"study": study, "federation": True})
            rest = made["url"].split("://", 1)[1].split("/", 1)[1]
            unreachable = f"http://127.0.0.1:{free_port()}/{rest}"
            for name, link in (
                ("B (bridge signalling, WebRTC)", unreachable),
                ("C (relay fallback)", made["url"]),
            ):
                state, relay = fetch(federation.sites[name[0]], link)
                size = state["progress"]["bytes_total"] / 1e6
                line = f"{name}: {state['status']}, {size:.1f} MB in {state['seconds']:.1f} s"
                line += f" ({size / state['seconds']:.1f} MB/s)"
                if relay:
                    line += f"; relay part {relay:.1f} s ({size / relay:.1f} MB/s)"
                print(line, flush=True)
        finally:
            federation.close()
            s3.close()


if __name__ == "__main__":
    main()
