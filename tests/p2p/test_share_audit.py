"""The audit trail of share links (docs/operations.md, "share-link"; PS3.15 A.5.3.5 DICOM
Instances Accessed): a link created (C), used (R: an offer answered, or refused with
outcome 4 and the reason) and revoked (D), each naming the link's study and its patient.
One in-process node shares; the fetching side runs in the test (p2p/fetch.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("aiolibdatachannel")

from tests.web.conftest import make_study, node_settings, part10

from isthmus.archive import Archive
from isthmus.p2p.fetch import fetch
from isthmus.p2p.receiver import TransferFailed
from isthmus.server import Node

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sharing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, str]]:
    with Node(node_settings(tmp_path_factory.mktemp("share-audit"))) as node:
        datasets = make_study(
            patient_name="SMITH^ALICE", patient_id="MRN-7", series_count=1, instances_per_series=2
        )
        for ds in datasets:
            assert node.archive.store(part10(ds)).ok
        yield node, str(datasets[0].StudyInstanceUID)


def url(node: Node, path: str) -> str:
    return f"http://127.0.0.1:{node.http_port}{path}"


def share_link(node: Node, study: str) -> str:
    made = httpx.post(url(node, "/api/shares"), json={"study": study}, timeout=10)
    assert made.status_code == 201, made.text
    link: str = made.json()["url"]
    return link


def pull(link: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    target = Archive(f"sqlite:///{folder / 'index.db'}", f"file://{folder / 'blobs'}")
    try:
        asyncio.run(fetch(target, link))
    finally:
        target.close()


def share_records(node: Node, link_id: str) -> list[dict[str, Any]]:
    node.audit.flush()
    entries = [json.loads(line) for line in node.audit.log.path.open(encoding="utf-8")]
    return [e for e in entries if e["event"] == "share-link" and link_id in e["xml"]]


def test_a_link_created_used_and_revoked_is_audited_with_its_study_and_patient(
    sharing: tuple[Node, str], tmp_path: Path
) -> None:
    node, study = sharing
    link = share_link(node, study)
    link_id = link.split("/share/")[1].split("#")[0]
    pull(link, tmp_path / "first")
    assert httpx.delete(url(node, f"/api/shares/{link_id}"), timeout=10).status_code == 200
    found = share_records(node, link_id)
    assert [(e["action"], e["outcome"]) for e in found] == [("C", 0), ("R", 0), ("D", 0)]
    for entry in found:
        assert entry["studies"] == [study]
        assert entry["patients"] == [{"id": "MRN-7", "name": "SMITH^ALICE"}]
        assert entry["source"] == "127.0.0.1"
    assert found[0]["user"] == "developer" and found[1]["user"] == "anonymous"


def test_a_refused_use_is_audited_as_a_failure_with_the_reason(
    sharing: tuple[Node, str], tmp_path: Path
) -> None:
    node, study = sharing
    link = share_link(node, study)
    link_id = link.split("/share/")[1].split("#")[0]
    with pytest.raises(TransferFailed, match="secret"):
        pull(link[:-4] + "AAAA", tmp_path / "wrong")
    httpx.delete(url(node, f"/api/shares/{link_id}"), timeout=10).raise_for_status()
    with pytest.raises(TransferFailed, match="revoked"):
        pull(link, tmp_path / "revoked")
    refused = [e for e in share_records(node, link_id) if e["action"] == "R"]
    assert [e["outcome"] for e in refused] == [4, 4]
    assert "does not prove knowledge" in refused[0]["xml"]
    assert "was revoked" in refused[1]["xml"]
    assert all(e["studies"] == [study] for e in refused)


def test_an_offer_for_an_unknown_link_is_audited_without_a_study(
    sharing: tuple[Node, str],
) -> None:
    node, _ = sharing
    offer = httpx.post(
        url(node, "/api/p2p/NoSuchLinkId42/offer"), json={"sdp": "", "proof": ""}, timeout=10
    )
    assert offer.status_code == 404
    (entry,) = share_records(node, "NoSuchLinkId42")
    assert (entry["action"], entry["outcome"], entry["studies"]) == ("R", 4, [])
