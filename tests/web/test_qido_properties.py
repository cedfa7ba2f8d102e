"""QIDO-RS under generated queries (issue 15): no parameter set may break the door.

Every resource level, every attribute of the conformance statement (by keyword and by
tag), every matching form, control parameters and hostile strings.  The answer is 200
with a JSON array of datasets, 204 with no body, or a 4xx with a JSON message; never a
5xx or a dropped connection.  Budget: the "ci" profile (tests/conftest.py) unless a test
says otherwise; ``HYPOTHESIS_PROFILE=fuzz`` searches longer.
"""

from __future__ import annotations

import httpx
import pytest
from dicomweb_client import DICOMwebClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.datadict import tag_for_keyword

from isthmus.testing.generate import patients, study

# The indexed attributes the conformance statement lists (docs/conformance.md, QIDO-RS),
# and a few that are matched over stored metadata.
ATTRIBUTES = [
    "PatientID",
    "PatientName",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "NumberOfPatientRelatedStudies",
    "NumberOfPatientRelatedSeries",
    "NumberOfPatientRelatedInstances",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
    "ModalitiesInStudy",
    "SOPClassesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "NumberOfSeriesRelatedInstances",
    "SOPInstanceUID",
    "SOPClassUID",
    "InstanceNumber",
    "Rows",
    "Columns",
    "BitsAllocated",
    "NumberOfFrames",
    "ContentDate",
    "ContentTime",
    # not indexed: matched over the stored metadata
    "Manufacturer",
    "AcquisitionDateTime",
    "ReferencedStudySequence",
    "PixelData",
    "SliceThickness",
    "ImageType",
]
CONTROL = ["includefield", "fuzzymatching", "limit", "offset", "accept", "charset"]
MALFORMED_NAMES = [
    "",
    "NoSuchKeyword",
    "0010001",
    "001000100",
    "zzzzzzzz",
    "00100010.00100020",
    "ReferencedStudySequence.ReferencedSOPInstanceUID",
    "a.b.c",
    "FFFFFFFF",
    "00091001",
    "transfer-syntax",
    "PatientName\x00",
    "Patient Name",
    "%",
]
HOSTILE = [
    "\x00",
    "a\x00b",
    "\\",
    "\\\\\\",
    "=",
    "==",
    "^^^^",
    "*" * 500,
    "?" * 65,
    "-",
    "--",
    "20200101-20190101",
    "%",
    "_",
    "'; DROP TABLE study; --",
    "\u202e\u0000\ufffd",
    "😀" * 30,
    "*S" * 30 + "*x",  # exponential for a backtracking regular expression
    "x" * 20_000,
    "1." * 40,
    "0",
    "-1",
    "99999999999999999999999999",
    "1e309",
    "NaN",
    " ",
]

DIGITS = st.text("0123456789", min_size=1, max_size=8)
DATE = st.builds(
    lambda y, m, d: f"{y:04d}{m:02d}{d:02d}",
    st.integers(0, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
)
TIME = st.from_regex(r"\A[0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?\Z")
UIDS = st.lists(DIGITS, min_size=1, max_size=6).map(".".join)


def _range(side: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda a, b: f"{a}-{b}", side, side),
        side.map(lambda a: f"{a}-"),
        side.map(lambda a: f"-{a}"),
    )


NAME_WORD = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgüÜ'*?^ ", max_size=12)
VALUES = st.one_of(
    st.just(""),
    st.just("*"),
    NAME_WORD,
    st.lists(NAME_WORD, min_size=1, max_size=3).map("=".join),  # PN component groups
    st.lists(NAME_WORD, min_size=2, max_size=4).map("\\".join),  # list of values
    DATE,
    _range(DATE),
    TIME,
    _range(TIME),
    st.builds(lambda d, t: f"{d}{t}", DATE, TIME),
    _range(st.builds(lambda d, t: f"{d}{t}+0100", DATE, TIME)),
    UIDS,
    st.lists(UIDS, min_size=2, max_size=4).map(",".join),
    st.lists(UIDS, min_size=2, max_size=4).map("\\".join),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(HOSTILE),
    # long lists: each value is one SQL term (SQLite refuses expressions deeper than 1000)
    st.builds(
        lambda v, n: "\\".join([v] * n), st.sampled_from(["ab", "20200101-"]), st.integers(90, 1200)
    ),
    st.integers(90, 1200).map(lambda n: " ".join(["ab"] * n)),
    st.text(max_size=40),  # any unicode, NUL and surrogates' neighbours included
)


def _tag_name(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    return f"{tag:08X}" if tag is not None else keyword


KEY_NAMES = st.one_of(
    st.sampled_from(ATTRIBUTES),
    st.sampled_from(ATTRIBUTES).map(_tag_name),
    st.sampled_from(MALFORMED_NAMES),
    st.text(max_size=12),
)
CONTROL_PAIRS = st.one_of(
    st.tuples(
        st.just("includefield"),
        st.one_of(
            st.just("all"),
            st.lists(st.one_of(st.sampled_from(ATTRIBUTES), KEY_NAMES), max_size=4).map(",".join),
        ),
    ),
    st.tuples(st.just("fuzzymatching"), st.sampled_from(["true", "false", "TRUE", "yes", "", "1"])),
    st.tuples(
        st.sampled_from(["limit", "offset"]),
        st.one_of(st.integers(-5, 20_000).map(str), st.sampled_from(HOSTILE)),
    ),
    st.tuples(
        st.just("accept"),
        st.sampled_from(
            [
                "application/dicom+json",
                "application/json",
                'multipart/related; type="application/dicom+xml"',
                "image/png",
                "*/*",
                "garbage",
                "",
            ]
        ),
    ),
    st.tuples(st.just("charset"), st.sampled_from(["utf-8", "ISO_IR 100", "\x00"])),
)
PAIRS = st.lists(
    st.one_of(st.tuples(KEY_NAMES, VALUES), CONTROL_PAIRS, st.tuples(KEY_NAMES, VALUES)),
    max_size=6,
)


@pytest.fixture(scope="module")
def uids(dicomweb: DICOMwebClient) -> dict[str, list[str]]:
    """Three patients, each with a study of two series of two instances."""
    datasets = [
        ds
        for spec in patients(3, series_count=2, instances_per_series=2, rows=8, columns=8)
        for ds in study(spec)
    ]
    datasets[0].InstitutionName = "S" * 60  # long runs for the wildcard matcher
    dicomweb.store_instances(datasets)
    return {
        "study": sorted({ds.StudyInstanceUID for ds in datasets}),
        "series": sorted({ds.SeriesInstanceUID for ds in datasets}),
    }


def _uid_strategy(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(known),
        UIDS,
        st.sampled_from(["AAAA", "1.2.x", "1" * 65, "1..2", ".", "%2e%2e", "1.2%2F3"]),
    )


@st.composite
def resources(draw: st.DrawFn, known: dict[str, list[str]]) -> str:
    study_uid = draw(_uid_strategy(known["study"]))
    series_uid = draw(_uid_strategy(known["series"]))
    return draw(
        st.sampled_from(
            [
                "/studies",
                "/series",
                "/instances",
                f"/studies/{study_uid}/series",
                f"/studies/{study_uid}/instances",
                f"/studies/{study_uid}/series/{series_uid}/instances",
            ]
        )
    )


def check_answer(response: httpx.Response) -> None:
    """200 with a JSON array of datasets (or multipart XML), 204 empty, 4xx with JSON."""
    status = response.status_code
    assert status < 500, (status, response.text[:500])
    if status == 200:
        kind = response.headers["content-type"]
        if kind.startswith("multipart/related"):
            assert "application/dicom+xml" in kind
            return
        assert kind.split(";")[0] in ("application/dicom+json", "application/json")
        body = response.json()
        assert isinstance(body, list) and body
        for dataset in body:
            assert isinstance(dataset, dict)
            for tag, element in dataset.items():
                assert len(tag) == 8 and int(tag, 16) >= 0
                assert isinstance(element, dict) and "vr" in element
    elif status == 204:
        assert response.content == b""
    else:
        assert 400 <= status < 500, status
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["message"]


def budget(examples: int) -> int:
    """This test's examples in the "ci" profile; the profile's, when it asks for more."""
    return max(examples, settings.default.max_examples)


@settings(max_examples=budget(150))
@given(data=st.data())
def test_no_query_breaks_qido(http, uids, data):
    path = data.draw(resources(uids), label="path")
    pairs = data.draw(PAIRS, label="params")
    check_answer(http.get(path, params=pairs))


@settings(max_examples=budget(40))
@given(
    key=st.sampled_from(ATTRIBUTES),
    value=VALUES,
    level=st.sampled_from(["/studies", "/series", "/instances"]),
    repeat=st.integers(1, 3),
)
def test_every_attribute_at_every_level(http, uids, key, value, level, repeat):
    """One attribute, possibly repeated (repeated keys are a list of values)."""
    check_answer(http.get(level, params=[(key, value)] * repeat))


@settings(max_examples=budget(30))
@given(
    key=st.sampled_from(ATTRIBUTES),
    value=st.sampled_from(["AB", "2020*", "20200101-20200102", "1.2.3", "12", "A=B"]),
    count=st.integers(1, 2000),
    fuzzy=st.booleans(),
    level=st.sampled_from(["/studies", "/series", "/instances"]),
)
def test_long_lists_of_values(http, uids, key, value, count, fuzzy, level):
    """A key of many values (``a\\b\\…``) or a fuzzy name of many words."""
    sep = " " if fuzzy and key == "PatientName" else "\\"
    params = {key: sep.join([value] * count), "fuzzymatching": str(fuzzy).lower()}
    check_answer(http.get(level, params=params))
