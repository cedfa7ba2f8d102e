"""C-FIND response identifiers: the direct encoding is the one pydicom's path wrote."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from isthmus.dicom import uids
from isthmus.dimse import messages as msg
from isthmus.dimse.identifiers import result_dataset, result_identifier

SYNTAXES = [
    uids.IMPLICIT_VR_LITTLE_ENDIAN,
    uids.EXPLICIT_VR_LITTLE_ENDIAN,
    uids.EXPLICIT_VR_BIG_ENDIAN,
    uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
]
STUDY_MATCH: dict[str, Any] = {
    "00080020": {"vr": "DA", "Value": ["20200101"]},
    "00080030": {"vr": "TM", "Value": ["101500"]},
    "00080050": {"vr": "SH", "Value": ["ACC00000"]},
    "00080061": {"vr": "CS", "Value": ["CT", "SR"]},
    "00081030": {"vr": "LO", "Value": ["STUDY 0"]},
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "SMITH^JOHN"}]},
    "00100020": {"vr": "LO", "Value": ["PID0000"]},
    "0020000D": {"vr": "UI", "Value": ["1.2.826.0.1.3680043.10.1386.9.5216683148351"]},
    "00201208": {"vr": "IS", "Value": [12]},
}


def pydicom_identifier(match: dict[str, Any], level: str, syntax: str) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a BulkDataURI without a handler: an empty value
        return msg.encode_identifier(result_dataset(match, level, "ISTHMUS"), syntax)


def assert_as_before(match: dict[str, Any], level: str = "STUDY") -> None:
    for syntax in SYNTAXES:
        assert result_identifier(match, level, "ISTHMUS", syntax) == pydicom_identifier(
            match, level, syntax
        ), syntax


def test_a_study_match_is_encoded_as_before_in_every_syntax() -> None:
    assert_as_before(STUDY_MATCH)
    assert_as_before({}, "PATIENT")


def test_the_level_and_retrieve_ae_title_replace_stored_ones() -> None:
    assert_as_before(
        {
            **STUDY_MATCH,
            "00080052": {"vr": "CS", "Value": ["IMAGE"]},
            "00080054": {"vr": "AE", "Value": ["ELSEWHERE"]},
        }
    )


def test_a_non_ascii_match_says_iso_ir_192_replacing_a_stored_character_set() -> None:
    names = {"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小東", "Phonetic": ""}
    match = {**STUDY_MATCH, "00100010": {"vr": "PN", "Value": [names]}}
    assert_as_before(match)
    assert_as_before({**match, "00080005": {"vr": "CS", "Value": ["ISO_IR 100"]}})
    encoded = result_identifier(match, "STUDY", "ISTHMUS", uids.EXPLICIT_VR_LITTLE_ENDIAN)
    assert b"ISO_IR 192" in encoded and "王^小東".encode() in encoded


@pytest.mark.parametrize(
    "charset", [["ISO_IR 100"], ["ISO_IR 6"], [""], ["ISO 2022 IR 6", "ISO 2022 IR 87"], []]
)
def test_an_ascii_match_keeps_its_stored_character_set(charset: list[str]) -> None:
    assert_as_before({**STUDY_MATCH, "00080005": {"vr": "CS", "Value": charset}})


@pytest.mark.parametrize(
    "extra",
    [
        {"7FE00010": {"vr": "OB", "BulkDataURI": "/studies/1/bulkdata/7FE00010"}},
        {"00091010": {"vr": "UN", "InlineBinary": "YWJj"}},
        {"00080052": {"vr": "LO", "Value": ["SERIES"]}},
        {"00081110": {"vr": "SQ", "Value": [{"00080005": {"vr": "CS", "Value": ["ISO_IR 100"]}}]}},
    ],
    ids=["bulk-data-uri", "un", "level-of-another-vr", "item-character-set"],
)
@pytest.mark.filterwarnings("ignore:No bulk data URI handler")
def test_what_the_direct_encoder_leaves_goes_through_pydicom(extra: dict[str, Any]) -> None:
    assert_as_before({**STUDY_MATCH, **extra})
