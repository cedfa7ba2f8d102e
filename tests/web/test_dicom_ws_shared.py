"""Browser AE titles shared by the processes of one archive (docs/scaling.md): the
gateway records each registration in the index, and answers move destinations that
another process registered from it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus.archive import Archive
from isthmus.config import Settings
from isthmus.server import Node
from isthmus.testing.net import free_port

from .dicom_ws_support import ws


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    settings = Settings(
        data=tmp_path,
        dicom_port=free_port(),
        http_port=free_port(),
        index_url=f"sqlite:///{tmp_path / 'index.sqlite'}",
        check_on_start=False,
        dicom_public_host="192.0.2.7",  # how the other processes reach this one
    )
    with Node(settings) as running:
        yield running


def wait_for(condition: object, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_a_registered_browser_ae_title_is_recorded_for_the_other_processes(node: Node) -> None:
    url = f"ws://127.0.0.1:{node.http_port}/dicom-ws/listen?aet=SHAREDAE"
    with ws(url) as listener:
        assert json.loads(listener.recv(timeout=30))["type"] == "registered"
        assert wait_for(lambda: node.archive.route("SHAREDAE") is not None)
        assert node.archive.route("SHAREDAE") == ("192.0.2.7", node.dicom_port, True)
        peer = node.access.destination("SHAREDAE")  # here: back through our own port
        assert peer is not None and peer.port == node.dicom_port
    assert wait_for(lambda: node.archive.route("SHAREDAE") is None)
    assert node.access.destination("SHAREDAE") is None


def test_a_browser_ae_title_another_process_registered_is_a_move_destination(
    node: Node,
) -> None:
    other = Archive(node.settings.resolved_index_url, node.settings.resolved_blob_url)
    try:
        assert node.access.destination("ELSEWHERE") is None
        other.register_route("ELSEWHERE", "192.0.2.8", 11112)
        peer = node.access.destination("ELSEWHERE")
        assert (peer.aet, peer.host, peer.port) == ("ELSEWHERE", "192.0.2.8", 11112)
    finally:
        other.close()  # its registrations end with it
    assert node.access.destination("ELSEWHERE") is None
