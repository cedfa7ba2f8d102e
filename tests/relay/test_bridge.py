"""The relay bridge (relay/bridge.py): enrolment, signed requests, exports, the directory
in NATS, pre-signed URLs scoped to a transfer, revocation - against real NATS and S3."""

from __future__ import annotations

import json
import shutil
import ssl
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from isthmus.node.tls import BCP195_CIPHERS
from isthmus.relay.bridge import BridgeServer, BridgeSettings
from isthmus.relay.bridge_client import BridgeClient, BridgeRefused
from isthmus.relay.crypto import SiteIdentity
from isthmus.relay.directory import Export
from isthmus.relay.link import Link
from isthmus.relay.objects import MissingObject, ObjectsUnavailable
from isthmus.relay.presigned import PresignedObjects
from isthmus.relay.signing import entry_signed_by, request_message
from isthmus.testing.certs import CertificateAuthority
from isthmus.testing.net import free_port
from isthmus.testing.seaweedfs import TemporarySeaweedFS

from .bridge_support import (  # noqa: F401 - fixtures
    RunningBridge,
    bridge_fixture,
    eventually,
    kv_entry,
    nats_server_fixture,
)


def test_a_site_enrols_with_its_secret_and_is_listed_with_its_fingerprint(
    bridge: RunningBridge,
) -> None:
    identity = SiteIdentity.create("A")
    client = BridgeClient(bridge.url, identity)
    reply = client.enrol(bridge.add_site("A"))
    assert reply == {
        "site": "A",
        "nats": bridge.nats.url,
        "fingerprint": identity.keys.fingerprint,
        "bridge_key": bridge.temporary.directory_key.hex(),
    }
    (entry,) = client.directory()
    assert entry.name == "A" and entry.keys == identity.keys and not entry.revoked
    raw = httpx.get(bridge.url + "/api/relay/directory").json()
    assert raw["sites"][0]["fingerprint"] == identity.keys.fingerprint
    assert entry_signed_by(raw["sites"][0], bridge.temporary.directory_key)
    assert "secret" not in json.dumps(raw)


def test_an_enrolment_secret_is_spent_by_its_first_use(bridge: RunningBridge) -> None:
    secret = bridge.add_site("A")
    first = SiteIdentity.create("A")
    BridgeClient(bridge.url, first).enrol(secret)
    with pytest.raises(BridgeRefused, match="already used") as refused:
        BridgeClient(bridge.url, SiteIdentity.create("A")).enrol(secret)
    assert refused.value.status == 403
    # the first site retrying (its reply was lost) is answered as before
    assert BridgeClient(bridge.url, first).enrol(secret)["fingerprint"] == first.keys.fingerprint
    assert [e.keys for e in BridgeClient(bridge.url, first).directory()] == [first.keys]


def test_a_wrong_secret_or_an_unknown_site_cannot_enrol(bridge: RunningBridge) -> None:
    bridge.add_site("A")
    with pytest.raises(BridgeRefused, match="wrong enrolment secret"):
        BridgeClient(bridge.url, SiteIdentity.create("A")).enrol("guess")
    with pytest.raises(BridgeRefused, match="wrong enrolment secret"):
        BridgeClient(bridge.url, SiteIdentity.create("Z")).enrol("guess")


def test_a_revoked_site_cannot_enrol_again_with_its_old_secret(bridge: RunningBridge) -> None:
    secret = bridge.add_site("A")
    identity = SiteIdentity.create("A")
    BridgeClient(bridge.url, identity).enrol(secret)
    bridge.server.bridge.state.revoke("A")
    with pytest.raises(BridgeRefused, match="revoked"):
        BridgeClient(bridge.url, identity).enrol(secret)


def test_an_enrolment_must_be_signed_by_the_key_it_registers(bridge: RunningBridge) -> None:
    secret = bridge.add_site("A")
    real, other = SiteIdentity.create("A"), SiteIdentity.create("A")
    body = json.dumps({"site": "A", "secret": secret, "keys": real.keys.to_json()}).encode()
    response = _signed_post(bridge, other, "/api/relay/enrol", body)
    assert response.status_code == 403 and "bad request signature" in response.json()["error"]


def test_a_request_signed_by_another_key_is_refused(bridge: RunningBridge) -> None:
    bridge.enrolled_client("A")
    impostor = SiteIdentity.create("A")  # claims to be A, holds other keys
    body = json.dumps({"exports": []}).encode()
    response = _signed_put(bridge, impostor, "/api/relay/exports", body)
    assert response.status_code == 403
    assert response.json() == {"error": "bad request signature"}


def test_a_request_signed_too_long_ago_is_refused(bridge: RunningBridge) -> None:
    client = bridge.enrolled_client("A")
    body = json.dumps({"exports": []}).encode()
    response = _signed_put(bridge, client.identity, "/api/relay/exports", body, age=301)
    assert response.status_code == 403 and "300 s" in response.json()["error"]


def test_a_signature_covers_the_body(bridge: RunningBridge) -> None:
    client = bridge.enrolled_client("A")
    signed = json.dumps({"exports": []}).encode()
    sent = json.dumps({"exports": [{"aet": "PACSA"}]}).encode()
    response = _signed_put(bridge, client.identity, "/api/relay/exports", signed, send=sent)
    assert response.status_code == 403


def test_an_ae_title_another_site_exports_is_refused_naming_the_owner(
    bridge: RunningBridge,
) -> None:
    a, b = bridge.enrolled_client("A"), bridge.enrolled_client("B")
    a.publish_exports([Export("PACS", "A")])
    with pytest.raises(BridgeRefused) as refused:
        b.publish_exports([Export("PACS", "B"), Export("OTHER", "B")])
    assert refused.value.status == 409 and refused.value.detail == {"owner": "A"}
    assert "'PACS' is exported by site 'A'" in refused.value.message
    entries = {e.name: e for e in a.directory()}
    assert [x.aet for x in entries["A"].exports] == ["PACS"]
    assert entries["B"].exports == ()  # all or nothing: OTHER was not taken either


def test_a_site_replaces_its_own_exports(bridge: RunningBridge) -> None:
    a = bridge.enrolled_client("A")
    a.publish_exports([Export("PACS", "A", frozenset({"find"}), frozenset({"B"}))])
    done = a.publish_exports([Export("PACS", "A"), Export("CT1", "A")])
    assert sorted(e.aet for e in done) == ["CT1", "PACS"]
    (entry,) = a.directory()
    assert {e.aet: e.services for e in entry.exports}["PACS"] == frozenset(
        {"echo", "find", "get", "move", "store"}
    )


@pytest.mark.parametrize(
    ("export", "why"),
    [
        ({"aet": "A" * 17}, "not valid"),
        ({"aet": "BAD\\AE"}, "not valid"),
        ({"aet": "PACS", "services": ["print"]}, "subset"),
        ({"aet": "PACS", "sites": ["a.b"]}, "site name"),
    ],
)
def test_exports_are_validated(bridge: RunningBridge, export: dict, why: str) -> None:
    client = bridge.enrolled_client("A")
    body = json.dumps({"exports": [export]}).encode()
    response = _signed_put(bridge, client.identity, "/api/relay/exports", body)
    assert response.status_code == 400 and why in response.json()["error"]


def test_the_directory_is_published_to_nats_kv(bridge: RunningBridge) -> None:
    a = bridge.enrolled_client("A")
    a.publish_exports([Export("PACSA", "A")])
    entry = eventually(lambda: (e := kv_entry(bridge.nats.url, "A")) and e["exports"] and e)
    assert isinstance(entry, dict)
    assert entry_signed_by(entry, bridge.temporary.directory_key)
    assert {k: v for k, v in entry.items() if k != "signature"} == {
        "site": "A",
        "keys": a.identity.keys.to_json(),
        "fingerprint": a.identity.keys.fingerprint,
        "revoked": False,
        "exports": [Export("PACSA", "A").to_json()],
    }
    assert not entry_signed_by(dict(entry, revoked=True), bridge.temporary.directory_key)


def test_a_revoked_site_is_refused_and_marked_revoked_in_the_kv(bridge: RunningBridge) -> None:
    a = bridge.enrolled_client("A")
    assert eventually(lambda: kv_entry(bridge.nats.url, "A"))
    bridge.server.bridge.state.revoke("A")  # as `isthmus bridge revoke-site` does, elsewhere
    assert eventually(lambda: (e := kv_entry(bridge.nats.url, "A")) and e["revoked"])
    with pytest.raises(BridgeRefused, match="revoked") as refused:
        a.publish_exports([])
    assert refused.value.status == 403


def test_objects_go_up_and_down_through_presigned_urls(bridge: RunningBridge) -> None:
    a, b = bridge.enrolled_client("A"), bridge.enrolled_client("B")
    transfer = "A.B.t1"
    PresignedObjects(a).put(transfer, "0", b"sealed chunk")
    fetched = PresignedObjects(b)
    assert fetched.get(transfer, "0") == b"sealed chunk"
    with pytest.raises(MissingObject):
        fetched.get(transfer, "1")
    PresignedObjects(b).delete_transfer(transfer)
    with pytest.raises(MissingObject):
        fetched.get(transfer, "0")


def test_a_url_is_for_one_method_and_one_object(bridge: RunningBridge) -> None:
    a = bridge.enrolled_client("A")
    bridge.enrolled_client("B")
    url = a.urls("A.B.t2", ["0"], "GET")["0"]
    assert "/transfers/A.B.t2/0?" in url
    assert httpx.put(url, content=b"x").status_code == 403  # signed for GET only
    other = url.replace("/transfers/A.B.t2/0?", "/transfers/A.B.t2/1?")
    assert httpx.get(other).status_code == 403


@pytest.mark.parametrize(
    ("asker", "method"), [("C", "GET"), ("C", "PUT"), ("B", "PUT"), ("B", "DELETE")]
)
def test_a_site_gets_no_url_it_has_no_business_with(
    bridge: RunningBridge, asker: str, method: str
) -> None:
    clients = {name: bridge.enrolled_client(name) for name in ("A", "B", "C")}
    with pytest.raises(BridgeRefused, match="may not") as refused:
        clients[asker].urls("A.B.t3", ["0"], method)
    assert refused.value.status == 403
    with pytest.raises(ObjectsUnavailable, match="refused"):
        PresignedObjects(clients[asker]).get(
            "A.B.t3", "0"
        ) if method == "GET" else PresignedObjects(clients[asker]).put("A.B.t3", "0", b"x")


@pytest.mark.parametrize(
    ("transfer", "name"), [("A.B.t4", "../x"), ("A.B.t4", "a/b"), ("A-B-t4", "0"), ("A.B", "0")]
)
def test_bad_transfer_or_object_names_are_refused(
    bridge: RunningBridge, transfer: str, name: str
) -> None:
    a = bridge.enrolled_client("A")
    with pytest.raises(BridgeRefused) as refused:
        a.urls(transfer, [name], "PUT")
    assert refused.value.status == 400


def test_no_url_for_a_transfer_with_a_revoked_site(bridge: RunningBridge) -> None:
    a = bridge.enrolled_client("A")
    bridge.enrolled_client("B")
    bridge.server.bridge.state.revoke("B")
    with pytest.raises(BridgeRefused, match="'B' of transfer A.B.t5 is revoked"):
        a.urls("A.B.t5", ["0"], "PUT")


def _signed_put(bridge: RunningBridge, identity: SiteIdentity, path: str, body: bytes, **kw):
    return _signed(bridge, identity, "PUT", path, body, **kw)


def _signed_post(bridge: RunningBridge, identity: SiteIdentity, path: str, body: bytes, **kw):
    return _signed(bridge, identity, "POST", path, body, **kw)


def _signed(
    bridge: RunningBridge,
    identity: SiteIdentity,
    method: str,
    path: str,
    body: bytes,
    age: int = 0,
    send: bytes | None = None,
) -> httpx.Response:
    when = str(int(time.time()) - age)
    signature = identity.sign(request_message(method, path, when, body)).hex()
    headers = {
        "X-Isthmus-Site": identity.name,
        "X-Isthmus-Time": when,
        "X-Isthmus-Signature": signature,
    }
    return httpx.request(
        method, bridge.url + path, content=body if send is None else send, headers=headers
    )


def test_an_object_store_that_does_not_answer_fails_within_the_retry_budget(
    bridge: RunningBridge, seaweedfs: TemporarySeaweedFS
) -> None:
    a = bridge.enrolled_client("A")
    bridge.enrolled_client("B")
    objects = PresignedObjects(a, retry_time=2.0)
    seaweedfs.pause()
    try:
        with pytest.raises(ObjectsUnavailable, match="failed for 2 s"):
            objects.put("A.B.t6", "0", b"chunk")
    finally:
        seaweedfs.resume()
    objects.put("A.B.t6", "0", b"chunk")  # and works once it is back
    assert objects.get("A.B.t6", "0") == b"chunk"


def test_an_unreachable_bridge_fails_within_the_retry_budget(bridge: RunningBridge) -> None:
    a = bridge.enrolled_client("A")
    away = BridgeClient(f"http://127.0.0.1:{free_port()}", a.identity)
    with pytest.raises(ObjectsUnavailable, match="not reached"):
        PresignedObjects(away, retry_time=1.0).get("A.B.t7", "0")


def test_the_directory_is_published_again_to_a_nats_that_lost_it(bridge: RunningBridge) -> None:
    bridge.enrolled_client("A")
    assert eventually(lambda: kv_entry(bridge.nats.url, "A"))
    bridge.nats.stop()
    shutil.rmtree(bridge.nats.dir / "js")  # a new, empty NATS server on the same address
    bridge.nats.start()
    entry = eventually(lambda: kv_entry(bridge.nats.url, "A"), timeout=30)
    assert entry["site"] == "A"  # type: ignore[index]


def test_an_entry_written_behind_the_bridges_back_is_overwritten(bridge: RunningBridge) -> None:
    bridge.enrolled_client("A")
    assert eventually(lambda: kv_entry(bridge.nats.url, "A"))
    link = Link(bridge.nats.url, name="replayer").connect()
    try:
        kv = link.call(link.js.key_value("relay-directory"))
        before = link.call(kv.get("A")).value
        bridge.temporary.revoke("A")
        assert eventually(lambda: (e := kv_entry(bridge.nats.url, "A")) and e["revoked"])
        link.call(kv.put("A", before))  # an old, validly signed entry replayed
        assert eventually(lambda: (e := kv_entry(bridge.nats.url, "A")) and e["revoked"])
    finally:
        link.close()


def test_two_bridge_processes_on_one_database_serve_as_one(
    bridge: RunningBridge, seaweedfs: TemporarySeaweedFS
) -> None:
    settings = replace(bridge.temporary.settings, http_port=free_port())
    second = BridgeServer(settings).start()  # the same database, NATS and bucket
    try:
        a = bridge.enrolled_client("A")
        via_second = BridgeClient(f"http://127.0.0.1:{second.port}", a.identity)
        via_second.publish_exports([Export("PACSA", "A")])
        assert [e.aet for e in a.directory()[0].exports] == ["PACSA"]
        assert second.bridge.directory_key.private_bytes_raw() == (
            bridge.server.bridge.directory_key.private_bytes_raw()
        )
        entry = eventually(lambda: (e := kv_entry(bridge.nats.url, "A")) and e["exports"] and e)
        assert entry_signed_by(entry, bridge.temporary.directory_key)  # type: ignore[arg-type]
        bridge.temporary.revoke("A")
        with pytest.raises(BridgeRefused, match="revoked"):
            via_second.urls("A.A.t8", ["0"], "PUT")
    finally:
        second.stop()


def test_the_bridge_serves_https_with_the_bcp195_profile(tmp_path: Path) -> None:
    """RFC 9325 (BCP 195) 4.2, as Isthmus's own HTTPS: for TLS 1.2 only ECDHE/DHE with
    AEAD ciphers, TLS 1.2 at least (uvicorn's own list has CBC suites).  Judged on the
    context uvicorn would serve with; the bridge is not started."""
    issued = CertificateAuthority(tmp_path / "ca").issue("bridge")
    settings = BridgeSettings(
        index_url=f"sqlite:///{tmp_path / 'bridge.db'}",
        nats_url="nats://127.0.0.1:1",
        blob_url="s3://bucket/relay",
        public_nats="nats://127.0.0.1:1",
        tls_cert=str(issued.cert),
        tls_key=str(issued.key),
    )
    config = BridgeServer(settings).server.config
    config.load()
    assert config.ssl is not None
    assert config.ssl.minimum_version >= ssl.TLSVersion.TLSv1_2
    tls12 = {c["name"] for c in config.ssl.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 and tls12 <= set(BCP195_CIPHERS.split(":")), tls12
