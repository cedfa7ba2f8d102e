"""Access control by AE title: the default policy, "known" peers only, C-MOVE destinations."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dimse.support import address, peer, run_ok
from isthmus.config import Peer, Settings
from isthmus.dimse import scu
from isthmus.node.access import AccessControl
from isthmus.server import Node
from isthmus.testing import catalogue, dcmtk
from isthmus.testing.catalogue import study_uid
from isthmus.testing.generate import StudySpec, write_study

NOT_AUTHORIZED = 0x0124
EVERYTHING_KNOWN = {s: "known" for s in ("echo", "store", "find", "move", "get")}


# ----------------------------------------------------------------- policy (no network)
def test_default_policy_on_loopback_lets_every_caller_do_everything() -> None:
    assert Settings(host="127.0.0.1").access_policy() == {
        "echo": "any",
        "store": "any",
        "find": "any",
        "move": "any",
        "get": "any",
        "commit": "any",
        "mpps": "any",
        "worklist": "any",
        "ups": "any",
    }


def test_default_policy_beyond_loopback_is_known_peers_except_echo() -> None:
    assert Settings(host="0.0.0.0").access_policy() == {
        "echo": "any",
        "store": "known",
        "find": "known",
        "move": "known",
        "get": "known",
        "commit": "known",
        "mpps": "known",
        "worklist": "known",
        "ups": "known",
    }


def test_policy_is_configurable_per_service() -> None:
    policy = Settings(host="10.1.2.3", access={"store": "any", "echo": "known"}).access_policy()
    assert (policy["store"], policy["echo"], policy["find"]) == ("any", "known", "known")


def test_known_rule_admits_listed_peers_only() -> None:
    access = AccessControl(
        Settings(peers=(Peer("CT1", "127.0.0.1", 104),), access={"store": "known"})
    )
    assert access.allowed("store", "CT1", "127.0.0.1")
    assert access.allowed("store", "CT1 ", "127.0.0.1")  # AE titles are space-padded
    assert not access.allowed("store", "CT2", "127.0.0.1")
    assert not access.allowed("store", "ct1", "127.0.0.1")  # AE titles are case-sensitive
    assert access.allowed("find", "ANYONE", "127.0.0.1")  # loopback default: any


def test_peer_host_check_refuses_a_known_title_from_elsewhere() -> None:
    settings = Settings(
        peers=(Peer("CT1", "192.0.2.10", 104),), access={"store": "known"}, check_peer_host=True
    )
    access = AccessControl(settings)
    assert access.allowed("store", "CT1", "192.0.2.10")
    assert not access.allowed("store", "CT1", "192.0.2.11")
    loopback = AccessControl(
        Settings(
            peers=(Peer("WS", "localhost", 104),), access={"store": "known"}, check_peer_host=True
        )
    )
    assert loopback.allowed("store", "WS", "127.0.0.1")


def test_move_destinations_are_known_peers_or_registered_ones() -> None:
    access = AccessControl(Settings(peers=(Peer("PACS2", "192.0.2.20", 11112),)))
    assert access.destination("PACS2") == Peer("PACS2", "192.0.2.20", 11112)
    assert access.destination("STRANGER") is None
    browser = Peer("BROWSER", "127.0.0.1", 40000)
    access.register_destination("BROWSER", lambda: browser)
    assert access.destination("BROWSER") == browser
    access.unregister_destination("BROWSER")
    assert access.destination("BROWSER") is None


# ------------------------------------------------------------------- over the network
@pytest.fixture
def guarded(start_node: Callable[..., Node], tmp_path: Path) -> Node:
    """A node whose every service is for known peers only: KNOWN is one, with the catalogue."""
    node = start_node(access=EVERYTHING_KNOWN, peers=(Peer("KNOWN", "127.0.0.1", 1),))
    catalogue.load(node.archive, tmp_path / "catalogue")
    return node


def _study(uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = uid
    return ds


def test_unknown_caller_is_refused_every_service_with_0124(guarded: Node, tmp_path: Path) -> None:
    node_peer = peer(guarded)
    assert scu.echo(node_peer, "STRANGER") == NOT_AUTHORIZED
    path = write_study(StudySpec(instances_per_series=1), tmp_path / "in")[0]
    report = scu.send(node_peer, [path], "STRANGER")
    assert report.sent == 0 and report.failed[0][1] == "status 0x0124"
    with pytest.raises(scu.SCUError, match="0x0124"):
        scu.find(node_peer, _study(""), calling_aet="STRANGER")
    got = scu.get(
        node_peer,
        _study(study_uid("B")),
        lambda event: 0,
        scu.common_storage_classes(),
        calling_aet="STRANGER",
    )
    assert (got.status, got.completed) == (NOT_AUTHORIZED, 0)
    moved = scu.move(node_peer, _study(study_uid("B")), "KNOWN", calling_aet="STRANGER")
    assert (moved.status, moved.completed) == (NOT_AUTHORIZED, 0)
    assert guarded.archive.counts()["image"] == catalogue.instance_count()


def test_unknown_caller_is_refused_by_dcmtk_storescu(
    dcmtk_tools: None, guarded: Node, tmp_path: Path
) -> None:
    path = write_study(StudySpec(instances_per_series=1), tmp_path / "in")[0]
    done = dcmtk.run("storescu", "-v", "-aet", "STRANGER", *address(guarded), str(path))
    assert re.search(r"Store Response \(.*0x0?124\)", done.stdout + done.stderr)
    assert guarded.archive.counts()["image"] == catalogue.instance_count()


def test_known_caller_may_use_every_service(
    dcmtk_tools: None, guarded: Node, tmp_path: Path
) -> None:
    node_peer = peer(guarded)
    assert scu.echo(node_peer, "KNOWN") == 0
    path = write_study(StudySpec(instances_per_series=1), tmp_path / "in")[0]
    assert scu.send(node_peer, [path], "KNOWN").sent == 1
    assert len(scu.find(node_peer, _study(""), calling_aet="KNOWN")) == len(catalogue.ENTRIES) + 1
    got = scu.get(
        node_peer,
        _study(study_uid("B")),
        lambda event: 0,
        scu.common_storage_classes(),
        calling_aet="KNOWN",
    )
    assert (got.status, got.completed) == (0, 1)
    run_ok("echoscu", "-aet", "KNOWN", *address(guarded))


def test_c_move_destination_must_be_known_even_when_anyone_may_move(
    start_node: Callable[..., Node], tmp_path: Path
) -> None:
    node = start_node()  # loopback: move is "any"
    catalogue.load(node.archive, tmp_path / "catalogue")
    report = scu.move(peer(node), _study(study_uid("B")), "STRANGER", calling_aet="ANYONE")
    assert (report.status, report.completed) == (0xA801, 0)
