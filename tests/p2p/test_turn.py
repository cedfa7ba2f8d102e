"""TURN forced: relay-only ICE through a real coturn on loopback, node to node; and a
TURN server that is down or refuses the credentials fails the fetch fast and clearly.
Also the /ice endpoint browser recipients read."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("aiolibdatachannel")

from tests.p2p.node_support import Node
from tests.p2p.test_share_links import STUDY, follow, share, start_fetch, stored
from tests.p2p.test_transfer import make_archive, stored_bytes

from isthmus.archive import Archive
from isthmus.p2p.channel import ChannelClosed, Peer
from isthmus.p2p.fetch import fetch
from isthmus.p2p.ice import IceConfig, IceServer, turn_rest_credentials
from isthmus.p2p.receiver import Receiver
from isthmus.p2p.sender import Sender
from isthmus.testing.generate import StudySpec, study
from isthmus.testing.net import free_port
from isthmus.testing.turn import PASSWORD, USER, TemporaryTURN, turnserver_binary

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(turnserver_binary() is None, reason="coturn not installed"),
]
SECRET = "turn-test-secret"
CANDIDATE = re.compile(r"^a=candidate:\S+ \d \S+ \d+ \S+ \d+ typ (\w+)", re.MULTILINE)


@pytest.fixture(scope="module")
def turn() -> Iterator[TemporaryTURN]:
    with TemporaryTURN(secret=SECRET) as server:
        yield server


def p2p_config(folder: Path, name: str, url: str, secret: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(
        f'[p2p]\nice_servers = ["{url}"]\nturn_secret = "{secret}"\nturn_ttl = 600\n'
        "relay_only = true\n"
    )
    return path


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory, turn: TemporaryTURN
) -> Iterator[tuple[Node, Node, Node]]:
    """Sharing and fetching nodes, relay-only through coturn; and a fetching node whose
    TURN secret is wrong."""
    folder = tmp_path_factory.mktemp("p2p-turn")
    sharing, fetching, wrong = (
        Node(folder, "SHARING"),
        Node(folder, "FETCHING"),
        Node(folder, "WRONG"),
    )
    sharing.load(
        StudySpec(study_uid=STUDY, series_count=2, instances_per_series=15, rows=256, columns=256)
    )
    for node, secret in ((sharing, SECRET), (fetching, SECRET), (wrong, "not-the-secret")):
        node.start("--config", str(p2p_config(folder, node.name, turn.url, secret)))
    try:
        yield sharing, fetching, wrong
    finally:
        for node in (sharing, fetching, wrong):
            node.stop()


@pytest.fixture
def source(tmp_path: Path) -> tuple[Archive, str]:
    """An archive holding one small generated study, and its Study Instance UID."""
    archive = make_archive(tmp_path / "source")
    uid = ""
    for ds in study(StudySpec(series_count=2, instances_per_series=6, rows=256, columns=256)):
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        assert archive.store(buffer.getvalue()).ok
        uid = ds.StudyInstanceUID
    return archive, uid


def candidate_types(sdp: str) -> set[str]:
    return set(CANDIDATE.findall(sdp))


def test_relay_only_peers_connect_through_coturn_with_relay_candidates_only(
    source: tuple[Archive, str], tmp_path: Path, turn: TemporaryTURN
) -> None:
    archive, uid = source
    target = make_archive(tmp_path / "target")
    user, credential = turn_rest_credentials(SECRET, 600)
    servers = (IceServer((turn.url,), user, credential),)
    before = turn.allocations()

    async def run() -> tuple[Peer, Peer, Any]:
        fetching, sharing = Peer(servers, relay_only=True), Peer(servers, relay_only=True)
        try:
            await fetching.accept(await sharing.answer(await fetching.offer()))
            near, far = await asyncio.gather(fetching.channel(), sharing.channel())
            serving = asyncio.create_task(Sender(archive, uid).serve(far))
            progress = await asyncio.wait_for(Receiver(target).run(near), 60)
            await asyncio.wait_for(serving, 30)
            return fetching, sharing, progress
        finally:
            await fetching.close()
            await sharing.close()

    fetching, sharing, progress = asyncio.run(run())
    assert progress.complete
    assert stored_bytes(target, uid) == stored_bytes(archive, uid)
    for sdp in (fetching.local_sdp, fetching.remote_sdp, sharing.local_sdp, sharing.remote_sdp):
        assert candidate_types(sdp) == {"relay"}, sdp
    assert turn.allocations() >= before + 2
    assert "CREATE_PERMISSION processed, success" in turn.log_text()


def test_a_static_turn_user_also_works(tmp_path: Path) -> None:
    with TemporaryTURN(static_user=True) as server:
        servers = (IceServer((server.url,), USER, PASSWORD),)

        async def run() -> bytes | str:
            a, b = Peer(servers, relay_only=True), Peer(servers, relay_only=True)
            try:
                await a.accept(await b.answer(await a.offer()))
                near, far = await asyncio.gather(a.channel(), b.channel())
                await near.send(b"through the relay")
                return await far.recv(10)
            finally:
                await a.close()
                await b.close()

        assert asyncio.run(run()) == b"through the relay"
        assert server.allocations() >= 2


def test_a_relay_only_fetch_between_nodes_through_coturn_is_byte_identical(
    nodes: tuple[Node, Node, Node], turn: TemporaryTURN
) -> None:
    sharing, fetching, _ = nodes
    before = turn.allocations()
    done = fetching.isthmus("fetch", share(sharing), "--server", fetching.url)
    assert done.returncode == 0, done.stderr
    original = stored(sharing.folder / "SHARING", STUDY)
    assert len(original) == 30
    assert stored(fetching.folder / "FETCHING", STUDY) == original
    assert turn.allocations() >= before + 2  # both nodes allocated a relay


def test_wrong_turn_credentials_fail_the_fetch_quickly_naming_turn(
    nodes: tuple[Node, Node, Node],
) -> None:
    sharing, _, wrong = nodes
    started = time.monotonic()
    state = follow(wrong, start_fetch(wrong, share(sharing)))
    assert state["status"] == "failed", state
    assert "relay-only ICE" in state["reason"] and "TURN" in state["reason"], state
    assert time.monotonic() - started < 60


def test_a_turn_server_that_is_down_fails_the_fetch_within_bounds_naming_turn(
    nodes: tuple[Node, Node, Node], tmp_path: Path
) -> None:
    sharing, _, _ = nodes
    down = f"turn:127.0.0.1:{free_port()}?transport=udp"
    user, credential = turn_rest_credentials(SECRET, 600)
    ice = IceConfig((IceServer((down,), user, credential),), relay_only=True)
    target = make_archive(tmp_path / "target")

    async def run() -> None:
        await asyncio.wait_for(fetch(target, share(sharing), ice=ice), 60)

    with pytest.raises(ChannelClosed, match="relay-only ICE: no relay candidate.*TURN"):
        asyncio.run(run())


def test_the_ice_endpoint_gives_a_browser_the_servers_with_fresh_credentials(
    nodes: tuple[Node, Node, Node], turn: TemporaryTURN
) -> None:
    sharing, _, _ = nodes
    link = share(sharing)
    link_id = link.split("/share/")[1].split("#")[0]
    reply = httpx.get(f"{sharing.url}/api/p2p/{link_id}/ice", timeout=10)
    assert reply.status_code == 200 and reply.headers["cache-control"] == "no-store"
    doc = reply.json()
    assert doc["relay_only"] is True
    [server] = doc["ice_servers"]
    assert server["urls"] == [turn.url]
    expiry = int(server["username"].split(":")[0])
    assert 0 < expiry - time.time() <= 600
    assert server["credential"] != SECRET and SECRET not in reply.text
    unknown = httpx.get(f"{sharing.url}/api/p2p/nosuchlink/ice", timeout=10)
    assert unknown.status_code == 404
    assert sharing.isthmus("share", "--revoke", link, "--server", sharing.url).returncode == 0
    revoked = httpx.get(f"{sharing.url}/api/p2p/{link_id}/ice", timeout=10)
    assert revoked.status_code == 410 and "revoked" in revoked.json()["message"]
