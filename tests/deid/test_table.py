"""Every attribute PS3.15 Table E.1-1 lists gets its action, under each option.

One data set holds every standard attribute of the table with a non-empty value of its
VR (pydicom's dictionary), a sequence holding an identifying attribute where the VR is
SQ; it is de-identified with the Basic Profile alone and with each option, and each
attribute is checked against the action the table's own columns give it.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from isthmus.deid import DeidentificationOptions, Deidentifier, encode, table
from isthmus.deid.profile import COMBINED

KEY = bytes(range(32))
NAME = "Smith^John"
# A value of each VR; text values carry the patient's family name, to see cleaning.
VALUES = {
    "AE": "STATION1",
    "AS": "045Y",
    "CS": "VALUE",
    "DA": "20240315",
    "DS": "12.5",
    "DT": "20240315101010",
    "IS": "42",
    "LO": "seen by Smith",
    "LT": "long text on Smith",
    "OB": b"\x01\x02",
    "PN": NAME,
    "SH": "ID Smith",
    "ST": "short text on Smith",
    "TM": "101010",
    "UC": "unlimited Smith",
    "UN": b"\x01\x02",
    "UR": "http://hospital.example/smith",
    "US": 7,
    "UT": "unlimited text Smith",
}
UID_ROOT = "1.2.826.0.1.3680043.10.1386.9.77."
# Attributes the de-identifier itself writes or needs (the instance's own identity).
OWN = {0x00080016, 0x00120062, 0x00120063, 0x00120064, 0x00280303}

OPTION_SETS = {
    "basic": DeidentificationOptions(),
    "full dates": DeidentificationOptions(dates="full"),
    "modified dates": DeidentificationOptions(dates="modified"),
    "patient characteristics": DeidentificationOptions(retain_patient_characteristics=True),
    "device identity": DeidentificationOptions(retain_device_identity=True),
    "institution identity": DeidentificationOptions(retain_institution_identity=True),
    "uids": DeidentificationOptions(retain_uids=True),
    "clean descriptors": DeidentificationOptions(clean_descriptors=True),
}


def listed() -> list[tuple[int, str, table.Row]]:
    """(tag, VR, row) of every standard attribute of the table a data set can hold."""
    out = []
    for row in table.rows():
        if "x" in row.tag or row.tag == table.PRIVATE:
            continue
        tag = row.mask[1]
        if tag >> 16 in (0x0000, 0x0002):  # command and file meta groups: not data set
            continue
        out.append((tag, dictionary_VR(tag).split(" ")[0], row))
    return out


def every_attribute() -> Dataset:
    ds = Dataset()
    for n, (tag, vr, _) in enumerate(listed()):
        if vr == "SQ":
            item = Dataset()
            item.CodeValue = "T-1"  # not in the table: kept
            item.PersonName = NAME  # (0040,A123), D in the table
            ds.add_new(tag, vr, Sequence([item]))
        elif vr == "UI":
            ds.add_new(tag, vr, f"{UID_ROOT}{n}")
        else:
            ds.add_new(tag, vr, VALUES[vr])
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def expected(row: table.Row, options: DeidentificationOptions) -> str:
    """The action from the table's columns alone: a chosen option's entry, else Basic."""
    entries = {row.options[c] for c in options.columns if c in row.options}
    assert len(entries) <= 1 or "K" in entries, f"{row.tag}: {entries}"
    action = "K" if "K" in entries else (entries.pop() if entries else row.basic)
    return COMBINED[action][1] if action in COMBINED else action  # values are non-empty


def check(tag: int, vr: str, action: str, before: Dataset, after: Dataset) -> None:
    original = before[tag].value
    if action == "X":
        assert tag not in after, "not removed"
        return
    assert tag in after, "removed"
    value = after[tag].value
    if vr == "SQ":
        if action == "Z":
            assert len(value) == 0
        else:  # K, D, C, U: the items stay, de-identified: the code kept, the name replaced
            assert len(value) == 1 and value[0].CodeValue == "T-1"
            assert str(value[0].PersonName) != NAME
    elif action == "K":
        assert value == original
    elif action == "Z":
        if tag in (0x00100010, 0x00100020, 0x00080050, 0x00200010):
            assert re.fullmatch(r"[PAS][A-Z2-7]{15}", str(value)), value  # pseudonym
        else:
            assert after[tag].is_empty
    elif action in ("D", "U"):
        assert not after[tag].is_empty and value != original
        if vr == "UI":
            assert re.fullmatch(r"2\.25\.[1-9][0-9]{0,38}", value)
    elif action == "C":
        check_clean(vr, original, value)
    else:
        raise AssertionError(f"unexpected action {action}")


def check_clean(vr: str, original: object, value: object) -> None:
    if vr == "DA":
        assert re.fullmatch(r"\d{8}", str(value)) and str(value) < str(original)
    elif vr == "DT":
        assert str(value).endswith("101010") and str(value) < str(original)
    elif vr == "AE":
        assert re.fullmatch(r"AE[A-Z2-7]{14}", str(value))
    elif vr == "UI":
        assert str(value).startswith("2.25.")
    elif vr in ("LO", "LT", "SH", "ST", "UC", "UT", "PN"):
        assert "smith" not in str(value).lower() and "***" in str(value)
    else:  # times, numbers, codes: of no identifying meaning, kept
        assert value == original


@pytest.fixture(scope="module")
def source() -> Dataset:
    return every_attribute()


def test_the_table_is_the_standards_with_its_source_cited() -> None:
    head = Path(table.TABLE).read_text(encoding="utf-8").splitlines()[:2]
    assert head[0] == "# DICOM PS3.15 2024b, Table E.1-1"
    assert "innolitics/dicom-standard" in head[1]
    with Path(table.TABLE).open(encoding="utf-8") as f:
        rows = list(csv.reader(line for line in f if not line.startswith("#")))
    assert len(rows) - 1 == len(table.rows()) == 621
    by_tag = {r.tag: r for r in table.rows()}
    assert by_tag["(0010,0010)"].basic == "Z"  # Patient's Name
    assert by_tag["(0020,000D)"].basic == "U"  # Study Instance UID
    assert by_tag["(0020,000D)"].options == {"retain_uids": "K"}
    assert by_tag["(0008,0020)"].options["retain_modified_dates"] == "C"  # Study Date
    assert by_tag[table.PRIVATE].options == {"retain_safe_private": "C"}
    assert {r.basic for r in table.rows()} == set(table.ACTIONS) - {"C", "K"}


@pytest.mark.parametrize("name", OPTION_SETS)
def test_every_listed_attribute_gets_its_action(source: Dataset, name: str) -> None:
    options = OPTION_SETS[name]
    after = Deidentifier(KEY, options).dataset(source)
    wrong = {}
    for tag, vr, row in listed():
        if tag in OWN:
            continue
        action = expected(row, options)
        try:
            check(tag, vr, action, source, after)
        except AssertionError as exc:
            wrong[f"{row.tag} {row.name} ({vr}, {action})"] = str(exc)
    assert not wrong, wrong
    assert len(listed()) > 590  # nearly every row is a plain tag


def test_the_output_of_every_attribute_encodes_and_keeps_the_source_intact(
    source: Dataset,
) -> None:
    before = encode(source)
    out = encode(Deidentifier(KEY).dataset(source))
    assert encode(source) == before  # dataset() works on a copy
    assert b"Smith" not in out and b"Smith" in before
    assert UID_ROOT.encode() not in out


def test_combined_actions_follow_the_value() -> None:
    """Z/D, X/D, X/Z/D, X/Z/U*: an empty value cannot be Type 1, so it is not dummied."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4"
    ds.ContentDate = ""  # Z/D
    ds.AcquisitionDeviceProcessingDescription = ""  # X/D
    ds.DeviceSerialNumber = ""  # X/Z/D
    ds.ReferencedImageSequence = Sequence()  # X/Z/U*
    ds.AcquisitionDate = "20240101"  # X/Z
    after = Deidentifier(KEY).dataset(ds)
    assert after["ContentDate"].is_empty
    assert "AcquisitionDeviceProcessingDescription" not in after
    assert after["DeviceSerialNumber"].is_empty
    assert len(after.ReferencedImageSequence) == 0
    assert after["AcquisitionDate"].is_empty


def test_listed_attributes_inside_sequence_items_get_their_action_too(source: Dataset) -> None:
    """E.1.1: the attributes are protected wherever they are, in items of sequences too."""
    holder = Dataset()
    holder.SOPClassUID, holder.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4"
    item = Dataset()
    item.update(source)
    holder.AnatomicRegionSequence = Sequence([item])  # a sequence the table does not list
    assert table.actions(()).for_tag(0x00082218) is None
    after = Deidentifier(KEY).dataset(holder).AnatomicRegionSequence[0]
    wrong = {}
    for tag, vr, row in listed():
        if tag in OWN:
            continue
        try:
            check(tag, vr, expected(row, DeidentificationOptions()), item, after)
        except AssertionError as exc:
            wrong[f"{row.tag} {row.name}"] = str(exc)
    assert not wrong, wrong
