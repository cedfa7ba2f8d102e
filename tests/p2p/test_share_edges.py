"""Share links at their edges, against one in-process sharing node: the study deleted
after the link was made, a malformed link given to the fetching node."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("aiolibdatachannel")

from tests.web.conftest import make_study, node_settings, part10

from isthmus.archive import Archive
from isthmus.p2p.fetch import fetch
from isthmus.p2p.receiver import TransferFailed
from isthmus.server import Node

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sharing(tmp_path: Path) -> Iterator[Node]:
    with Node(node_settings(tmp_path / "sharing")) as node:
        yield node


def test_a_link_whose_study_was_deleted_is_refused_before_any_connection(
    sharing: Node, tmp_path: Path
) -> None:
    """410 at the offer, once the proof is checked (a caller without the secret learns
    nothing of the study), instead of a data channel opened to say there is nothing."""
    datasets = make_study(series_count=1, instances_per_series=2)
    for ds in datasets:
        assert sharing.archive.store(part10(ds)).ok
    study = str(datasets[0].StudyInstanceUID)
    base = f"http://127.0.0.1:{sharing.http_port}"
    link = httpx.post(f"{base}/api/shares", json={"study": study}, timeout=10).json()["url"]
    assert sharing.archive.delete(study) == 2
    target = Archive(f"sqlite:///{tmp_path / 'index.db'}", f"file://{tmp_path / 'blobs'}")
    try:
        with pytest.raises(TransferFailed, match=r"no longer on this node \(HTTP 410\)"):
            asyncio.run(fetch(target, link))
    finally:
        target.close()
    wrong = httpx.post(
        f"{base}/api/p2p/{link.split('/share/')[1].split('#')[0]}/offer",
        json={"sdp": "v=0", "proof": "0" * 64},
        timeout=10,
    )
    assert wrong.status_code in (400, 403) and study not in wrong.text
