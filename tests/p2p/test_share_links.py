"""Share links between two real `isthmus serve` nodes on 127.0.0.1: `isthmus share`,
`isthmus fetch` over WebRTC, and links refused (expired, revoked, wrong secret)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("aiolibdatachannel")

from tests.p2p.node_support import Node

from isthmus.archive import Archive
from isthmus.testing.generate import StudySpec

pytestmark = pytest.mark.timeout(300)
STUDY = "1.2.826.0.1.3680043.10.1386.9.777.1"
LARGE = "1.2.826.0.1.3680043.10.1386.9.777.2"  # 120 CT images of 512 x 512 (~63 MB)


def stored(folder: Path, study: str) -> dict[str, bytes]:
    archive = Archive(f"sqlite:///{folder / 'index.sqlite'}", f"file://{folder / 'blobs'}")
    try:
        return {r.sop_instance_uid: archive.read_instance(r) for r in archive.instances(study)}
    finally:
        archive.close()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    folder = tmp_path_factory.mktemp("p2p-nodes")
    sharing, fetching = Node(folder, "SHARING"), Node(folder, "FETCHING")
    sharing.load(
        StudySpec(study_uid=STUDY, series_count=2, instances_per_series=15, rows=256, columns=256)
    )
    sharing.load(
        StudySpec(study_uid=LARGE, series_count=3, instances_per_series=40, rows=512, columns=512)
    )
    sharing.start()
    fetching.start()
    try:
        yield sharing, fetching
    finally:
        fetching.stop()
        sharing.stop()


def share(node: Node, *extra: str, study: str = STUDY) -> str:
    done = node.isthmus("share", study, "--server", node.url, *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_shared_study_is_fetched_node_to_node_byte_identical(nodes: tuple[Node, Node]) -> None:
    sharing, fetching = nodes
    link = share(sharing)
    assert link.startswith(f"{sharing.url}/share/") and "#" in link
    done = fetching.isthmus("fetch", link, "--server", fetching.url)
    assert done.returncode == 0, done.stderr
    assert "complete and verified" in done.stdout
    original = stored(sharing.folder / "SHARING", STUDY)
    assert len(original) == 30
    assert stored(fetching.folder / "FETCHING", STUDY) == original


def test_a_wrong_secret_is_refused(nodes: tuple[Node, Node]) -> None:
    sharing, fetching = nodes
    link = share(sharing)
    done = fetching.isthmus("fetch", link[:-3] + "xyz", "--server", fetching.url)
    assert done.returncode == 1
    assert "does not prove knowledge of the link's secret" in done.stderr
    # No manifest came: the message says what failed, not the figures of an unknown study.
    failed = done.stderr.splitlines()[-1]
    assert failed.startswith("isthmus: fetch failed before any manifest arrived: ")
    assert "instance(s)" not in failed and "study" not in failed


def test_a_revoked_link_is_refused(nodes: tuple[Node, Node]) -> None:
    sharing, fetching = nodes
    link = share(sharing)
    revoked = sharing.isthmus("share", "--revoke", link, "--server", sharing.url)
    assert revoked.returncode == 0, revoked.stderr
    listed = httpx.get(f"{sharing.url}/api/shares", timeout=10).json()["shares"]
    assert {"revoked"} == {s["state"] for s in listed if s["link_id"] in link}
    done = fetching.isthmus("fetch", link, "--server", fetching.url)
    assert done.returncode == 1
    assert "was revoked" in done.stderr


def test_an_expired_link_is_refused(nodes: tuple[Node, Node]) -> None:
    sharing, fetching = nodes
    link = share(sharing, "--expires", "1s")
    time.sleep(1.5)
    done = fetching.isthmus("fetch", link, "--server", fetching.url)
    assert done.returncode == 1
    assert "expired at" in done.stderr


def follow(node: Node, fetch_id: str, until: int | None = None) -> dict[str, Any]:
    """Poll a fetch until it ends, or until `until` instances are stored (bounded)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state: dict[str, Any] = httpx.get(
            f"{node.url}/api/admin/p2p/fetch/{fetch_id}", timeout=10
        ).json()
        if state["status"] in ("complete", "failed"):
            return state
        if until is not None and state["progress"]["stored"] >= until:
            return state
        time.sleep(0.02)
    raise AssertionError(f"fetch {fetch_id} did not progress")


def start_fetch(node: Node, link: str) -> str:
    reply = httpx.post(f"{node.url}/api/admin/p2p/fetch", json={"link": link}, timeout=10)
    reply.raise_for_status()
    fetch_id: str = reply.json()["id"]
    return fetch_id


def test_a_fetching_node_killed_mid_transfer_resumes_with_what_it_lacks(
    nodes: tuple[Node, Node],
) -> None:
    sharing, fetching = nodes
    link = share(sharing, study=LARGE)
    before = follow(fetching, start_fetch(fetching, link), until=10)
    assert before["status"] == "transferring", before
    fetching.kill()
    fetching.start()
    held = len(stored(fetching.folder / "FETCHING", LARGE))
    assert 10 <= held < 120
    after = follow(fetching, start_fetch(fetching, link))
    progress = after["progress"]
    assert after["status"] == "complete", after
    assert progress["already"] == held and progress["stored"] == 120 - held
    # Only the instances it lacked came again: nothing of what it held was re-sent.
    largest = max(len(b) for b in stored(sharing.folder / "SHARING", LARGE).values())
    assert progress["bytes_received"] <= (120 - held) * largest
    assert stored(fetching.folder / "FETCHING", LARGE) == stored(sharing.folder / "SHARING", LARGE)


def test_the_share_api_refuses_unknown_studies_bad_durations_and_unknown_links(
    nodes: tuple[Node, Node],
) -> None:
    sharing, _ = nodes
    unknown = httpx.post(f"{sharing.url}/api/shares", json={"study": "1.2.3.999"}, timeout=10)
    assert unknown.status_code == 404 and "no study 1.2.3.999" in unknown.json()["message"]
    bad = httpx.post(
        f"{sharing.url}/api/shares", json={"study": STUDY, "expires": "soon"}, timeout=10
    )
    assert bad.status_code == 400 and "not a duration" in bad.json()["message"]
    offer = httpx.post(
        f"{sharing.url}/api/p2p/nosuchlink/offer", json={"sdp": "", "proof": ""}, timeout=10
    )
    assert offer.status_code == 404 and "no share link nosuchlink" in offer.json()["message"]
    gone = httpx.delete(f"{sharing.url}/api/shares/nosuchlink", timeout=10)
    assert gone.status_code == 404


def test_a_link_without_its_secret_is_refused_before_any_connection(
    nodes: tuple[Node, Node],
) -> None:
    sharing, fetching = nodes
    link = share(sharing)
    done = fetching.isthmus("fetch", link.split("#")[0], "--server", fetching.url)
    assert done.returncode != 0
    assert "has no secret" in done.stderr


def test_a_link_with_an_invalid_port_is_refused_before_any_connection(
    nodes: tuple[Node, Node],
) -> None:
    """`isthmus fetch` and the fetch endpoint read the link's port when they read the link
    (exit 1, 400), and the message names the port, never the secret."""
    _, fetching = nodes
    link = "http://127.0.0.1:notaport/share/ID#SECRET"
    done = fetching.isthmus("fetch", link, "--server", fetching.url)
    assert done.returncode == 1
    assert "port 'notaport' is not a number from 1 to 65535" in done.stderr
    assert "SECRET" not in done.stderr and "Invalid port" not in done.stderr
    reply = httpx.post(f"{fetching.url}/api/admin/p2p/fetch", json={"link": link}, timeout=10)
    assert reply.status_code == 400
    assert "port 'notaport' is not a number from 1 to 65535" in reply.json()["message"]
