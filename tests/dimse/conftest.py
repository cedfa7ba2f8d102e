"""Fixtures of the DIMSE tests: nodes on both backends, DIMSE only (no HTTP)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from isthmus.config import Settings
from isthmus.server import Node
from isthmus.testing import catalogue, dcmtk
from isthmus.testing.net import free_port


@pytest.fixture(scope="session")
def dcmtk_tools() -> None:
    """DCMTK's own tools (not pynetdicom's apps of the same name) must be installed."""
    missing = dcmtk.missing_tools()
    if missing:
        pytest.fail(f"DCMTK tools missing: {missing} (run scripts/system-deps.sh)")


@pytest.fixture
def start_node(settings: Settings) -> Iterator[Callable[..., Node]]:
    """Start nodes (DIMSE only) with changed settings; all are stopped at teardown."""
    nodes: list[Node] = []

    def start(**changes: object) -> Node:
        node = Node(replace(settings, **changes))  # type: ignore[arg-type]
        nodes.append(node)
        node.start(http=False)
        return node

    try:
        yield start
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
def dimse_node(start_node: Callable[..., Node]) -> Node:
    """A running node with default settings (loopback: every caller may do everything)."""
    return start_node()


def _module_node(index_url: str, blob_url: str, folder: Path) -> Node:
    node = Node(
        Settings(
            data=folder,
            dicom_port=free_port(),
            http_port=free_port(),
            index_url=index_url,
            blob_url=blob_url,
        )
    )
    node.start(http=False)
    return node


@pytest.fixture(scope="module")
def module_node(
    module_index_url: str, module_blob_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    """One node per backend shared by a module's tests (each stores instances of its own)."""
    node = _module_node(module_index_url, module_blob_url, tmp_path_factory.mktemp("node"))
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def catalogue_node(
    module_index_url: str, module_blob_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    """A node holding `isthmus.testing.catalogue`, shared by a module (read only)."""
    folder = tmp_path_factory.mktemp("catalogue")
    node = _module_node(module_index_url, module_blob_url, folder / "data")
    try:
        catalogue.load(node.archive, folder / "files")
        yield node
    finally:
        node.stop()
