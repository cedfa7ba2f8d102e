"""The Native DICOM Model XML (PS3.19 A.1) written from and read back into DICOM JSON."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from isthmus.web.dicom_xml import from_xml, to_xml

DATASET = {
    "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
    "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
    "00100010": {
        "vr": "PN",
        "Value": [{"Alphabetic": "Müller^Hans^J^Dr^III", "Ideographic": "ミュラー^ハンス"}],
    },
    "00181050": {"vr": "DS", "Value": [0.5, 2]},
    "00280010": {"vr": "US", "Value": [512]},
    "00081115": {"vr": "SQ", "Value": [{"0020000E": {"vr": "UI", "Value": ["1.2.3"]}}]},
    "00101002": {"vr": "SQ", "Value": []},
    "00091010": {"vr": "LO", "Value": ["private"]},
    "7FE00010": {"vr": "OW", "BulkDataURI": "http://x/bulkdata/7FE00010"},
    "00660023": {"vr": "OB", "InlineBinary": "AAEC"},
    "00200020": {"vr": "CS"},
}


def test_round_trip_keeps_every_value():
    assert from_xml(to_xml(DATASET)) == DATASET


def test_document_shape():
    root = ET.fromstring(to_xml(DATASET))
    assert root.tag == "{http://dicom.nema.org/PS3.19/models/NativeDICOM}NativeDicomModel"
    by_tag = {a.get("tag"): a for a in root}
    assert by_tag["00280010"].get("keyword") == "Rows"
    assert by_tag["00091010"].get("keyword") is None
    name = by_tag["00100010"].find("{*}PersonName")
    assert name.get("number") == "1"
    assert name.find("{*}Alphabetic/{*}NameSuffix").text == "III"
    assert by_tag["00081115"].find("{*}Item").get("number") == "1"
    assert by_tag["7FE00010"].find("{*}BulkData").get("uri").endswith("7FE00010")


def test_not_a_native_dicom_model_is_refused():
    with pytest.raises(ValueError):
        from_xml(b"<html/>")
    with pytest.raises(ValueError):
        from_xml(b"<not xml")


def test_a_character_xml_cannot_hold_becomes_a_replacement_character():
    """PS3.5 6.1.3 lets LT, ST and UT hold FORM FEED and ESC (an ISO 2022 escape
    sequence pydicom did not know is left in the text); XML 1.0 (2.2) allows no C0
    control but TAB, LF and CR, so a value holding one made the whole document
    ill-formed: every application/dicom+xml answer with the instance was unreadable."""
    dataset = {
        "00204000": {"vr": "LT", "Value": ["page 1\x0cpage 2\tend\n"]},
        "00081030": {"vr": "LO", "Value": ["\x1b$BCT\x1b(B"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe\x1b^Jane"}]},
    }
    back = from_xml(to_xml(dataset))  # parses
    assert back["00204000"]["Value"] == ["page 1\ufffdpage 2\tend\n"]
    assert back["00081030"]["Value"] == ["\ufffd$BCT\ufffd(B"]
    assert back["00100010"]["Value"] == [{"Alphabetic": "Doe\ufffd^Jane"}]


def test_a_carriage_return_in_a_text_value_is_kept():
    """LT, ST and UT lines end in CR LF (PS3.5 6.1.3); an XML parser reads a CR LF
    written as it is as LF (XML 1.0 2.11), so it goes as a character reference."""
    dataset = {"00204000": {"vr": "LT", "Value": ["line 1\r\nline 2\rline 3"]}}
    assert from_xml(to_xml(dataset)) == dataset
