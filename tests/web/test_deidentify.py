"""POST /api/deidentify: stored studies into new studies, found by QIDO, rendered by
WADO-RS like their originals; the write permission is needed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.web.conftest import make_study, node_settings, part10

from isthmus.server import Node
from isthmus.web.auth import hash_token

TOKENS = {
    "reader": {"hash": hash_token("reader-secret"), "permissions": ["read"]},
    "writer": {"hash": hash_token("writer-secret"), "permissions": ["read", "write"]},
}
WRITER = {"Authorization": "Bearer writer-secret"}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with Node(node_settings(tmp_path_factory.mktemp("deid"), tokens=TOKENS)) as node:
        yield node


@pytest.fixture(scope="module")
def source(secured: Node) -> str:
    datasets = make_study(
        patient_name="SMITH^ALICE", patient_id="MRN-1", series_count=2, instances_per_series=2
    )
    for ds in datasets:
        assert secured.archive.store(part10(ds)).ok
    return str(datasets[0].StudyInstanceUID)


def post(node: Node, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    url = f"http://127.0.0.1:{node.http_port}/api/deidentify"
    return httpx.post(url, json=body, headers=WRITER if headers is None else headers, timeout=60)


def get(node: Node, path: str, **params: str) -> httpx.Response:
    url = f"http://127.0.0.1:{node.http_port}/dicom-web{path}"
    return httpx.get(url, params=params, headers=WRITER, timeout=60)


def test_a_study_is_deidentified_into_a_new_study_qido_finds(secured: Node, source: str) -> None:
    answer = post(secured, {"project": "trial", "studies": [source], "options": {"dates": "full"}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    new = body["studies"][0]["study"]
    assert body["studies"] == [{"source": source, "study": new}] and body["stored"] == 4
    found = get(secured, "/studies", StudyInstanceUID=new).json()
    assert len(found) == 1
    attrs = found[0]
    assert attrs["00100020"]["Value"][0].startswith("P")  # a pseudonym, not MRN-1
    assert attrs["00080020"]["Value"] == ["20240115"]  # full dates kept
    assert [
        m["0020000D"]["Value"][0] for m in get(secured, "/studies", PatientID="MRN-1").json()
    ] == [source]
    again = post(secured, {"project": "trial", "studies": [source], "options": {"dates": "full"}})
    assert again.json()["studies"][0]["study"] == new and again.json()["duplicates"] == 4


def test_a_deidentified_frame_renders_as_its_original(secured: Node, source: str) -> None:
    new = post(secured, {"project": "render", "studies": [source]}).json()["studies"][0]["study"]

    def first_frame(study: str) -> bytes:
        series = get(secured, f"/studies/{study}/series", SeriesNumber="1").json()
        series_uid = series[0]["0020000E"]["Value"][0]
        instances = get(secured, f"/studies/{study}/series/{series_uid}/instances").json()
        ordered = sorted(instances, key=lambda i: i["00200013"]["Value"][0])
        sop = ordered[0]["00080018"]["Value"][0]
        path = f"/studies/{study}/series/{series_uid}/instances/{sop}/frames/1/rendered"
        got = get(secured, path, accept="image/png")
        assert got.status_code == 200 and got.headers["content-type"] == "image/png"
        return got.content

    assert first_frame(new) == first_frame(source)


def test_the_write_permission_is_needed(secured: Node, source: str) -> None:
    body = {"project": "trial", "studies": [source]}
    assert post(secured, body, headers={}).status_code == 401
    reader = post(secured, body, headers={"Authorization": "Bearer reader-secret"})
    assert reader.status_code == 403 and "write" in reader.json()["message"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ([1, 2], 400, "JSON object"),
        ({"project": "p", "studies": []}, 400, "studies"),
        ({"project": "p", "studies": ["1.2"], "colour": 1}, 400, "unknown fields"),
        ({"project": "a b", "studies": ["1.2.3"]}, 400, "project name"),
        ({"project": "p", "studies": ["1.2.3"], "options": {"dates": "never"}}, 400, "dates"),
        (
            {"project": "p", "studies": ["SRC"], "options": {"retain_uids": True}},
            400,
            "retain_uids",
        ),
        ({"project": "p", "studies": ["1.2.3.404"]}, 404, "none of the studies"),
    ],
)
def test_bad_requests_get_a_clear_error(
    secured: Node, source: str, body: Any, status: int, words: str
) -> None:
    if isinstance(body, dict) and body.get("studies") == ["SRC"]:
        body["studies"] = [source]
    answer = post(secured, body)
    assert answer.status_code == status and words in answer.json()["message"], answer.text


def test_the_new_instances_are_audited_as_stored_by_the_caller(secured: Node, source: str) -> None:
    """docs/security.md: instances stored are audited (PS3.15 A.5.3.4, DICOM Instances
    Transferred, action C), whichever door stores them: here the de-identified copies."""
    answer = post(secured, {"project": "audited", "studies": [source]})
    assert answer.status_code == 200, answer.text
    new = answer.json()["studies"][0]["study"]
    secured.audit.flush()
    entries = [json.loads(line) for line in secured.audit.log.path.open(encoding="utf-8")]
    stored = [e for e in entries if e["event"] == "stored" and e["studies"] == [new]]
    assert len(stored) == 1, entries
    (entry,) = stored
    assert (entry["user"], entry["source"], entry["action"]) == ("writer", "127.0.0.1", "C")
    assert entry["patients"][0]["id"].startswith("P")  # the pseudonym, never MRN-1
    assert 'NumberOfInstances="4"' in entry["xml"]
