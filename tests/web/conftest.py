"""Fixtures of the DICOMweb tests: a running node (DIMSE + HTTP on loopback), clients.

`web_node` is one node per test module (starting one costs ~0.2 s, but loading data
into it is what takes time, so modules share theirs); `fresh_node` is one per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_client import DICOMwebClient

from isthmus.config import Settings
from isthmus.server import Node
from isthmus.testing.generate import StudySpec, study
from isthmus.testing.net import free_port
from isthmus.testing.seaweedfs import TemporarySeaweedFS


def node_settings(folder: Path, **changes: Any) -> Settings:
    settings = Settings(
        data=folder / "data", dicom_port=free_port(), http_port=free_port(), check_on_start=False
    )
    return replace(settings, **changes)


# The modules that read or write blobs run twice: files on disk and S3 (SeaweedFS),
# on a SQLite index both times; the others on files only.
ON_S3 = frozenset(
    {
        "test_wado",
        "test_stow",
        "test_frames",
        "test_rendered",
        "test_wado_uri",
        "test_delete",
        "test_transfer_syntaxes",
        "test_metadata",
    }
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "web_blob_store" in metafunc.fixturenames and module in ON_S3:
        metafunc.parametrize("web_blob_store", ["files", "s3"], indirect=True, scope="module")


@pytest.fixture(scope="module")
def web_blob_store(request: pytest.FixtureRequest) -> str:
    """Where the modules' nodes keep blobs: "files" (the default) or "s3"."""
    return getattr(request, "param", "files")


def _blob_url(request: pytest.FixtureRequest, kind: str) -> str:
    """A fresh blob store of that kind ("" is the file store in the data folder)."""
    if kind != "s3":
        return ""
    server: TemporarySeaweedFS = request.getfixturevalue("seaweedfs")
    return server.url()


@pytest.fixture(scope="module")
def web_node(
    request: pytest.FixtureRequest, web_blob_store: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    """A node shared by the tests of one module (SQLite index, blobs in `web_blob_store`)."""
    settings = node_settings(
        tmp_path_factory.mktemp("node"), blob_url=_blob_url(request, web_blob_store)
    )
    with Node(settings) as node:
        yield node


@pytest.fixture
def fresh_node(
    request: pytest.FixtureRequest, web_blob_store: str, tmp_path: Path
) -> Iterator[Node]:
    with Node(node_settings(tmp_path, blob_url=_blob_url(request, web_blob_store))) as node:
        yield node


def root_of(node: Node) -> str:
    return f"http://127.0.0.1:{node.http_port}/dicom-web"


@pytest.fixture(scope="module")
def dicomweb(web_node: Node) -> DICOMwebClient:
    """The dicomweb-client library pointed at the module's node."""
    return DICOMwebClient(root_of(web_node))


@pytest.fixture(scope="module")
def http(web_node: Node) -> Iterator[httpx.Client]:
    """Plain HTTP to the module's node; base URL is the DICOMweb service root."""
    with httpx.Client(base_url=root_of(web_node), timeout=60) as client:
        yield client


def make_study(**spec: Any) -> list[pydicom.Dataset]:
    """A generated CT study (pydicom datasets with file meta)."""
    return list(study(StudySpec(**spec)))


def part10(ds: pydicom.Dataset) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def multipart_body(parts: list[tuple[str, bytes]], boundary: str = "b0undary") -> bytes:
    """A multipart/related body from (content type, content) pairs."""
    out = b""
    for content_type, content in parts:
        out += f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def parse_multipart(response: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    """Parts of a multipart/related response: (headers, content)."""
    from isthmus.web.multipart import boundary_of, parse_parts

    boundary, _ = boundary_of(response.headers["content-type"])
    body = response.content
    return [(p.headers, body[p.start : p.end]) for p in parse_parts(body, boundary)]
