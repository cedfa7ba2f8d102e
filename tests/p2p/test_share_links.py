"""Share links between two real `isthmus serve` nodes on 127.0.0.1: `isthmus share`,
`isthmus fetch` over WebRTC, and links refused (expired, revoked, wrong secret)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("aiolibdatachannel")

from tests.p2p.node_support import Node

from isthmus.archive import Archive
from isthmus.testing.generate import StudySpec

pytestmark = pytest.mark.timeout(300)
STUDY = "1.2.826.0.1.3680043.10.1386.9.777.1"


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
    sharing.start()
    fetching.start()
    try:
        yield sharing, fetching
    finally:
        fetching.stop()
        sharing.stop()


def share(node: Node, *extra: str) -> str:
    done = node.isthmus("share", STUDY, "--server", node.url, *extra)
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
