"""STOW-RS under damaged bodies (issue 15): good parts stored, bad ones reported, never a 5xx.

Both request forms: multipart/related of application/dicom parts, and application/dicom+json
metadata with bulk data parts.  Bodies are generated from a pool of valid instances and
then damaged: parts truncated, replaced by garbage, given the wrong content type; whole
bodies truncated, their boundary or content type wrong.  After every request the archive
holds exactly what the response says it stored and `Archive.check()` finds nothing to
repair (no partial instance, no orphan blob, no row without its blob).
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

import httpx
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.web.conftest import make_study, part10

from isthmus.server import Node

BOUNDARY = "b0undary"
DICOM_MULTIPART = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
JSON_MULTIPART = f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}'
BAD_CONTENT_TYPES = [
    "",
    "text/plain",
    "application/dicom",  # a multipart body sent as a single instance
    "multipart/related",
    'multipart/related; type="application/dicom"',
    'multipart/related; type="application/dicom"; boundary=',
    'multipart/related; type="application/dicom"; boundary=nope',
    f'multipart/related; type="image/png"; boundary={BOUNDARY}',
    f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}',
    f"multipart/related; boundary={BOUNDARY}; type=application/dicom; type=x",
    "multipart/related; type=; boundary=;;",
    "multipart/form-data; boundary=" + BOUNDARY,
]


def budget(examples: int) -> int:
    return max(examples, settings.default.max_examples)


class Pool(list):
    """A list that Hypothesis reports briefly when a test fails."""

    def __repr__(self) -> str:
        return f"<{len(self)} instances>"


@pytest.fixture(scope="module")
def pool() -> Pool:
    """Six small instances (two series of three)."""
    return Pool(make_study(series_count=2, instances_per_series=3, rows=8, columns=8))


@pytest.fixture(scope="module")
def pool_bytes(pool) -> Pool:
    return Pool(part10(ds) for ds in pool)


def _body(parts: list[tuple[str, bytes]], extra_headers: list[str] | None = None) -> bytes:
    out = b""
    for i, (content_type, content) in enumerate(parts):
        head = f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\n"
        if extra_headers and extra_headers[i]:
            head += extra_headers[i] + "\r\n"
        out += head.encode() + b"\r\n" + content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


# A part: (kind, instance index, detail).  "good" must be stored; "bad" must be refused
# and reported; "maybe" (one byte changed) may go either way but must be consistent.
PART = st.one_of(
    st.tuples(st.just("good"), st.integers(0, 5), st.just(0)),
    st.tuples(st.just("truncated"), st.integers(0, 5), st.floats(0, 0.999)),
    st.tuples(st.just("truncated pixels"), st.integers(0, 5), st.floats(0, 0.999)),
    st.tuples(st.just("garbage"), st.integers(0, 5), st.binary(max_size=300)),
    st.tuples(st.just("empty"), st.integers(0, 5), st.just(0)),
    st.tuples(
        st.just("wrong type"),
        st.integers(0, 5),
        st.sampled_from(["text/plain", "application/dicom+json", "image/jpeg", "x/\x7f"]),
    ),
    st.tuples(
        st.just("flipped"),
        st.integers(0, 5),
        st.tuples(st.floats(0, 0.999), st.binary(min_size=1, max_size=1)),
    ),
)
BODY_DAMAGE = st.one_of(
    st.just(("none", None)),
    st.tuples(st.just("truncate"), st.floats(0, 0.999)),
    st.tuples(st.just("content type"), st.sampled_from(BAD_CONTENT_TYPES)),
    st.tuples(st.just("no closing boundary"), st.just(None)),
    st.tuples(st.just("junk around"), st.binary(max_size=40)),
    st.tuples(st.just("other boundary in body"), st.just(None)),
)


def _part(kind: str, i: int, detail: Any, pool_bytes: list[bytes]) -> tuple[str, bytes, str]:
    """(content type, content, expectation)."""
    good = pool_bytes[i]
    if kind == "good":
        return "application/dicom", good, "good"
    if kind == "truncated":
        # cut at an element boundary, the rest is a shorter but valid dataset
        return "application/dicom", good[: int(len(good) * detail)], "maybe"
    if kind == "truncated pixels":
        start = good.rfind(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data
        return "application/dicom", good[: start + 1 + int((len(good) - start - 1) * detail)], "bad"
    if kind == "garbage":
        return "application/dicom", detail, "bad"
    if kind == "empty":
        return "application/dicom", b"", "bad"
    if kind == "wrong type":
        return detail, good, "bad"
    where, byte = detail
    at = int(len(good) * where)
    return "application/dicom", good[:at] + byte + good[at + 1 :], "maybe"


def _referenced(response: httpx.Response) -> list[str]:
    body = response.json()
    return [item["00081155"]["Value"][0] for item in body.get("00081199", {}).get("Value", [])]


def _failed(response: httpx.Response) -> int:
    return len(response.json().get("00081198", {}).get("Value", []))


def check_archive(node: Node, referenced: list[str]) -> None:
    """What the response says was stored is there, whole; nothing else is left over."""
    if referenced:
        rows = node.archive.instances(sop_uid=referenced)
        assert {r.sop_instance_uid for r in rows} == set(referenced)
    report = node.archive.check(repair=True)
    assert not (report["partial"] or report["orphans"] or report["missing"]), report


def check_error(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code in (400, 408, 413, 415):
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["message"]


@settings(max_examples=budget(80))
@given(parts=st.lists(PART, min_size=1, max_size=5), damage=BODY_DAMAGE)
def test_damaged_dicom_multipart_bodies(web_node, http, pool_bytes, parts, damage):
    built = [_part(kind, i, detail, pool_bytes) for kind, i, detail in parts]
    body = _body([(ctype, content) for ctype, content, _ in built])
    content_type = DICOM_MULTIPART
    how, detail = damage
    if how == "truncate":
        body = body[: int(len(body) * detail)]
    elif how == "content type":
        content_type = detail
    elif how == "no closing boundary":
        body = body[: -len(f"--{BOUNDARY}--\r\n")]
    elif how == "junk around":
        body = detail + b"\r\n" + body + detail
    elif how == "other boundary in body":
        body = body.replace(BOUNDARY.encode(), b"otherb0undary")
    response = http.post("/studies", content=body, headers={"Content-Type": content_type})
    check_error(response)
    referenced = _referenced(response) if response.status_code in (200, 202, 409) else []
    check_archive(web_node, referenced)
    if how in ("none", "junk around"):
        # the body is well formed: one outcome per part, each as expected
        assert response.status_code in (200, 202, 409), response.text[:300]
        good = {uid_of(pool_bytes[i]) for (kind, i, _) in parts if kind == "good"}
        assert good <= set(referenced), response.text[:500]
        bad = sum(1 for _, _, e in built if e == "bad")
        maybe = sum(1 for _, _, e in built if e == "maybe")
        assert bad <= _failed(response) <= bad + maybe
        assert len(referenced) + _failed(response) == len(built)


def uid_of(data: bytes) -> str:
    return str(pydicom.dcmread(BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


# ------------------------------------------------------------- metadata + bulk data
METADATA_DAMAGE = st.sampled_from(
    [
        "none",
        "invalid json",
        "not a list",
        "list of non-objects",
        "no sop instance uid",
        "bad vr",
        "bulk uri nowhere",
        "bulk part truncated",
        "bulk part missing",
        "bulk part wrong type",
        "value not a list",
        "huge value",
    ]
)


def _metadata(ds: Any) -> dict[str, Any]:
    metadata = ds.to_json_dict(
        bulk_data_threshold=1024, bulk_data_element_handler=lambda elem: "pixels"
    )
    metadata["7FE00010"] = {"vr": "OW", "BulkDataURI": f"pix-{ds.SOPInstanceUID}"}
    return metadata


@settings(max_examples=budget(60))
@given(
    items=st.lists(
        st.tuples(st.integers(0, 5), METADATA_DAMAGE),
        min_size=1,
        max_size=3,
        unique_by=lambda item: item[0],  # one Content-Location per instance
    ),
    truncate_body=st.one_of(st.none(), st.floats(0, 0.999)),
)
def test_damaged_metadata_and_bulk_data_bodies(web_node, http, pool, items, truncate_body):
    datasets: list[Any] = []
    bulk: list[tuple[str, bytes, str]] = []  # (content type, content, Content-Location)
    raw_meta: bytes | None = None
    good_uids: set[str] = set()
    for i, damage in items:
        ds = pool[i]
        metadata = _metadata(ds)
        location = f"pix-{ds.SOPInstanceUID}"
        pixels = bytes(ds.PixelData)
        if damage == "invalid json":
            raw_meta = b'[{"00080018": {"vr": "UI", "Value": ["1.2'
        elif damage == "not a list":
            raw_meta = b'{"a": 1}'
        elif damage == "list of non-objects":
            raw_meta = b'[1, null, "x"]'
        elif damage == "no sop instance uid":
            del metadata["00080018"]
        elif damage == "bad vr":
            metadata["00100010"] = {"vr": "??", "Value": ["x"]}
        elif damage == "bulk uri nowhere":
            metadata["7FE00010"] = {"vr": "OW", "BulkDataURI": "nowhere"}
        elif damage == "bulk part truncated":
            pixels = pixels[: len(pixels) // 2]
        elif damage == "value not a list":
            metadata["00100010"] = {"vr": "PN", "Value": "DOE"}
        elif damage == "huge value":
            metadata["00081030"] = {"vr": "LO", "Value": ["x" * 70_000]}
        if damage != "bulk part missing":
            ctype = "text/html" if damage == "bulk part wrong type" else "application/octet-stream"
            bulk.append((ctype, pixels, location))
        datasets.append(metadata)
        if damage == "none":
            good_uids.add(ds.SOPInstanceUID)
    meta_bytes = raw_meta if raw_meta is not None else json.dumps(datasets).encode()
    parts = [("application/dicom+json", meta_bytes)] + [(c, b) for c, b, _ in bulk]
    headers = [""] + [f"Content-Location: {loc}" for _, _, loc in bulk]
    body = _body(parts, headers)
    if truncate_body is not None:
        body = body[: int(len(body) * truncate_body)]
    response = http.post("/studies", content=body, headers={"Content-Type": JSON_MULTIPART})
    check_error(response)
    referenced = _referenced(response) if response.status_code in (200, 202, 409) else []
    check_archive(web_node, referenced)
    if truncate_body is None and raw_meta is None:
        assert response.status_code in (200, 202, 409), response.text[:300]
        assert good_uids <= set(referenced), response.text[:500]
