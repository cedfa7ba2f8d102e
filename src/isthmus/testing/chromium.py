"""Headless Chromium as the tests and benchmarks start it (Debian's `/usr/bin/chromium`,
driven by Playwright; no browser is downloaded).

The flags keep it off the network this machine does not have (no background fetches,
updates or sync: refused connections otherwise pile up) and fit a root sandbox without a
GPU.  `WEBRTC_ARGS` adds what a WebRTC peer on this machine needs (the share page,
docs/p2p.md "The browser recipient"): host candidates as real addresses, not mDNS names
libdatachannel cannot resolve, and loopback interfaces allowed when they are the only ones.
"""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WEBRTC_ARGS = [
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--allow-loopback-in-peer-connection",
    "--webrtc-ip-handling-policy=default",
]
