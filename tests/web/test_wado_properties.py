"""WADO-RS under generated paths and Accept headers (issue 15): never a 5xx.

Paths name stored, unknown and invalid UIDs at every level, with /metadata, /rendered,
/thumbnail, frame lists (``1,a,-3,99999``) and bulk data tags; `Accept` headers carry
q-values, wildcards, garbage and transfer-syntax parameters.  The answer is 200/206 with
a content type the resource offers (and the whole body, read to its end), or a 4xx
(406 included) with a JSON message.
"""

from __future__ import annotations

import httpx
import pytest
from dicomweb_client import DICOMwebClient
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.testing.generate import StudySpec, study

OFFERED = (
    "multipart/related",
    "application/dicom",
    "application/dicom+json",
    "application/json",
    "application/octet-stream",
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/dicom-rle",
    "image/jls",
    "image/jp2",
)
MEDIA = [
    "application/dicom",
    "application/dicom+json",
    "application/json",
    "application/octet-stream",
    "application/dicom+xml",
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/jls",
    "image/jp2",
    "image/dicom-rle",
    "image/*",
    "*/*",
    "text/html",
    "video/mp4",
]
TRANSFER_SYNTAXES = [
    "*",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.3.4",
    "",
    "abc",
]


def budget(examples: int) -> int:
    return max(examples, settings.default.max_examples)


@st.composite
def media_range(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(MEDIA))
    params = []
    if draw(st.booleans()):
        inner = draw(st.sampled_from(MEDIA))
        quote = draw(st.sampled_from(['"', ""]))
        kind = f"multipart/related; type={quote}{inner}{quote}"
    if draw(st.booleans()):
        params.append(f"transfer-syntax={draw(st.sampled_from(TRANSFER_SYNTAXES))}")
    if draw(st.booleans()):
        q = draw(st.sampled_from(["0", "0.5", "1", "1.000", "2", "-1", "abc", ""]))
        params.append(f"q={q}")
    return "; ".join([kind, *params])


ACCEPT = st.one_of(
    st.none(),
    st.lists(media_range(), min_size=1, max_size=3).map(", ".join),
    st.sampled_from(
        ["", ",", ";", "*/*;q=", "multipart/related; type=", "a\tb", "a/b/c", "x" * 3000]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.strip),
)
FRAME_LISTS = st.one_of(
    st.lists(st.integers(-5, 100_000).map(str), min_size=1, max_size=5).map(",".join),
    st.sampled_from(
        ["1,a,-3,99999", "", ",", "1,,2", "0", "1.5", "1" * 30, "%20", "1;2", "1" + ",1" * 20_000]
    ),
)
TAGS = st.one_of(
    st.sampled_from(
        ["7FE00010", "7fe00010", "00100010", "00081140", "FFFFFFFF", "7FE0001", "zzzzzzzz", ""]
    ),
    st.text("0123456789ABCDEFabcdefg", min_size=0, max_size=10),
)


@pytest.fixture(scope="module")
def uids(dicomweb: DICOMwebClient) -> dict[str, str]:
    """One study of two series of two 8×8 instances."""
    datasets = list(study(StudySpec(series_count=2, instances_per_series=2, rows=8, columns=8)))
    dicomweb.store_instances(datasets)
    first = datasets[0]
    return {
        "study": first.StudyInstanceUID,
        "series": first.SeriesInstanceUID,
        "instance": first.SOPInstanceUID,
    }


def _uid(known: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(known),
        st.just(known),
        st.lists(st.text("0123456789", min_size=1, max_size=6), min_size=1, max_size=5).map(
            ".".join
        ),
        st.sampled_from(["AAAA", "1.2.x", "1" * 65, "..", "1..2", "%2e%2e", " ", "1.2%00"]),
    )


@st.composite
def paths(draw: st.DrawFn, known: dict[str, str]) -> str:
    s, r, i = draw(_uid(known["study"])), draw(_uid(known["series"])), draw(_uid(known["instance"]))
    base = draw(
        st.sampled_from(
            [f"/studies/{s}", f"/studies/{s}/series/{r}", f"/studies/{s}/series/{r}/instances/{i}"]
        )
    )
    suffix = draw(
        st.one_of(
            st.sampled_from(["", "/metadata", "/rendered", "/thumbnail"]),
            FRAME_LISTS.map(lambda f: f"/frames/{f}"),
            FRAME_LISTS.map(lambda f: f"/frames/{f}/rendered"),
            TAGS.map(lambda t: f"/bulkdata/{t}"),
        )
    )
    return base + suffix


def check_answer(response: httpx.Response) -> None:
    status = response.status_code
    assert status < 500, (status, response.text[:300])
    if status in (200, 206):
        kind = response.headers["content-type"].split(";")[0].strip()
        assert kind in OFFERED, kind
        if "content-length" in response.headers:
            assert len(response.content) == int(response.headers["content-length"])
    elif status >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.headers
        assert response.json()["message"]
    else:
        assert status in (204, 304), status


@settings(max_examples=budget(150))
@given(data=st.data())
def test_no_path_or_accept_header_breaks_wado(http, uids, data):
    path = data.draw(paths(uids), label="path")
    accept = data.draw(ACCEPT, label="accept")
    headers = {"Accept": accept} if accept is not None else {}
    if data.draw(st.booleans(), label="range"):
        headers["Range"] = data.draw(
            st.sampled_from(
                ["bytes=0-10", "bytes=-5", "bytes=5-", "bytes=99999-", "bytes=a-b", "items=1"]
            )
        )
    query = data.draw(
        st.sampled_from(
            [
                {},
                {"accept": "image/png"},
                {"viewport": "64,64"},
                {"window": "40,400"},
                {"window": "a,b,c"},
                {"quality": "0"},
                {"viewport": "0,0"},
            ]
        ),
        label="query",
    )
    with http.stream("GET", path, headers=headers, params=query) as response:
        response.read()
    check_answer(response)
