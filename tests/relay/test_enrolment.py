"""A site's side of enrolment (relay/enrolment.py): the enrolment file, first and later
starts, and the directory followed from NATS KV - against a real bridge, NATS and S3."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest

from isthmus.config import ConfigError
from isthmus.relay.bridge_client import BridgeError, BridgeRefused
from isthmus.relay.crypto import SiteIdentity
from isthmus.relay.directory import Directory, Export, SiteEntry
from isthmus.relay.enrolment import (
    DirectoryWatcher,
    EnrolmentFile,
    enrol_site,
    enrolled,
    identity_path,
)
from isthmus.relay.link import Link

from .bridge_support import (  # noqa: F401 - fixtures
    RunningBridge,
    bridge_fixture,
    eventually,
    nats_server_fixture,
)


def enrolment_file(bridge: RunningBridge, name: str, folder: Path) -> Path:
    return bridge.temporary.enrolment_file(name, folder)


def test_the_first_start_makes_keys_at_the_site_and_enrols(
    bridge: RunningBridge, tmp_path: Path
) -> None:
    data = tmp_path / "site-a"
    identity, client = enrol_site(data, enrolment_file(bridge, "A", tmp_path))
    keys_file = identity_path(data)
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert SiteIdentity.load(keys_file).keys == identity.keys
    (entry,) = client.directory()
    assert entry.name == "A" and entry.keys.fingerprint == identity.keys.fingerprint
    assert enrolled(data) == {
        "bridge": bridge.url,
        "nats": bridge.nats.url,
        "site": "A",
        "fingerprint": identity.keys.fingerprint,
        "bridge_key": bridge.temporary.directory_key.hex(),
    }


def test_a_later_start_loads_the_keys_without_the_spent_file(
    bridge: RunningBridge, tmp_path: Path
) -> None:
    data, file = tmp_path / "site-a", enrolment_file(bridge, "A", tmp_path)
    first, _ = enrol_site(data, file)
    file.unlink()
    again, client = enrol_site(data, file)
    assert again.keys == first.keys
    assert client.publish_exports([Export("PACSA", "A")])[0].aet == "PACSA"  # still enrolled


def test_a_start_interrupted_before_the_record_enrols_again_with_the_same_keys(
    bridge: RunningBridge, tmp_path: Path
) -> None:
    data, file = tmp_path / "site-a", enrolment_file(bridge, "A", tmp_path)
    first, _ = enrol_site(data, file)
    (data / "relay" / "enrolled.json").unlink()  # as if it crashed after the bridge answered
    again, _ = enrol_site(data, file)
    assert again.keys == first.keys


def test_another_site_with_the_same_secret_is_refused(
    bridge: RunningBridge, tmp_path: Path
) -> None:
    file = enrolment_file(bridge, "A", tmp_path)
    enrol_site(tmp_path / "site-a", file)
    with pytest.raises(BridgeRefused, match="already used"):
        enrol_site(tmp_path / "thief", file)


def test_keys_of_one_site_are_not_enrolled_as_another(
    bridge: RunningBridge, tmp_path: Path
) -> None:
    data = tmp_path / "site"
    SiteIdentity.create("A").save(identity_path(data))
    with pytest.raises(ConfigError, match="keys of site 'A'"):
        enrol_site(data, enrolment_file(bridge, "B", tmp_path))


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "No such file"),
        ("{not json", "not JSON"),
        ('{"bridge": "http://x", "site": "A"}', "needs the strings"),
        ('{"bridge": "b", "nats": "n", "site": "a.b", "secret": "s"}', "site name"),
    ],
)
def test_a_bad_enrolment_file_is_refused_clearly(
    tmp_path: Path, content: str | None, why: str
) -> None:
    path = tmp_path / "enrol.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=why):
        EnrolmentFile.load(path)


def test_the_directory_watcher_follows_enrolments_exports_and_revocations(
    bridge: RunningBridge,
) -> None:
    a = bridge.enrolled_client("A")
    link = Link(bridge.nats.url, name="site-b").connect()
    directory = Directory("B")
    changed: list[str] = []
    revoked = threading.Event()
    directory.on_change(changed.append)
    directory.on_change(
        lambda name: (e := directory.site(name)) and e.revoked and revoked.set()  # type: ignore[func-returns-value]
    )
    watcher = DirectoryWatcher(link, directory, bridge.temporary.directory_key).start()
    try:
        assert directory.site("A") is not None  # loaded before start() returned
        a.publish_exports([Export("PACSA", "A")])
        assert eventually(lambda: directory.export("PACSA"))
        bridge.enrolled_client("C")
        assert eventually(lambda: directory.site("C"))
        bridge.server.bridge.state.revoke("A")
        assert revoked.wait(10)
        assert directory.keys_of("A") is None and directory.export("PACSA") is None
        assert "C" in changed
    finally:
        watcher.stop()
        link.close()


def test_a_revocation_reaches_the_watcher_after_nats_restarted(bridge: RunningBridge) -> None:
    bridge.enrolled_client("A")
    link = Link(bridge.nats.url, name="site-b").connect()
    directory = Directory("B")
    watcher = DirectoryWatcher(link, directory).start()
    try:
        assert directory.site("A") is not None
        bridge.nats.stop()
        bridge.nats.start()
        bridge.server.bridge.state.revoke("A")  # the bridge's poll publishes it
        assert eventually(lambda: (e := directory.site("A")) and e.revoked, timeout=30)
    finally:
        watcher.stop()
        link.close()


def test_an_enrolment_file_names_the_bridge_key_it_must_find(
    bridge: RunningBridge, tmp_path: Path
) -> None:
    file = enrolment_file(bridge, "A", tmp_path)
    doc = json.loads(file.read_text())
    file.write_text(json.dumps(dict(doc, bridge_key="00" * 32)))  # another bridge's
    with pytest.raises(BridgeError, match="directory key"):
        enrol_site(tmp_path / "site-a", file)


def test_the_watcher_ignores_entries_the_bridge_did_not_sign(bridge: RunningBridge) -> None:
    bridge.enrolled_client("A")
    rogue = SiteEntry("EVIL", SiteIdentity.create("EVIL").keys, exports=(Export("PACSB", "EVIL"),))
    link = Link(bridge.nats.url, name="site-b").connect()
    directory = Directory("B")
    watcher = DirectoryWatcher(link, directory, bridge.temporary.directory_key).start()
    try:
        kv = link.call(link.js.key_value("relay-directory"))
        link.call(kv.put("EVIL", json.dumps(rogue.to_json()).encode()))  # any NATS client can
        bridge.enrolled_client("C")  # a change the bridge makes after it
        assert eventually(lambda: directory.site("C"))
        assert directory.site("EVIL") is None and directory.export("PACSB") is None
    finally:
        watcher.stop()
        link.close()


def test_a_revocation_is_not_undone_by_replaying_an_older_entry(bridge: RunningBridge) -> None:
    bridge.enrolled_client("A")
    link = Link(bridge.nats.url, name="site-b").connect()
    directory = Directory("B")
    watcher = DirectoryWatcher(link, directory, bridge.temporary.directory_key).start()
    try:
        kv = link.call(link.js.key_value("relay-directory"))
        before = link.call(kv.get("A")).value  # signed by the bridge, not revoked
        bridge.temporary.revoke("A")
        assert eventually(lambda: (e := directory.site("A")) and e.revoked)
        link.call(kv.put("A", before))  # replayed by whoever can write to the bucket
        bridge.enrolled_client("C")
        assert eventually(lambda: directory.site("C"))
        entry = directory.site("A")
        assert entry is not None and entry.revoked
    finally:
        watcher.stop()
        link.close()
