"""The direct DICOM JSON encoder writes what pydicom's from_json and writer write."""

from __future__ import annotations

import base64
import json
import warnings
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from isthmus.dicom.json_encode import JsonEncoder, Unsupported

# (implicit VR, little endian): PS3.5 A.1, A.2, A.3 (deflate is A.2 compressed: the
# identifiers' tests cover it)
SYNTAXES = [(True, True), (False, True), (False, False)]
SYNTAX_IDS = ["implicit-le", "explicit-le", "explicit-be"]
UTF8 = {"00080005": {"vr": "CS", "Value": ["ISO_IR 192"]}}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def pydicom_encoding(dataset: dict[str, Any], implicit: bool, little: bool) -> bytes:
    """What the archive wrote before: Dataset.from_json, then pydicom's writer."""
    buf = DicomBytesIO()
    buf.is_implicit_VR = implicit
    buf.is_little_endian = little
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about values it writes anyway
        write_dataset(buf, Dataset.from_json(dataset))
    return buf.getvalue()


def with_charset(dataset: dict[str, Any]) -> dict[str, Any]:
    """The data set declaring ISO_IR 192 when it has a character outside ASCII, as the
    C-FIND results do (the encoder writes text as UTF-8)."""
    if json.dumps(dataset, ensure_ascii=False).isascii():
        return dataset
    return {**dataset, **UTF8}


def assert_same_as_pydicom(dataset: dict[str, Any], implicit: bool, little: bool) -> None:
    dataset = with_charset(dataset)
    encoder = JsonEncoder(implicit, little)
    assert encoder.dataset(dataset) == pydicom_encoding(dataset, implicit, little)


EVERY_VR: dict[str, dict[str, Any]] = {
    "00080005": {"vr": "CS", "Value": ["ISO_IR 100"]},
    "00080008": {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY", "AXIAL"]},
    "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
    "00080018": {"vr": "UI", "Value": ["1.2.3.4"]},
    "00080020": {"vr": "DA", "Value": ["20240131"]},
    "00080030": {"vr": "TM", "Value": ["101530.25"]},
    "0008002A": {"vr": "DT", "Value": ["20240131101530.123456+0100"]},
    "00080050": {"vr": "SH", "Value": ["ACC1"]},
    "00080054": {"vr": "AE", "Value": ["ARCHIVE"]},
    "00080061": {"vr": "CS", "Value": ["CT", "MR"]},
    "00080090": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane^^Dr"}]},
    "00081030": {"vr": "LO", "Value": ["CT chest"]},
    "00081190": {"vr": "UR", "Value": ["http://example.org/studies/1"]},
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Smith^John"}]},
    "00101010": {"vr": "AS", "Value": ["042Y"]},
    "00104000": {"vr": "LT", "Value": ["line one\\still one\r\nline two"]},
    "00181020": {"vr": "LO", "Value": ["v1", "v2"]},
    "00200013": {"vr": "IS", "Value": [7]},
    "00201206": {"vr": "IS", "Value": [1, 22, -333]},
    "00280030": {"vr": "DS", "Value": [0.5, 0.5]},
    "00281050": {"vr": "DS", "Value": [40]},
    "00280010": {"vr": "US", "Value": [512]},
    "00280106": {"vr": "SS", "Value": [-1024]},
    "00280009": {"vr": "AT", "Value": ["00100010", "7FE00010"]},
    "00186020": {"vr": "SL", "Value": [-5, 6]},
    "00209056": {"vr": "SH", "Value": ["a"]},
    "00221033": {"vr": "FL", "Value": [1.5, -0.25]},
    "00460044": {"vr": "FD", "Value": [3.141592653589793]},
    "00660040": {"vr": "UL", "Value": [4294967295]},
    "0040A132": {"vr": "UL", "Value": [1, 2, 3]},
    "00720078": {"vr": "UT", "Value": ["unlimited text"]},
    "00400441": {"vr": "SQ", "Value": []},
    "00189219": {"vr": "UC", "Value": ["a long string", "and another"]},
    "00400280": {"vr": "ST", "Value": ["short text"]},
    "00081140": {
        "vr": "SQ",
        "Value": [
            {
                "00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
                "00081155": {"vr": "UI", "Value": ["1.2.3.4.5"]},
            },
            {"00081155": {"vr": "UI", "Value": ["1.2.3.4.6"]}},
        ],
    },
    "00120064": {
        "vr": "SQ",
        "Value": [
            {
                "00080100": {"vr": "SH", "Value": ["113100"]},
                "00400555": {
                    "vr": "SQ",
                    "Value": [{"0040A30A": {"vr": "DS", "Value": [1.25, 3]}}, None, {}],
                },
            }
        ],
    },
    "00660041": {"vr": "UV", "Value": [18446744073709551615, 0]},
    "00660042": {"vr": "SV", "Value": [-9223372036854775808]},
    "7FE00008": {"vr": "OF", "InlineBinary": b64(b"\x00\x00\x80?")},
    "7FE00009": {"vr": "OD", "InlineBinary": b64(b"\x00" * 8)},
    "00660023": {"vr": "OW", "InlineBinary": b64(b"\x01\x02\x03\x04")},
    "00660024": {"vr": "OL", "InlineBinary": b64(b"\x01\x02\x03\x04")},
    "00660025": {"vr": "OV", "InlineBinary": b64(b"\x01\x02\x03\x04\x05\x06\x07\x08")},
    "7FE00010": {"vr": "OB", "InlineBinary": b64(b"\x01\x02\x03")},
}


@pytest.mark.parametrize(("implicit", "little"), SYNTAXES, ids=SYNTAX_IDS)
def test_every_vr_is_encoded_as_pydicom_encodes_it(implicit: bool, little: bool) -> None:
    assert_same_as_pydicom(EVERY_VR, implicit, little)


EMPTY_VALUES = [
    {"vr": vr, **value}
    for vr in ("AE", "CS", "DA", "DS", "IS", "LO", "PN", "SH", "UI", "US", "FD", "AT", "SQ")
    for value in ({}, {"Value": []}, {"Value": [None]})
    if not (vr == "SQ" and value)  # [null] is a sequence of one empty item
] + [{"vr": vr} for vr in ("OB", "OW", "UT", "UC", "UR", "SV", "UV")]


@pytest.mark.parametrize(("implicit", "little"), SYNTAXES, ids=SYNTAX_IDS)
@pytest.mark.parametrize("attribute", EMPTY_VALUES, ids=str)
def test_an_empty_value_has_zero_length(
    attribute: dict[str, Any], implicit: bool, little: bool
) -> None:
    encoded = JsonEncoder(implicit, little).dataset({"00100021": attribute})
    assert len(encoded) in (8, 12) and encoded.endswith(b"\0\0")  # a header, length 0
    assert_same_as_pydicom({"00100021": attribute}, implicit, little)


STRINGS = [
    ["odd"],
    ["even"],
    [""],
    ["", ""],
    ["a", None, "b"],
    ["one\\two"],
    ["trailing "],
    [" leading"],
    ["\\"],
]


@pytest.mark.parametrize(("implicit", "little"), SYNTAXES, ids=SYNTAX_IDS)
@pytest.mark.parametrize("vr", ["AE", "CS", "LO", "SH", "LT", "ST", "UT", "UC", "UR", "UI"])
@pytest.mark.parametrize("values", STRINGS, ids=str)
def test_strings_are_joined_and_padded_as_pydicom_does(
    vr: str, values: list[Any], implicit: bool, little: bool
) -> None:
    assert_same_as_pydicom({"00091010": {"vr": vr, "Value": values}}, implicit, little)


@pytest.mark.parametrize(
    "values",
    [
        ["1.2.3 "],
        [" 1.2.3\t"],
        ["1.2 \\ 3.4 "],
        ["1.2 \\ 3", "4 "],
        ["1.22", "3.4"],
        ["1.2\x00"],
        ["   "],
    ],
    ids=repr,
)
def test_uids_are_stripped_as_pydicom_strips_them(values: list[str]) -> None:
    for implicit, little in SYNTAXES:
        assert_same_as_pydicom({"0020000D": {"vr": "UI", "Value": values}}, implicit, little)


@pytest.mark.parametrize(
    "names",
    [
        [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}],
        [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}],
        [{"Ideographic": "山田^太郎"}],
        [{"Phonetic": "やまだ"}],
        [{"Alphabetic": "Wang^XiaoDong", "Phonetic": ""}],
        [{"Alphabetic": ""}],
        [{}],
        [{"Alphabetic": "A^B"}, {"Alphabetic": "C^D", "Ideographic": "E"}],
        [{"Alphabetic": "Müller^Jürgen"}],
        [{"Alphabetic": "Back\\slash="}],
        [{"Alphabetic": "Back\\slash="}, {"Alphabetic": "x="}],
        ["Plain^String=="],
        [None, {"Alphabetic": "B"}],
    ],
    ids=repr,
)
def test_person_names_are_encoded_as_pydicom_encodes_them(names: list[Any]) -> None:
    for implicit, little in SYNTAXES:
        assert_same_as_pydicom({"00100010": {"vr": "PN", "Value": names}}, implicit, little)


@pytest.mark.parametrize(
    ("vr", "values"),
    [
        ("IS", [0]),
        ("IS", [5.9]),
        ("IS", ["12"]),
        ("IS", [" 12 "]),
        ("IS", [2**40]),
        ("IS", [True]),
        ("DS", [1]),
        ("DS", [0.1, 1e-7, 1e20, -0.0]),
        ("DS", ["1.50"]),
        ("DS", [float("nan"), float("inf")]),
        ("FL", [0.1]),
        ("FD", [1, "2.5"]),
        ("US", [0, 65535]),
        ("SS", [-32768, 32767]),
        ("UL", ["7"]),
    ],
    ids=repr,
)
def test_numbers_are_written_as_pydicom_writes_them(vr: str, values: list[Any]) -> None:
    for implicit, little in SYNTAXES:
        assert_same_as_pydicom({"00091011": {"vr": vr, "Value": values}}, implicit, little)


@pytest.mark.parametrize(("implicit", "little"), SYNTAXES, ids=SYNTAX_IDS)
def test_non_ascii_text_is_utf8_and_says_so(implicit: bool, little: bool) -> None:
    dataset = {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Ζωή^Ελένη"}]},
        "00081030": {"vr": "LO", "Value": ["Thorax\u00a0CT"]},
        "00081032": {
            "vr": "SQ",
            "Value": [{"00080104": {"vr": "LO", "Value": ["Ångström"]}}],
        },
    }
    encoder = JsonEncoder(implicit, little)
    encoder.dataset(dataset)
    assert encoder.non_ascii
    assert "Ελένη".encode() in encoder.dataset(dataset)
    assert_same_as_pydicom(dataset, implicit, little)


def test_ascii_text_needs_no_character_set() -> None:
    encoder = JsonEncoder(False, True)
    encoder.dataset(EVERY_VR)
    assert not encoder.non_ascii


def test_a_non_ascii_digit_string_needs_utf8_too() -> None:
    encoder = JsonEncoder(False, True)
    encoder.dataset({"00200013": {"vr": "IS", "Value": ["١٢"]}})
    assert encoder.non_ascii


@pytest.mark.parametrize(("implicit", "little"), SYNTAXES, ids=SYNTAX_IDS)
def test_elements_are_in_tag_order_at_every_level(implicit: bool, little: bool) -> None:
    dataset = {
        "00200010": {"vr": "SH", "Value": ["S1"]},
        "00100020": {"vr": "LO", "Value": ["P1"]},
        "00081110": {
            "vr": "SQ",
            "Value": [
                {
                    "00081155": {"vr": "UI", "Value": ["1.2"]},
                    "00081150": {"vr": "UI", "Value": ["1.3"]},
                }
            ],
        },
        "0009AB10": {"vr": "LO", "Value": ["private"]},
        "00090010": {"vr": "LO", "Value": ["CREATOR"]},
        "0009ab11": {"vr": "LO", "Value": ["lower case key"]},
    }
    assert_same_as_pydicom(dataset, implicit, little)


@pytest.mark.parametrize(("implicit", "little"), SYNTAXES, ids=SYNTAX_IDS)
def test_a_long_short_value_becomes_un_in_explicit_vr(implicit: bool, little: bool) -> None:
    dataset = {"00081030": {"vr": "LT", "Value": ["x" * 70000]}}
    assert_same_as_pydicom(dataset, implicit, little)
    if not implicit:
        assert JsonEncoder(implicit, little).dataset(dataset)[4:6] == b"UN"


@pytest.mark.parametrize(("implicit", "little"), SYNTAXES, ids=SYNTAX_IDS)
def test_inline_binary_is_padded_and_may_be_a_list(implicit: bool, little: bool) -> None:
    dataset = {
        "00091001": {"vr": "OB", "InlineBinary": [b64(b"\x01\x02\x03")]},
        "00091002": {"vr": "OW", "InlineBinary": b64(b"\x01\x02\x03\x04")},
        "00091003": {"vr": "OB", "InlineBinary": ""},
    }
    assert_same_as_pydicom(dataset, implicit, little)


@pytest.mark.parametrize(
    "dataset",
    [
        {"7FE00010": {"vr": "OB", "BulkDataURI": "/studies/1/bulkdata/7FE00010"}},
        {"00091010": {"vr": "UN", "InlineBinary": b64(b"ab")}},
        {"00280106": {"vr": "US or SS", "Value": [1]}},
        {"00100010": {"vr": "XX", "Value": ["?"]}},
        {"00100010": {"Value": ["no vr"]}},
        {"00100020": {"vr": "LO", "Value": ["a"], "InlineBinary": "YQ=="}},
        {"00100020": {"vr": "LO", "Value": "not a list"}},
        {"00100020": {"vr": "LO", "Value": [5]}},
        {"00100020": {"vr": "LO", "InlineBinary": "YQ=="}},
        {"00091010": {"vr": "OB", "Value": ["AQ=="]}},
        {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "A", "Other": "B"}]}},
        {"00081110": {"vr": "SQ", "Value": [{"00080005": {"vr": "CS", "Value": ["ISO_IR 100"]}}]}},
        {"00081110": {"vr": "SQ", "Value": ["not an item"]}},
        {"00100000": {"vr": "UL", "Value": [4]}},
        {"00283002": {"vr": "SS", "Value": [40000, 0, 16]}},
        {"PatientName": {"vr": "PN", "Value": [{"Alphabetic": "A"}]}},
        {"0010001a": {"vr": "LO", "Value": ["a"]}, "0010001A": {"vr": "LO", "Value": ["b"]}},
        {"00280010": {"vr": "US", "Value": [65536]}},
        {"00280010": {"vr": "US", "Value": [1, None]}},
        {"00221033": {"vr": "FL", "Value": [1e300]}},
        {"00280009": {"vr": "AT", "Value": ["not hex"]}},
        {"00200013": {"vr": "IS", "Value": ["1.5x"]}},
    ],
    ids=repr,
)
def test_what_it_does_not_encode_is_unsupported(dataset: dict[str, Any]) -> None:
    with pytest.raises(Unsupported):
        JsonEncoder(False, True).dataset(dataset)
