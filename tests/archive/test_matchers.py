"""Every matching rule through both paths: SQL over the index, and over stored JSON.

One archive (SQLite and PostgreSQL) holds generated instances, one per patient/study/
series, with values chosen for the edge cases of each rule (partial times, fractions,
ideographic name groups, SQL LIKE characters, multi-valued attributes, missing
values, names with trailing empty components).  For each (key, value) the matcher runs

- as SQL: over the indexed column, exactly as `find` compiles it; for attributes that
  are not columns, over a side table with one row per stored value (the shape of
  Modalities in Study: EXISTS over one row per value);
- in Python: over each instance's stored DICOM JSON;

and both must select the same instances, which must be the expected ones.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import sqlalchemy as sa
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, MRImageStorage

from isthmus.archive import Archive, QueryError, query_from_keywords
from isthmus.archive import index as idx
from isthmus.archive.attributes import BY_KEYWORD, resolve_tag
from isthmus.archive.matchers import (
    DateTimeRange,
    FuzzyName,
    Matcher,
    matcher_for,
    pn_norm,
    pn_text,
)
from isthmus.archive.matching import _condition, _vr
from isthmus.testing.generate import ROOT, StudySpec, ct_instance

BASE = ROOT + "200."

# label → attributes (keyword → value; a list is a multi-valued attribute; None: absent)
DATA: dict[str, dict[str, Any]] = {
    "a": {
        "PatientName": "SMITH^JOHN",
        "StudyDate": "20200310",
        "StudyTime": "141500",
        "AccessionNumber": "ACC1",
        "Modality": "CT",
        "SeriesNumber": 1,
        "OtherPatientIDs": ["X1", "Y2"],
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "OtherPatientNames": ["DOE^JANE", "Müller^Hans"],
        "SliceThickness": "1.0",
        "AcquisitionDateTime": "20200310141500",
    },
    "b": {
        "PatientName": "smith^anna^^",  # trailing empty components (PS3.5 6.2.1.1)
        "StudyDate": "20200101",
        "StudyTime": "141559.999999",
        "AccessionNumber": "ACC%2",
        "Modality": "MR",
        "SeriesNumber": 2,
        "OtherPatientIDs": ["Y2"],
        "ImageType": ["DERIVED", "SECONDARY"],
        "SliceThickness": "2.5",
        "AcquisitionDateTime": "20200310151500+0100",
    },
    "c": {
        "PatientName": "Yamada^Tarou=山田^太郎=やまだ^たろう",
        "StudyDate": "20191231",
        "StudyTime": "1415",
        "AccessionNumber": "acc3",
        "Modality": "CT",
        "SeriesNumber": 3,
        "OtherPatientNames": ["Yamada^Tarou^^=山田^太郎^"],
        "SliceThickness": "1",
        "AcquisitionDateTime": "2020031014",
    },
    "d": {
        "PatientName": "=山田^花子^",
        "StudyDate": "20200229",
        "StudyTime": "235959.5",
        "AccessionNumber": "ACC_4",
        "Modality": "US",
        "SeriesNumber": 2,
        "ImageType": ["ORIGINAL", "SECONDARY"],
        "AcquisitionDateTime": "20191231230000-0500",
    },
    "e": {
        "PatientName": "Müller^Hans",
        "StudyDate": "19991231",
        "StudyTime": "000000",
        "AccessionNumber": "ACC5",
        "Modality": "CT",
        "SeriesNumber": 10,
        "AcquisitionDateTime": "20200101040000.5",
    },
    "f": {
        "PatientName": "DOE^JANE^^DR",
        "StudyDate": "20210101",
        "StudyTime": "120000.123456",
        "AccessionNumber": "ACC6",
        "Modality": "SR",
        "SeriesNumber": 1,
    },
    "g": {
        "PatientName": "Wang^Xiaodong==wang^xiao dong",
        "StudyDate": "20200310",
        "StudyTime": "14",
        "AccessionNumber": "ACC7",
        "Modality": "MR",
        "SeriesNumber": 7,
    },
    "h": {
        "PatientName": None,
        "StudyDate": None,
        "StudyTime": None,
        "AccessionNumber": None,
        "Modality": "OT",
        "SeriesNumber": 99,
    },
}
ALL = set(DATA)
# Attributes that are not index columns, mirrored into the side table.
SIDE = (
    "OtherPatientIDs",
    "ImageType",
    "OtherPatientNames",
    "SliceThickness",
    "AcquisitionDate",
    "AcquisitionTime",
    "InstitutionName",
)

side_metadata = sa.MetaData()
side = sa.Table(
    "matcher_values",
    side_metadata,
    sa.Column("label", sa.String(8), nullable=False),
    sa.Column("tag", sa.Integer, nullable=False),
    sa.Column("v", sa.String(256)),
    sa.Column("norm", sa.String(256)),
    sa.Column("n", sa.Float),
)


def sop_uid(label: str) -> str:
    return f"{BASE}{ord(label)}"


def dataset(label: str) -> bytes:
    spec = StudySpec(
        patient_name="X",
        patient_id=f"MPID-{label}",
        study_date="20000101",
        study_time="000000",
        accession="X",
        description=f"matchers {label}",
        rows=4,
        columns=4,
        charset="ISO_IR 192",
    )
    ds = ct_instance(spec, f"{sop_uid(label)}.1", f"{sop_uid(label)}.1.1", 1, 1)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid(label)
    if label in ("b", "g"):
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.InstitutionName = "ISTHMUS" if label < "e" else "OTHER"
    codes = {"a": [("CT1", "DCM"), ("MR1", "LN")], "b": [("CT1", "LN")], "c": [("US1", "DCM")]}
    if label in codes:
        ds.ProcedureCodeSequence = Sequence([code_item(v, s) for v, s in codes[label]])
    refs = {"a": ["1.2.3.1", "1.2.3.2"], "b": ["1.2.3.2"], "c": [None]}
    if label in refs:
        ds.ReferencedStudySequence = Sequence([reference(uid) for uid in refs[label]])
    attrs = {keyword: None for keyword in SIDE if keyword != "InstitutionName"}
    attrs.update(DATA[label])
    attrs["AcquisitionDate"] = attrs.get("StudyDate")
    attrs["AcquisitionTime"] = attrs.get("StudyTime")
    for keyword, value in attrs.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def code_item(value: str, scheme: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, value
    return item


def reference(uid: str | None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    if uid:
        item.ReferencedSOPInstanceUID = uid
    return item


@pytest.fixture(scope="module")
def stored(module_index_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    """The archive holding DATA, plus the side table of non-indexed values."""
    folder: Path = tmp_path_factory.mktemp("matchers")
    archive = Archive(module_index_url, f"file://{folder / 'blobs'}")
    try:
        for label in DATA:
            result = archive.store(dataset(label))
            assert result.status == "stored", result.reason
        rows = []
        for label, meta in metadata_by_label(archive).items():
            for keyword in SIDE:
                tag = resolve_tag(keyword)
                for value in meta.get(f"{tag:08X}", {}).get("Value", []):
                    rows.append(side_row(label, tag, _vr(tag), value))
        with archive.engine.begin() as conn:
            side_metadata.create_all(conn)
            conn.execute(side.insert(), rows)
        yield archive
    finally:
        archive.close()


def side_row(label: str, tag: int, vr: str, value: Any) -> dict[str, Any]:
    """One stored value as an index row would hold it."""
    row: dict[str, Any] = {"label": label, "tag": tag, "v": None, "norm": None, "n": None}
    if vr == "PN":
        row["v"] = pn_text(value)
        row["norm"] = pn_norm(row["v"])
    elif vr in ("DS", "FL", "FD", "IS"):
        row["n"] = float(value)
    else:
        row["v"] = str(value)
    return row


def metadata_by_label(archive: Archive) -> dict[str, dict[str, Any]]:
    with archive.engine.connect() as conn:
        rows = conn.execute(sa.select(idx.instance.c.sop_instance_uid, idx.instance.c.metadata))
        return {label_of(uid): json.loads(m) for uid, m in rows}


def label_of(uid: str) -> str:
    return chr(int(uid.rsplit(".", 1)[1]))


def by_sql(archive: Archive, keyword: str, matcher: Matcher) -> set[str]:
    attr = BY_KEYWORD.get(keyword)
    with archive.engine.connect() as conn:
        if attr is not None:
            stmt = (
                sa.select(idx.instance.c.sop_instance_uid)
                .select_from(idx.instance.join(idx.series).join(idx.study).join(idx.patient))
                .where(_condition(attr, matcher))
            )
            return {label_of(uid) for (uid,) in conn.execute(stmt)}
        tag = resolve_tag(keyword)
        column = side.c.n if _vr(tag) in ("DS", "FL", "FD", "IS") else side.c.v
        stmt = (
            sa.select(side.c.label)
            .where(side.c.tag == tag, matcher.sql(column, side.c.norm))
            .distinct()
        )
        return {label for (label,) in conn.execute(stmt)}


def by_json(archive: Archive, keyword: str, matcher: Matcher) -> set[str]:
    tag = f"{resolve_tag(keyword):08X}"
    return {
        label
        for label, meta in metadata_by_label(archive).items()
        if matcher.match(meta.get(tag, {}).get("Value", []))
    }


def both(archive: Archive, keyword: str, value: str, fuzzy: bool = False) -> set[str] | None:
    """The instances the key selects, asserting SQL and stored JSON agree (None: universal)."""
    matcher = matcher_for(keyword, _vr(resolve_tag(keyword)), value, fuzzy)
    if matcher is None:
        return None
    from_sql, from_json = by_sql(archive, keyword, matcher), by_json(archive, keyword, matcher)
    assert from_sql == from_json, f"SQL {sorted(from_sql)} != JSON {sorted(from_json)}"
    return from_sql


CASES: list[tuple[str, str, set[str] | None]] = [
    # universal (C.2.2.2.3)
    ("PatientName", "", None),
    ("PatientName", "*", None),
    ("PatientName", "=*", None),
    ("AccessionNumber", "*", None),
    ("SOPClassUID", "*", None),
    # single value and wildcard, text (C.2.2.2.1, C.2.2.2.4)
    ("AccessionNumber", "ACC1", {"a"}),
    ("AccessionNumber", "acc1", set()),
    ("AccessionNumber", "ACC?", {"a", "e", "f", "g"}),
    ("AccessionNumber", "ACC%*", {"b"}),
    ("AccessionNumber", "ACC_?", {"d"}),
    ("AccessionNumber", "ACC%", set()),
    ("AccessionNumber", "acc*", {"c"}),
    ("AccessionNumber", "**", ALL - {"h"}),
    ("AccessionNumber", "A*C?", {"a", "e", "f", "g"}),
    ("AccessionNumber", "ACC1\\ACC5", {"a", "e"}),
    ("AccessionNumber", "ACC1\\", {"a"}),  # an empty list item adds nothing
    ("AccessionNumber", "ACC1\\*", None),  # `*` in a list: universal
    ("Modality", "C?", {"a", "c", "e"}),
    ("Modality", "MR\\US", {"b", "d", "g"}),
    ("InstitutionName", "ISTHMUS", {"a", "b", "c", "d"}),
    ("InstitutionName", "OTH*", {"e", "f", "g", "h"}),
    # multi-valued stored attributes: any value matches
    ("OtherPatientIDs", "Y2", {"a", "b"}),
    ("OtherPatientIDs", "X*", {"a"}),
    ("ImageType", "SECONDARY", {"b", "d"}),
    ("ImageType", "ORIGINAL\\DERIVED", {"a", "b", "d"}),
    ("ImageType", "?RIMARY", {"a"}),
    # numbers
    ("SeriesNumber", "2", {"b", "d"}),
    ("SeriesNumber", "1\\10", {"a", "e", "f"}),
    ("SliceThickness", "1", {"a", "c"}),
    ("SliceThickness", "2.50", {"b"}),
    # UIDs (C.2.2.2.2)
    ("SOPClassUID", MRImageStorage, {"b", "g"}),
    ("SOPClassUID", f"{CTImageStorage}\\{MRImageStorage}", ALL),
    ("SOPInstanceUID", f"{sop_uid('a')}\\{sop_uid('c')}\\1.2.3", {"a", "c"}),
    # dates (C.2.2.2.1, C.2.2.2.5)
    ("StudyDate", "20200310", {"a", "g"}),
    ("StudyDate", "20200101-", {"a", "b", "d", "f", "g"}),
    ("StudyDate", "-20191231", {"c", "e"}),
    ("StudyDate", "20200101-20200229", {"b", "d"}),
    ("StudyDate", "20200310\\19991231", {"a", "e", "g"}),
    ("AcquisitionDate", "20200101-20200310", {"a", "b", "d", "g"}),
    # times: a value is the interval of its precision; stored partial times too
    ("StudyTime", "1415", {"a", "b", "c"}),
    ("StudyTime", "14", {"a", "b", "c", "g"}),
    ("StudyTime", "141500", {"a", "c"}),
    ("StudyTime", "141559", {"b"}),
    ("StudyTime", "120000.1", {"f"}),
    ("StudyTime", "120000.12345", {"f"}),
    ("StudyTime", "120000.2", set()),
    ("StudyTime", "-0000", {"e"}),
    ("StudyTime", "2359-", {"d"}),
    ("StudyTime", "235959.5-", {"d"}),
    ("StudyTime", "1200-1415", {"a", "b", "c", "f", "g"}),
    ("StudyTime", "141500-141530", {"a", "c"}),
    ("AcquisitionTime", "1200-1415", {"a", "b", "c", "f", "g"}),
    ("AcquisitionTime", "1415", {"a", "b", "c"}),
    # person names: case-insensitive alphabetic group, groups matched in place
    ("PatientName", "SMITH^JOHN", {"a"}),
    ("PatientName", "smith*", {"a", "b"}),
    ("PatientName", "SM?TH^*", {"a", "b"}),
    ("PatientName", "*^JOHN", {"a"}),
    ("PatientName", "müller^hans", {"e"}),
    ("PatientName", "MULLER*", set()),
    ("PatientName", "Yamada^Tarou=山田^太郎=やまだ^たろう", {"c"}),
    ("PatientName", "yamada*=山田*", {"c"}),
    ("PatientName", "=山田*", {"c", "d"}),
    ("PatientName", "=山田^花子", {"d"}),
    ("PatientName", "*=山田^花子", {"d"}),
    ("PatientName", "==やまだ*", {"c"}),
    ("PatientName", "=やまだ^たろう", set()),
    ("PatientName", "==wang*", {"g"}),
    ("PatientName", "=?*", {"c", "d"}),
    ("PatientName", "wang*=", {"g"}),
    ("PatientName", "*=*=?*", {"c", "g"}),
    ("PatientName", "SMITH*=山田*", set()),
    ("PatientName", "SMITH^JOHN\\DOE*", {"a", "f"}),
    # trailing empty components and groups may be omitted (PS3.5 6.2.1.1, 6.2.1.2):
    # on either side the name is the same
    ("PatientName", "SMITH^JOHN^^^", {"a"}),
    ("PatientName", "SMITH^JOHN==", {"a"}),
    ("PatientName", "SMITH^JOHN^^^=^=", {"a"}),
    ("PatientName", "smith^anna", {"b"}),
    ("PatientName", "SMITH^ANNA^", {"b"}),
    ("PatientName", "SMITH", set()),
    ("PatientName", "SMITH^", set()),
    ("PatientName", "DOE^JANE", set()),  # an empty middle name is not trailing
    ("PatientName", "DOE^JANE^^DR^", {"f"}),
    ("PatientName", "=山田^花子", {"d"}),
    ("PatientName", "=山田^花子^^", {"d"}),
    ("PatientName", "^", None),  # the empty name: universal
    ("PatientName", "*^", None),
    # wildcards: `*` after empty components may stand for none (SMITH^* finds SMITH)
    ("PatientName", "SMITH^J*", {"a"}),
    ("PatientName", "SMITH^*", {"a", "b"}),
    ("PatientName", "SMITH^ANNA^*", {"b"}),
    ("PatientName", "müller^hans^*", {"e"}),
    ("PatientName", "müller^hans^^*", {"e"}),
    ("PatientName", "MÜLLER^*^", {"e"}),
    ("PatientName", "müller^hans^?*", set()),
    ("PatientName", "DOE^JANE^*", {"f"}),
    ("PatientName", "DOE^JANE^^*", {"f"}),
    ("PatientName", "DOE^JANE^^^*", set()),
    ("PatientName", "=山田^花子^*", {"d"}),
    ("PatientName", "*=山田^花子^*", {"d"}),
    ("OtherPatientNames", "DOE^JANE", {"a"}),
    ("OtherPatientNames", "müller*", {"a"}),
    ("OtherPatientNames", "=山田^太郎", {"c"}),
    ("OtherPatientNames", "Yamada^Tarou=山田^太郎^^", {"c"}),
    ("OtherPatientNames", "yamada^tarou^*=山田^*", {"c"}),
]


@pytest.mark.parametrize("keyword, value, expected", CASES)
def test_sql_and_stored_json_select_the_same_instances(
    stored: Archive, keyword: str, value: str, expected: set[str] | None
) -> None:
    assert both(stored, keyword, value) == expected


@pytest.mark.parametrize(
    "keyword, value, expected",
    [
        ("PatientName", "john", {"a"}),
        ("PatientName", "jan dr", {"f"}),
        ("PatientName", "DR^JANE", {"f"}),
        ("PatientName", "sm", {"a", "b"}),
        ("PatientName", "hans", {"e"}),
        ("PatientName", "tarou", {"c"}),
        ("PatientName", "xiao", {"g"}),
        ("PatientName", "ohn", set()),
        ("PatientName", "%", set()),
        ("OtherPatientNames", "hans", {"a"}),
        # a wildcard or a component group turns fuzzy matching off
        ("PatientName", "sm*", {"a", "b"}),
        ("PatientName", "=山田*", {"c", "d"}),
    ],
)
def test_fuzzy_names_agree_on_both_paths(
    stored: Archive, keyword: str, value: str, expected: set[str]
) -> None:
    assert both(stored, keyword, value, fuzzy=True) == expected


def test_fuzzy_matching_is_a_word_prefix_rule_only_without_wildcards() -> None:
    assert isinstance(matcher_for("PatientName", "PN", "smi jo", fuzzy=True), FuzzyName)
    assert not isinstance(matcher_for("PatientName", "PN", "smi*", fuzzy=True), FuzzyName)
    assert not isinstance(matcher_for("PatientName", "PN", "smi", fuzzy=False), FuzzyName)


# ------------------------------------------------------------------------ DT
@pytest.mark.parametrize(
    "value, expected",
    [
        ("20200310141500", {"a", "b"}),  # b is 15:15 at UTC+1, the same instant
        ("20200310141500+0000", {"a", "b"}),
        ("20200310151500+0100", {"a", "b"}),
        ("2020031014", {"a", "b", "c"}),
        ("202003", {"a", "b", "c"}),
        ("2020", {"a", "b", "c", "d", "e"}),  # d: 23:00 at UTC-5 is 2020-01-01 04:00 UTC
        ("20200101040000", {"d", "e"}),  # the whole second: e is 04:00:00.5
        ("20200101040000.5", {"e"}),
        ("20200101-20200102", {"d", "e"}),
        ("-2019", set()),
        ("20200310140000-", {"a", "b", "c"}),
        ("20200101-0500", set()),  # one value with an offset, not a range
        ("20191231230000-0500", {"d", "e"}),  # = 2020-01-01 04:00:00 UTC
        ("2019-2020", {"a", "b", "c", "d", "e"}),
    ],
)
def test_datetime_matching_compares_instants_with_offsets(
    stored: Archive, value: str, expected: set[str]
) -> None:
    matcher = matcher_for("AcquisitionDateTime", "DT", value)
    assert isinstance(matcher, DateTimeRange) and not matcher.indexable
    assert by_json(stored, "AcquisitionDateTime", matcher) == expected


# ------------------------------------------------------------- invalid values
@pytest.mark.parametrize(
    "vr, value",
    [
        ("DA", "20200230"),
        ("DA", "2020-01-01"),
        ("DA", "20201301"),
        ("DA", "2020*"),
        ("DA", "-"),
        ("DA", "20201231-20200101"),
        ("TM", "2400"),
        ("TM", "1260"),
        ("TM", "12:00"),
        ("TM", "1200.5"),
        ("TM", "120000."),
        ("TM", "1300-1200"),
        ("TM", "12*"),
        ("DT", "2020013"),
        ("DT", "20201301"),
        ("DT", "20200101+1500"),
        ("DT", "2021-2020"),
        ("DT", "20200101*"),
        ("UI", "1.2.*"),
        ("UI", "abc"),
        ("UI", "1.2.3\\x"),
        ("IS", "two"),
        ("IS", "2*"),
        ("DS", "1.0?"),
        ("PN", "a=b=c=d"),
        ("OB", "00"),
    ],
)
def test_invalid_values_are_query_errors(vr: str, value: str) -> None:
    with pytest.raises(QueryError, match="Key"):
        matcher_for("Key", vr, value)


@pytest.mark.parametrize(
    "keyword, value",
    [
        ("StudyDate", "20200230"),  # indexed: SQL path
        ("AcquisitionDate", "20200230"),  # not indexed: stored JSON path
        ("StudyTime", "1260"),
        ("AcquisitionTime", "1260"),
        ("SOPClassUID", "1.2.*"),
        ("ReferencedSOPClassUIDInFile", "1.2.*"),
        ("AcquisitionDateTime", "2020-2019"),
    ],
)
def test_invalid_values_fail_the_same_way_on_both_paths(
    stored: Archive, keyword: str, value: str
) -> None:
    with pytest.raises(QueryError, match=keyword):
        stored.find(query_from_keywords("IMAGE", {keyword: value}))


def test_find_matches_non_indexed_keys_like_the_index(stored: Archive) -> None:
    """The same rule through `find`: an indexed key and its non-indexed twin."""

    def labels(keys: dict[str, str]) -> set[str]:
        query = query_from_keywords("IMAGE", {"SOPInstanceUID": "", **keys})
        found = stored.find(query).matches
        return {label_of(m["00080018"]["Value"][0]) for m in found}

    for value in ("1415", "14", "1200-1415", "120000.1"):
        assert labels({"StudyTime": value}) == labels({"AcquisitionTime": value}), value
    for value in ("20200310", "20200101-", "-20191231"):
        assert labels({"StudyDate": value}) == labels({"AcquisitionDate": value}), value


# --------------------------------------------------------------- sequences
def image_labels(archive: Archive, keys: dict[str, str]) -> set[str]:
    query = query_from_keywords("IMAGE", {"SOPInstanceUID": "", **keys})
    return {label_of(m["00080018"]["Value"][0]) for m in archive.find(query).matches}


@pytest.mark.parametrize(
    "keys, expected",
    [
        ({"ProcedureCodeSequence.CodeValue": "CT1"}, {"a", "b"}),
        ({"ProcedureCodeSequence.CodeValue": "MR*"}, {"a"}),
        ({"ProcedureCodeSequence.CodeValue": "CT1\\US1"}, {"a", "b", "c"}),
        # every key of the item must hold in one stored item, not across items
        (
            {"ProcedureCodeSequence.CodeValue": "CT1", "00081032.00080102": "LN"},
            {"b"},
        ),
        (
            {"ProcedureCodeSequence.CodeValue": "MR1", "00081032.00080102": "LN"},
            {"a"},
        ),
        ({"ProcedureCodeSequence.CodeValue": ""}, ALL),  # universal item key
        ({"ReferencedStudySequence.ReferencedSOPInstanceUID": "1.2.3.2"}, {"a", "b"}),
        ({"ReferencedStudySequence.ReferencedSOPInstanceUID": "1.2.3.1\\1.2.3.9"}, {"a"}),
        ({"ReferencedStudySequence.ReferencedSOPInstanceUID": "1.2.3.9"}, set()),
        (
            {
                "ReferencedStudySequence.ReferencedSOPInstanceUID": "1.2.3.2",
                "ProcedureCodeSequence.CodeValue": "CT1",
                "StudyTime": "1415",
            },
            {"a", "b"},
        ),
    ],
)
def test_sequence_matching_needs_one_item_matching_every_item_key(
    stored: Archive, keys: dict[str, str], expected: set[str]
) -> None:
    assert image_labels(stored, keys) == expected


def test_sequence_key_returns_the_stored_items(stored: Archive) -> None:
    query = query_from_keywords(
        "IMAGE", {"SOPInstanceUID": sop_uid("b"), "ProcedureCodeSequence.CodeValue": "CT1"}
    )
    [match] = stored.find(query).matches
    [item] = match["00081032"]["Value"]
    assert item["00080100"]["Value"] == ["CT1"]
    assert item["00080102"]["Value"] == ["LN"]


@pytest.mark.parametrize(
    "name, value",
    [
        ("ReferencedStudySequence.ReferencedSOPInstanceUID", "1.2.*"),
        ("PatientName.PatientID", "x"),  # not a sequence
        ("ProcedureCodeSequence.ConceptCodeSequence.CodeValue", "x"),  # two levels
    ],
)
def test_invalid_sequence_keys_are_query_errors(stored: Archive, name: str, value: str) -> None:
    with pytest.raises(QueryError):
        image_labels(stored, {name: value})
