"""Shared fixtures: an archive on SQLite and on a real PostgreSQL, with its blobs in
files and in a real S3 server (SeaweedFS), a running node.

Backends are combined, not crossed: a test that needs an index runs on SQLite and on
PostgreSQL; one that also needs a blob store runs once more, as "s3": SQLite with its
blobs in S3 (`pytest_generate_tests`).  The file store is the default of the others."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from isthmus.archive import Archive
from isthmus.config import Peer, Settings
from isthmus.server import Node
from isthmus.testing.net import free_port
from isthmus.testing.postgres import TemporaryPostgres
from isthmus.testing.seaweedfs import TemporarySeaweedFS

# Hypothesis profiles (issue 15), chosen by HYPOTHESIS_PROFILE: "ci" (the default, for
# `make test`: few examples, derandomized, no deadline) and "fuzz" (`make fuzz`: many).
# Property suites are the files named test_*_properties.py.
hypothesis_settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
hypothesis_settings.register_profile(
    "fuzz",
    max_examples=2000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DCMTK_TOOLS = ("echoscu", "storescu", "findscu", "movescu", "getscu", "storescp", "dcmsend")


@pytest.fixture(scope="session")
def postgres() -> Iterator[TemporaryPostgres]:
    """One PostgreSQL server for the whole session, started and stopped by the tests."""
    server = TemporaryPostgres().start()
    try:
        yield server
    finally:
        server.stop()


# (index, blob store) of each backend id: PostgreSQL with files, SQLite with S3.
BACKENDS = {
    "sqlite": ("sqlite", "file"),
    "postgresql": ("postgresql", "file"),
    "s3": ("sqlite-s3", "s3"),  # a SQLite index of its own (not the "sqlite" variant's)
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test on every backend it can see: "sqlite" and "postgresql" for the
    index, and "s3" too when it also takes a blob store (function or module scope)."""
    for index, blobs, scope in (
        ("index_url", "blob_url", "function"),
        ("module_index_url", "module_blob_url", "module"),
    ):
        if index not in metafunc.fixturenames:
            continue
        if blobs in metafunc.fixturenames:
            metafunc.parametrize(
                [index, blobs],
                list(BACKENDS.values()),
                indirect=True,
                ids=list(BACKENDS),
                scope=scope,  # type: ignore[arg-type]
            )
        else:
            metafunc.parametrize(index, ["sqlite", "postgresql"], indirect=True, scope=scope)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[TemporarySeaweedFS]:
    """One S3 server (SeaweedFS) for the whole session, started and stopped by the tests;
    the standard AWS variables point at it while it runs."""
    server = TemporarySeaweedFS().start()
    saved = {name: os.environ.get(name) for name in server.env}
    os.environ.update(server.env)
    try:
        yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.close()


@pytest.fixture
def index_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty index database of each kind."""
    if request.param.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'index.sqlite'}"
    server: TemporaryPostgres = request.getfixturevalue("postgres")
    return server.create_database("t_" + uuid.uuid4().hex[:12])


@pytest.fixture
def blob_url(request: pytest.FixtureRequest) -> str:
    """An empty blob store: "" (the file store, under the archive's folder) or an S3
    prefix of its own on the session's server."""
    if request.param == "s3":
        server: TemporarySeaweedFS = request.getfixturevalue("seaweedfs")
        return server.url()
    return ""


@pytest.fixture
def archive(index_url: str, blob_url: str, tmp_path: Path) -> Iterator[Archive]:
    arch = Archive(index_url, blob_url or f"file://{tmp_path / 'blobs'}")
    try:
        yield arch
    finally:
        arch.close()


@pytest.fixture
def settings(index_url: str, blob_url: str, tmp_path: Path) -> Settings:
    """Settings for a node on free loopback ports, archive under tmp_path."""
    return Settings(
        data=tmp_path / "data",
        dicom_port=free_port(),
        http_port=free_port(),
        index_url=index_url,
        blob_url=blob_url,
    )


@pytest.fixture
def node(settings: Settings) -> Iterator[Node]:
    """A running node (DIMSE + HTTP) on the settings above."""
    with Node(settings) as running:
        yield running


def node_with(settings: Settings, **changes: object) -> Node:
    """A node with changed settings (caller starts and stops it)."""
    return Node(replace(settings, **changes))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def dcmtk() -> None:
    """DCMTK's command-line tools must be there (`make test` installs them)."""
    missing = [tool for tool in DCMTK_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"DCMTK tools missing: {missing} (run scripts/system-deps.sh)")


def peer_of(node: Node) -> Peer:
    return Peer(node.settings.aet, "127.0.0.1", node.dicom_port)


@pytest.fixture(scope="module")
def module_index_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """An empty index database of each kind, shared by the tests of one module
    (for read-only tests over one populated archive)."""
    if request.param.startswith("sqlite"):
        return f"sqlite:///{tmp_path_factory.mktemp('index') / 'index.sqlite'}"
    server: TemporaryPostgres = request.getfixturevalue("postgres")
    return server.create_database("m_" + uuid.uuid4().hex[:12])


@pytest.fixture(scope="module")
def module_blob_url(request: pytest.FixtureRequest) -> str:
    """`blob_url` shared by the tests of one module."""
    if request.param == "s3":
        server: TemporarySeaweedFS = request.getfixturevalue("seaweedfs")
        return server.url()
    return ""
