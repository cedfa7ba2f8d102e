"""gzip of large JSON answers: for remote clients that accept it, never over loopback."""

from __future__ import annotations

import asyncio
import gzip
import json

import httpx
import pytest
from dicomweb_client import DICOMwebClient
from tests.web.conftest import make_study

from isthmus.web.app import create_app
from isthmus.web.compression import MIN_SIZE, accepts_gzip
from isthmus.web.context import WebContext


@pytest.fixture(scope="module")
def study_uid(dicomweb: DICOMwebClient) -> str:
    """A series of 40 instances: its metadata is well over MIN_SIZE."""
    datasets = make_study(instances_per_series=40)
    dicomweb.store_instances(datasets)
    return str(datasets[0].StudyInstanceUID)


def remote_get(node, path: str, headers: dict[str, str]) -> httpx.Response:
    """GET through the real application as if from another machine (192.0.2.7)."""

    async def get() -> httpx.Response:
        app = create_app(WebContext(node.settings, node.archive))
        transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 40000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://pacs.example/dicom-web"
        ) as client:
            return await client.get(path, headers=headers)

    return asyncio.run(get())


@pytest.mark.parametrize(
    "value, accepted",
    [
        ("gzip", True),
        ("gzip, deflate, br, zstd", True),
        ("x-gzip", True),
        ("*", True),
        ("GZIP;q=0.5", True),
        ("gzip;q=0", False),
        ("*;q=0", False),
        ("identity", False),
        ("br, *;q=0.1", True),
        ("gzip;q=0, *", False),
        ("", False),
        (None, False),
    ],
)
def test_accept_encoding_is_honoured(value, accepted):
    assert accepts_gzip(value) is accepted


def test_a_remote_client_that_accepts_gzip_gets_metadata_gzipped(web_node, study_uid):
    plain = remote_get(web_node, f"/studies/{study_uid}/metadata", {"Accept-Encoding": "identity"})
    packed = remote_get(web_node, f"/studies/{study_uid}/metadata", {"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers and len(plain.content) >= MIN_SIZE
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) < len(plain.content) // 5
    assert packed.json() == plain.json() and len(packed.json()) == 40  # httpx decodes gzip
    assert plain.headers["vary"] == packed.headers["vary"] == "Accept-Encoding"


def test_a_remote_search_answer_is_gzipped_too(web_node, study_uid):
    response = remote_get(web_node, f"/studies/{study_uid}/instances", {"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert len(response.json()) == 40


def test_small_answers_are_not_compressed(web_node, study_uid):
    instance = json.loads(
        remote_get(
            web_node, f"/studies/{study_uid}/metadata", {"Accept-Encoding": "identity"}
        ).content
    )[0]
    sop = instance["00080018"]["Value"][0]
    series = instance["0020000E"]["Value"][0]
    response = remote_get(
        web_node,
        f"/studies/{study_uid}/series/{series}/instances/{sop}/metadata",
        {"Accept-Encoding": "gzip"},
    )
    assert response.status_code == 200 and "content-encoding" not in response.headers


def test_a_loopback_client_gets_metadata_uncompressed(http, study_uid):
    response = http.get(f"/studies/{study_uid}/metadata", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding"
    assert len(json.loads(response.content)) == 40
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(response.content)
