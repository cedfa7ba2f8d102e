"""`isthmus share` and `isthmus fetch`: the CLI asks a running node (--server) over its
HTTP API, with the same tokens (docs/p2p.md)."""

from __future__ import annotations

import sys
import time

from isthmus.node_api import call
from isthmus.p2p.signalling import link_id_of, parse_link

STALL = 120.0  # seconds without progress before `fetch` gives up waiting


def share(
    server: str, token: str | None, study: str, expires: str, federation: bool = False
) -> int:
    body = {"study": study, "expires": expires, "federation": federation}
    doc = call("POST", server, "/api/shares", token, body=body)
    where = " with the federation" if federation else ""
    print(f"study {doc['study']} shared{where} until {doc['expires_at']}", file=sys.stderr)
    print(doc["url"])
    return 0


def list_federation(server: str, token: str | None, as_json: bool = False) -> int:
    """The sites online and the studies shared to this site (GET /api/p2p/federation)."""
    doc = call("GET", server, "/api/p2p/federation", token)
    if as_json:
        import json

        print(json.dumps(doc, indent=1))
        return 0
    print(f"online: {', '.join(doc.get('online', [])) or '(none)'}")
    for s in doc.get("shares", []):
        state = "online" if s.get("online") else "offline"
        print(
            f"{s['site']:<8} {state:<7} {s.get('study_date', ''):<8} "
            f"{s.get('patient_name', '')[:24]:<24} {s.get('description', '')[:28]:<28} "
            f"{s.get('instances', 0):>5} inst  until {s['expires_at'][:16]}"
        )
        print(f"         {s['link']}")
    return 0


def revoke(server: str, token: str | None, link: str) -> int:
    doc = call("DELETE", server, f"/api/shares/{link_id_of(link)}", token)
    print(f"share link {doc['revoked']} revoked")
    return 0


def fetch(server: str, token: str | None, link: str) -> int:
    """Start the pull on the node, then follow it until complete (0) or failed (1); a
    string that is not a share link fails (1) before the node is asked."""
    try:
        parse_link(link)
    except ValueError as exc:
        print(f"isthmus: {exc}", file=sys.stderr)
        return 1
    started = call("POST", server, "/api/admin/p2p/fetch", token, body={"link": link})
    from tqdm import tqdm

    bar = tqdm(total=0, unit="B", unit_scale=True, file=sys.stderr, disable=not sys.stderr.isatty())
    last, changed = None, time.monotonic()
    while True:
        state = call("GET", server, f"/api/admin/p2p/fetch/{started['id']}", token)
        progress = state["progress"]
        bar.total = progress["bytes_total"]
        bar.n = progress["bytes_received"]
        bar.refresh()
        if state["status"] in ("complete", "failed"):
            break
        if (progress["bytes_received"], progress["stored"]) != last:
            last, changed = (progress["bytes_received"], progress["stored"]), time.monotonic()
        elif time.monotonic() - changed > STALL:
            bar.close()
            print(f"isthmus: no progress for {STALL:g} s; giving up", file=sys.stderr)
            return 1
        time.sleep(0.3)
    bar.close()
    summary = (
        f"{progress['instances']} instance(s) of study {progress['study_uid']}: "
        f"{progress['stored']} stored, {progress['already']} already here, {progress['refetched']} refetched"
    )
    if state.get("path"):
        how = f" (signalling: {state['signalling']})" if state.get("signalling") else ""
        why = f": {state['why']}" if state.get("why") else ""
        print(f"path: {state['path']}{how}{why}", file=sys.stderr)
    if state["status"] == "complete":
        print(f"complete and verified: {summary}")
        seconds = state.get("seconds") or 0
        if seconds:
            print(
                f"{progress['bytes_received'] / 1e6:.1f} MB in {seconds:.2f} s ({progress['bytes_received'] / 1e6 / seconds:.1f} MB/s) on the node"
            )
        return 0
    if not progress["study_uid"]:  # refused or cut before the manifest: no study, no figures
        print(
            f"isthmus: fetch failed before any manifest arrived: {state.get('reason')}",
            file=sys.stderr,
        )
        return 1
    print(f"isthmus: fetch failed: {state.get('reason')} ({summary})", file=sys.stderr)
    return 1
