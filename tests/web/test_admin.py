"""The admin API (/api/admin/...): admin permission only; peers and their last contact,
associations, routes, jobs with cancel and retry, storage usage, settings with secrets
redacted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from pynetdicom import AE

from isthmus.config import Peer
from isthmus.server import Node
from isthmus.testing.generate import StudySpec, study
from isthmus.web.admin import settings_in_effect
from isthmus.web.auth import hash_token
from isthmus.web.context import WebContext

from .conftest import node_settings

ADMIN, READER = "admin-token-0123456789abcdef", "reader-token-0123456789abcdef"
VERIFICATION = "1.2.840.10008.1.1"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    settings = node_settings(
        tmp_path_factory.mktemp("admin"),
        peers=(Peer("PACS2", "127.0.0.1", 1), Peer("CT01", "127.0.0.1", 2)),
        index_url="postgresql://isthmus:s3cret@db.example:5432/pacs",
        tokens={
            "root": {"hash": hash_token(ADMIN), "permissions": ["admin"]},
            "viewer": {"hash": hash_token(READER), "permissions": ["read"]},
        },
    )
    # The index URL above is for the settings page only; the node runs on SQLite.
    running = replace(settings, index_url=f"sqlite:///{settings.data / 'index.sqlite'}")
    with Node(running) as node:
        node.settings_shown = settings  # type: ignore[attr-defined]
        yield node


def eventually(check: Any, timeout: float = 10.0) -> Any:
    """`check()` once it is true: the node announces an association just after the
    A-ASSOCIATE-AC (and its end just after the A-RELEASE-RP) it sends."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def client(node: Node, token: str | None = ADMIN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=f"http://127.0.0.1:{node.http_port}/api/admin", headers=headers, timeout=30
    )


@pytest.mark.parametrize("path", ["peers", "routes", "associations", "jobs", "storage", "settings"])
def test_every_admin_endpoint_needs_the_admin_permission(secured: Node, path: str) -> None:
    with client(secured, None) as anonymous, client(secured, READER) as reader:
        assert anonymous.get(path).status_code == 401
        assert reader.get(path).status_code == 403
    with client(secured) as admin:
        assert admin.get(path).status_code == 200


def test_peers_show_their_last_contact_after_an_association(secured: Node) -> None:
    with client(secured) as admin:
        before = {p["aet"]: p for p in admin.get("peers").json()["peers"]}
        assert before["CT01"]["last_contact"] is None
        ae = AE(ae_title="CT01")
        ae.add_requested_context(VERIFICATION)
        assoc = ae.associate("127.0.0.1", secured.dicom_port, ae_title="ISTHMUS")
        assert assoc.is_established
        during = eventually(lambda: admin.get("associations").json()["associations"])
        assert [(a["calling_aet"], a["direction"]) for a in during] == [("CT01", "inbound")]
        assoc.release()
        assert eventually(lambda: not admin.get("associations").json()["associations"])
        after = {p["aet"]: p for p in admin.get("peers").json()["peers"]}
    assert after["CT01"]["last_contact"]["direction"] == "inbound"
    assert after["PACS2"]["last_contact"] is None
    assert after["PACS2"]["host"] == "127.0.0.1" and after["PACS2"]["port"] == 1


def test_jobs_are_listed_with_progress_and_can_be_cancelled_and_retried(secured: Node) -> None:
    jobs = secured.archive.jobs
    later = jobs.enqueue(
        "forward", ["1.2.3"], label="r", params={"destination": "PACS2"}, delay=3600
    )
    with client(secured) as admin:
        listed = {j["id"]: j for j in admin.get("jobs").json()["jobs"]}
        assert listed[later]["status"] == "queued"
        assert listed[later]["counts"] == {"total": 1, "done": 0, "failed": 0, "pending": 1}
        cancelled = admin.post(f"jobs/{later}/cancel").json()
        assert cancelled["status"] == "cancelled"
        retried = admin.post(f"jobs/{later}/retry").json()
        assert retried["status"] in ("queued", "running", "failed")
        detail = admin.get(f"jobs/{later}").json()
        assert [i["item"] for i in detail["items"]] == ["1.2.3"]
        assert admin.get("jobs", params={"status": "completed"}).json()["jobs"] == []
        assert admin.post("jobs/99999/cancel").status_code == 404
        assert admin.post(f"jobs/{later}/explode").status_code == 404


def test_storage_counts_what_the_archive_holds(secured: Node) -> None:
    for ds in study(StudySpec(patient_id="PID-ADMIN", instances_per_series=2)):
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        assert secured.archive.store(buffer.getvalue()).ok
    with client(secured) as admin:
        usage = admin.get("storage").json()
    assert usage["counts"]["image"] >= 2 and usage["counts"]["study"] >= 1
    assert usage["bytes"] > 0
    assert usage["filesystem"]["free"] > 0


def test_settings_in_effect_hide_secrets(secured: Node, tmp_path: Path) -> None:
    with client(secured) as admin:
        live = admin.get("settings").json()
    assert live["aet"] == "ISTHMUS" and live["peers"] == ["PACS2@127.0.0.1:1", "CT01@127.0.0.1:2"]
    assert live["tokens"]["root"] == {"permissions": ["admin"], "hash": "(redacted)"}
    assert hash_token(ADMIN) not in str(live)
    shown: Any = settings_in_effect(WebContext(secured.settings_shown, secured.archive))  # type: ignore[attr-defined]
    assert shown["index_url"] == "postgresql://isthmus:(redacted)@db.example:5432/pacs"
    assert "s3cret" not in str(shown)


def test_a_post_from_another_web_site_is_refused(secured: Node) -> None:
    pk = secured.archive.jobs.enqueue(
        "forward", ["9.9"], params={"destination": "PACS2"}, delay=3600
    )
    with client(secured) as admin:
        own = f"http://127.0.0.1:{secured.http_port}"
        refused = admin.post(f"jobs/{pk}/cancel", headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403
        assert secured.archive.jobs.get(pk).status == "queued"  # type: ignore[union-attr]
        assert admin.post(f"jobs/{pk}/cancel", headers={"Origin": own}).status_code == 200


def test_routes_list_the_ae_titles_other_doors_registered(secured: Node) -> None:
    assert secured.router is not None
    secured.router.add_route("BROWSER1", lambda sock, address, rq: sock.close())
    try:
        with client(secured) as admin:
            shown = admin.get("routes").json()
    finally:
        secured.router.remove_route("BROWSER1")
    assert shown == {"aet": "ISTHMUS", "routes": [{"aet": "BROWSER1", "kind": "browser"}]}
