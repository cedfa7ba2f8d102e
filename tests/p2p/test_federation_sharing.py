"""p2p sharing over a real federation (issue 12; docs/p2p.md "Discovery", "Federated
links", "Relay fallback"): NATS, SeaweedFS, the bridge and three `isthmus serve` sites.

A study shared to the federation by site A appears in B's list (sealed end to end:
neither its patient name nor the link's secret is in the KV buckets or on NATS); B
fetches a federated link whose HTTP address it cannot reach, signalling through the
bridge, over WebRTC; C (relay-only ICE, no TURN server: no WebRTC path; its archive not
exported) fetches through the relay fallback; a revoked share stops the fallback."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.relay.federation_support import running, study_uid, wait_until
from tests.relay.router_support import spying

from isthmus.archive import Archive
from isthmus.dicom.part10 import dataset_offset
from isthmus.testing.federation import Federation, Site
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port
from isthmus.testing.seaweedfs import TemporarySeaweedFS

pytest.importorskip("aiolibdatachannel")
pytestmark = [pytest.mark.dcmtk, pytest.mark.timeout(600)]

STUDY = StudySpec(
    patient_name="FEDERATED^FELICITY",
    patient_id="FED0001",
    description="CT FEDERATED SHARE",
    series_count=2,
    instances_per_series=6,
    rows=256,
    columns=256,
)
BIG = StudySpec(
    patient_name="REVOKED^ROBERTA",
    patient_id="FED0002",
    series_count=2,
    instances_per_series=150,
    rows=256,
    columns=256,
)


def api(site: Site, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    reply = httpx.request(method, f"http://127.0.0.1:{site.http_port}{path}", json=body, timeout=30)
    assert reply.status_code < 400, reply.text
    return reply.json()


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory, seaweedfs: TemporarySeaweedFS
) -> Iterator[Federation]:
    folder = tmp_path_factory.mktemp("p2p-federation")
    federation = Federation(folder, seaweedfs, names=("A", "B", "C"))
    federation.sites["C"].config = "p2p_relay_only = true\n"
    federation.sites["C"].export_archive = False  # the fallback's transfer is invited
    with running(federation) as started:
        a = started.sites["A"]
        for name, spec in (("study", STUDY), ("big", BIG)):
            files = write_study(spec, folder / name)
            stored = a.dcmtk("storescu", a.aet, files=files)
            assert stored.returncode == 0, stored.stdout + stored.stderr
            setattr(started, name, study_uid(files))
        yield started


def archive_of(site: Site) -> Archive:
    data = site.folder / "data"
    return Archive(f"sqlite:///{data / 'index.sqlite'}", f"file://{data / 'blobs'}")


def datasets(site: Site, study: str) -> dict[str, str]:
    """SOP Instance UID → SHA-256 of the data set (the file meta says who wrote it)."""
    archive = archive_of(site)
    try:
        out = {}
        for row in archive.instances(study):
            data = archive.read_instance(row)
            out[row.sop_instance_uid] = hashlib.sha256(data[dataset_offset(data) :]).hexdigest()
        return out
    finally:
        archive.close()


def share(site: Site, study: str) -> dict[str, Any]:
    doc: dict[str, Any] = api(site, "POST", "/api/shares", {"study": study, "federation": True})
    return doc


def listed(site: Site, link_id: str) -> dict[str, Any] | None:
    doc = api(site, "GET", "/api/p2p/federation")
    return next((s for s in doc["shares"] if s["link_id"] == link_id), None)


def fetch(site: Site, link: str, timeout: float = 240) -> dict[str, Any]:
    """Start a fetch on `site` and follow it to its end."""
    started = api(site, "POST", "/api/admin/p2p/fetch", {"link": link})
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = api(site, "GET", f"/api/admin/p2p/fetch/{started['id']}")
        if state["status"] in ("complete", "failed"):
            return state
        assert time.monotonic() < deadline, f"fetch still {state} after {timeout:g} s"
        time.sleep(0.2)


def unreachable(link: str) -> str:
    """The same link with the sharing node's HTTP address replaced by a closed port."""
    _scheme, rest = link.split("://", 1)
    return f"http://127.0.0.1:{free_port()}/" + rest.split("/", 1)[1]


def test_a_study_shared_to_the_federation_is_listed_at_the_peers_sealed(
    federation: Federation,
) -> None:
    a, b = federation.sites["A"], federation.sites["B"]
    with spying(federation.nats) as spy:
        made = share(a, federation.study)  # type: ignore[attr-defined]
        assert "?site=A#" in made["url"]
        wait_until(lambda: listed(b, made["link_id"]) is not None, 60, "the share listed at B")
        entry = listed(b, made["link_id"])
    assert entry is not None
    assert entry["patient_name"] == STUDY.patient_name
    assert entry["description"] == STUDY.description
    assert entry["instances"] == 12 and entry["site"] == "A" and entry["link"] == made["url"]
    server = f"http://127.0.0.1:{b.http_port}"
    listing = federation.isthmus("share", "--list-federation", "--server", server).stdout
    assert STUDY.patient_name in listing and made["url"] in listing
    wait_until(
        lambda: {"A", "B", "C"} <= set(api(b, "GET", "/api/p2p/federation")["online"]),
        60,
        "presence",
    )
    secret = made["url"].rsplit("#", 1)[1].encode()
    found = []
    for stream in ("KV_p2p-shares", "KV_p2p-presence"):
        for subject, data in federation.stream(stream):
            for name, value in (("patient name", STUDY.patient_name.encode()), ("secret", secret)):
                if value in data:
                    found.append(f"{name} in {stream} {subject}")
    for subject, data in spy.seen:
        if secret in data or STUDY.patient_name.encode() in data:
            found.append(f"secret or name on NATS {subject}")
    assert len(federation.stream("KV_p2p-shares")) >= 2  # the listings were read raw
    assert not found, found


def test_a_federated_link_unreachable_over_http_is_fetched_through_bridge_signalling(
    federation: Federation,
) -> None:
    a, b = federation.sites["A"], federation.sites["B"]
    made = share(a, federation.study)  # type: ignore[attr-defined]
    state = fetch(b, unreachable(made["url"]))
    assert state["status"] == "complete", state
    assert state["signalling"] == "bridge" and state["path"] == "webrtc", state
    study = federation.study  # type: ignore[attr-defined]
    assert datasets(b, study) == datasets(a, study)


def test_bridge_signalling_refuses_a_wrong_secret_and_a_revoked_link(
    federation: Federation,
) -> None:
    a, b = federation.sites["A"], federation.sites["B"]
    made = share(a, federation.study)  # type: ignore[attr-defined]
    wrong = fetch(b, unreachable(made["url"].rsplit("#", 1)[0] + "#" + "x" * 43))
    assert wrong["status"] == "failed" and "knowledge of the link's secret" in wrong["reason"]
    assert "(403)" in wrong["reason"], wrong
    api(a, "DELETE", f"/api/shares/{made['link_id']}")
    revoked = fetch(b, unreachable(made["url"]))
    assert revoked["status"] == "failed" and "revoked" in revoked["reason"], revoked
    wait_until(lambda: listed(b, made["link_id"]) is None, 30, "the listing withdrawn")
    # Site A's audit trail: both refused uses, by site B, outcome 4 with the reason.
    wait_until(lambda: len(refused_uses(a, made["link_id"])) == 2, 10, "the uses audited")
    wrong_use, revoked_use = refused_uses(a, made["link_id"])
    assert wrong_use["user"] == revoked_use["user"] == "B"
    assert "knowledge of the link's secret" in wrong_use["xml"]
    assert "was revoked" in revoked_use["xml"]


def refused_uses(site: Site, link_id: str) -> list[dict[str, Any]]:
    """The share-link uses refused in `site`'s audit log (outcome 4)."""
    path = site.folder / "data" / "audit.log"
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [
        e
        for e in entries
        if e["event"] == "share-link" and link_id in e["xml"] and e["outcome"] == 4
    ]


def test_without_a_webrtc_path_the_fetch_falls_back_to_the_relay(
    federation: Federation,
) -> None:
    a, c = federation.sites["A"], federation.sites["C"]
    made = share(a, federation.study)  # type: ignore[attr-defined]
    with spying(federation.nats) as spy:
        state = fetch(c, made["url"])
    assert state["status"] == "complete", state
    assert state["path"] == "relay" and "no WebRTC path" in state["why"], state
    study = federation.study  # type: ignore[attr-defined]
    assert datasets(c, study) == datasets(a, study)
    secret = made["url"].rsplit("#", 1)[1].encode()
    assert any(".p2p" in subject for subject, _ in spy.seen)  # the fallback's request
    assert not [s for s, data in spy.seen if secret in data or STUDY.patient_name.encode() in data]


def test_revoking_the_share_stops_the_relay_fallback(federation: Federation) -> None:
    a, c = federation.sites["A"], federation.sites["C"]
    big = federation.big  # type: ignore[attr-defined]
    made = share(a, big)
    started = api(c, "POST", "/api/admin/p2p/fetch", {"link": made["url"]})
    status = f"/api/admin/p2p/fetch/{started['id']}"
    wait_until(lambda: api(c, "GET", status).get("path") == "relay", 120, "the fallback")
    api(a, "DELETE", f"/api/shares/{made['link_id']}")
    deadline = time.monotonic() + 240
    while (state := api(c, "GET", status))["status"] not in ("complete", "failed"):
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert state["status"] == "failed" and "revoked" in state["reason"], state
    assert len(datasets(c, big)) < 300
    # And a new fallback is refused at once (the link is revoked).
    again = fetch(c, made["url"])
    assert again["status"] == "failed" and "revoked" in again["reason"], again
