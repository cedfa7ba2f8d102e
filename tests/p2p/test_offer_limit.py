"""Wrong proofs at `POST /api/p2p/{id}/offer` are rate limited per link and per client
address (429 with Retry-After); right proofs take nothing from the buckets."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

pytest.importorskip("aiolibdatachannel")

from tests.p2p.node_support import Node
from tests.p2p.test_share_links import STUDY, share, stored

from isthmus.p2p.signalling import offer_proof, parse_link
from isthmus.testing.generate import StudySpec

pytestmark = pytest.mark.timeout(300)
# An SDP with a fingerprint and nothing to connect to: enough to check a proof.
SDP = "v=0\r\na=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    folder = tmp_path_factory.mktemp("p2p-limit")
    config = folder / "limit.toml"
    config.write_text("[p2p]\noffer_failures = 3\noffer_refill = 600\n")
    sharing, fetching = Node(folder, "SHARING"), Node(folder, "FETCHING")
    sharing.load(
        StudySpec(study_uid=STUDY, series_count=1, instances_per_series=4, rows=64, columns=64)
    )
    sharing.start("--config", str(config))
    fetching.start()
    try:
        yield sharing, fetching
    finally:
        fetching.stop()
        sharing.stop()


def offer(link: str, address: str, right: bool) -> httpx.Response:
    """Offer from the loopback `address` (127.0.0.0/8 all reaches the node)."""
    base, link_id, secret = parse_link(link)
    proof = offer_proof(secret, link_id, SDP) if right else "0" * 64
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.post(f"{base}/api/p2p/{link_id}/offer", json={"sdp": SDP, "proof": proof})


def test_right_proofs_are_never_counted(nodes: tuple[Node, Node]) -> None:
    sharing, _ = nodes
    link = share(sharing)
    for _ in range(6):  # more than offer_failures: the fake SDP cannot be answered (400)
        assert offer(link, "127.0.0.2", right=True).status_code == 400


def test_after_too_many_wrong_proofs_the_link_and_the_address_get_429(
    nodes: tuple[Node, Node],
) -> None:
    sharing, fetching = nodes
    hammered, other = share(sharing), share(sharing)
    for _ in range(3):
        refused = offer(hammered, "127.0.0.3", right=False)
        assert refused.status_code == 403
    limited = offer(hammered, "127.0.0.3", right=False)
    assert limited.status_code == 429
    assert 0 < int(limited.headers["retry-after"]) <= 600
    assert "too many offers with a wrong proof" in limited.json()["message"]
    # The guesser's address is held up on every link, the hammered link for everyone…
    assert offer(other, "127.0.0.3", right=True).status_code == 429
    assert offer(hammered, "127.0.0.4", right=True).status_code == 429
    # …and another link from another address is untouched: a real fetch completes.
    done = fetching.isthmus("fetch", other, "--server", fetching.url)
    assert done.returncode == 0, done.stderr
    assert stored(fetching.folder / "FETCHING", STUDY) == stored(sharing.folder / "SHARING", STUDY)
