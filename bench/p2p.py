"""Issue 12: sharing a study node → node over WebRTC (docs/p2p.md), on loopback.

Two `isthmus serve` processes; the 271-CT study imported into the sharing one, a share
link made there, and a fresh fetching node per run pulls it (`POST /api/admin/p2p/fetch`,
polled).  Timed: the fetching node's `seconds`, from signalling to the last instance
verified (SHA-256) and durably stored; MB/s = study bytes / median.

- `p2p-host`: host candidates (target ≥ 40 MB/s).  The benchmark's network namespace has
  only `lo`, on which libjuice gathers no candidate at all, so the scenario adds a veth
  pair with a private address inside that namespace (it exists nowhere else);
  channel.py then adds its 127.0.0.1 candidates as on any machine;
- `p2p-turn`: both nodes relay-only through coturn on 127.0.0.1 (isthmus.testing.turn),
  TURN REST API credentials from a shared secret (reported, no target).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench import netns
from bench.lab import Lab
from bench.p2p_share import isthmus
from bench.results import Scenario
from isthmus.testing import processes
from isthmus.testing.net import free_port, wait_for_port
from isthmus.testing.turn import TemporaryTURN, turnserver_binary

NAME = "p2p"
TITLE = "p2p: a shared study node → node over WebRTC"
TARGET_MBPS = 40.0


class Node:
    """One `isthmus serve` on loopback with an optional config file."""

    def __init__(self, folder: Path, name: str, config: Path | None) -> None:
        self.folder, self.name, self.config = folder, name, config
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Node:
        command = [sys.executable, "-m", "isthmus", "serve", "--data", str(self.folder)]
        command += ["--aet", self.name, "--http-port", str(self.port)]
        command += ["--dicom-port", str(free_port()), "--log-level", "warning"]
        if self.config is not None:
            command += ["--config", str(self.config)]
        with open(self.folder.with_suffix(".log"), "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, timeout=60)
        return self

    def stop(self) -> None:
        processes.stop(self.proc)


def fetch(node: Node, link: str, timeout: float = 600) -> dict[str, Any]:
    """Start a fetch on `node` and poll it to its end (bounded)."""
    with httpx.Client(timeout=10) as client:
        reply = client.post(f"{node.url}/api/admin/p2p/fetch", json={"link": link})
        reply.raise_for_status()
        fetch_id = reply.json()["id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state: dict[str, Any] = client.get(f"{node.url}/api/admin/p2p/fetch/{fetch_id}").json()
            if state["status"] in ("complete", "failed"):
                return state
            time.sleep(0.05)
    raise RuntimeError(f"fetch did not end within {timeout} s")


def _path(lab: Lab, label: str, title: str, target: str, config: str) -> Scenario:
    ct = lab.data("ct")
    s = Scenario(f"p2p-{label}", title, target=target)
    work = lab.work / f"p2p-{label}"
    work.mkdir(parents=True)
    conf: Path | None = None
    if config:
        conf = work / "p2p.toml"
        conf.write_text(config)
    isthmus("import", "--data", str(work / "sharing"), *map(str, ct.folders))
    sharing = Node(work / "sharing", "SHARING", conf).start()
    try:
        for run in range(lab.repeat):
            link = isthmus("share", ct.study_uids[0], "--server", sharing.url).splitlines()[-1]
            fetching = Node(work / f"fetching-{run}", "FETCHING", conf).start()
            try:
                state = fetch(fetching, link)
            finally:
                fetching.stop()
            if state["status"] != "complete":
                raise RuntimeError(f"fetch failed: {state.get('reason')}")
            s.measure("isthmus", size_bytes=ct.size_bytes).seconds.append(state["seconds"])
    finally:
        sharing.stop()
    median = s.measurements["isthmus"].median or 1
    mbps = round(ct.size_bytes / 1e6 / median, 1)
    s.details["mb_per_s"] = mbps
    if target:
        s.note = f"{mbps} MB/s {'✓' if mbps >= TARGET_MBPS else '✗'} ({target})"
    else:
        s.note = f"{mbps} MB/s (reported)"
    print(f"   {s.title}: {s.note}", flush=True)
    return s


DUMMY = ("isthmus-p2p0", "10.254.12.1/24")


def _host_interface() -> None:
    """Inside the benchmark's namespace only: a veth pair (the kernel may lack the
    dummy driver) with a private address, so ICE has a host
    candidate to start from (see the module's docstring)."""
    if not netns.inside():
        return
    name, address = DUMMY
    if subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0:
        return
    for command in (
        ["ip", "link", "add", name, "type", "veth", "peer", "name", name + "b"],
        ["ip", "addr", "add", address, "dev", name],
        ["ip", "link", "set", name + "b", "up"],
        ["ip", "link", "set", name, "up"],
    ):
        subprocess.run(command, check=True, capture_output=True)


def _guarded(name: str, title: str, measure: Any) -> Scenario:
    """One path's scenario; a failure is that row's status, not the other path's loss."""
    try:
        result: Scenario = measure()
        return result
    except Exception as exc:
        return Scenario(name, title, status="failed", note=str(exc)[:300])


def run(lab: Lab) -> list[Scenario]:
    _host_interface()
    host = "p2p node → node, 271 CT, host candidates (MB/s)"
    out = [_guarded("p2p-host", host, lambda: _path(lab, "host", host, "≥ 40 MB/s", ""))]
    if turnserver_binary() is None:
        out.append(
            Scenario("p2p-turn", "p2p node → node through TURN", status="skipped", note="no coturn")
        )
        return out
    with TemporaryTURN(secret="bench-secret") as turn:
        config = (
            f'[p2p]\nice_servers = ["{turn.url}"]\nturn_secret = "bench-secret"\n'
            "relay_only = true\n"
        )
        title = "p2p node → node, 271 CT, relay-only via coturn (MB/s)"
        turned = _guarded("p2p-turn", title, lambda: _path(lab, "turn", title, "", config))
        turned.details["turn_allocations"] = turn.allocations()  # proof the relay was used
        out.append(turned)
    return out
