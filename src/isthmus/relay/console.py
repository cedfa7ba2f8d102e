"""`isthmus relay status` and `isthmus relay accept`: the federation as a running node
sees it, through its admin API (`/api/admin/relay`), printed for a person."""

from __future__ import annotations

import json
import sys
from typing import Any

from isthmus.node_api import call


def status(server: str, token: str | None, as_json: bool) -> int:
    doc = call("GET", server, "/api/admin/relay", token, timeout=15)
    if not doc:
        print(f"{server} is not in a federation (started without --relay)")
        return 1
    if as_json:
        json.dump(doc, sys.stdout, indent=1)
        print()
        return 0
    print(f"site {doc['site']}  fingerprint {doc['fingerprint']}")
    print(f"bridge {doc['bridge']}  NATS {'connected' if doc['connected'] else 'DISCONNECTED'}")
    print("exports:")
    for e in doc["exports"]:
        print(f"  {e['aet']:<16} {','.join(e['services']):<28} to {','.join(e['sites'])}")
    print("imports:")
    for e in doc["imports"]:
        print(f"  {e['aet']:<16} {','.join(e['services']):<28} at site {e['site']}")
    print("sites:")
    for s in doc["sites"]:
        state = "revoked" if s["revoked"] else "trusted" if s["pinned"] else "KEYS CHANGED"
        print(f"  {s['site']:<12} {s['fingerprint']}  {state}")
        if s.get("refused_fingerprint"):
            print(f"  {'':<12} {s['refused_fingerprint']}  offered, refused until accepted")
    print("transfers:")
    for t in doc.get("transfers", []):
        print(transfer_line(t))
    if not doc.get("transfers"):
        print("  none")
    return 0


def transfer_line(t: dict[str, Any]) -> str:
    """One transfer: which way, its parties, its status, and a progress bar when the
    source said how many instances come, e.g.
    `  receiving B -> A STOREA  receiving [#####.....]  4/8 delivered, 0 failed`."""
    way = f"{t['direction']:<9} {t['source']} -> {t['destination']} {t['destination_aet']}"
    expected, delivered, failed = t.get("expected"), t["delivered"], t["failed"]
    if expected:
        done = min(expected, expected - (t.get("remaining") or 0))
        filled = round(10 * done / expected)
        bar = f"[{'#' * filled}{'.' * (10 - filled)}] {delivered}/{expected} delivered"
    else:
        bar = f"{delivered} delivered"
    line = f"  {way}  {t['status']:<9} {bar}, {failed} failed  ({t['id']})"
    if t.get("reason"):
        line += f"\n      {t['reason']}"
    return line


def accept(server: str, token: str | None, site: str, fingerprint: str) -> int:
    call(
        "POST",
        server,
        "/api/admin/relay/accept",
        token,
        params={"site": site, "fingerprint": fingerprint},
        timeout=15,
    )
    print(f"site {site}: keys {fingerprint} accepted")
    return 0
