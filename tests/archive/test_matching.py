"""The matching engine (PS3.4 C.2.2.2), on the query catalogue, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from isthmus.archive import Archive, Query, QueryError, matching, query_from_keywords
from isthmus.archive.matchers import _time_lower, _time_upper
from isthmus.testing import catalogue
from isthmus.testing.catalogue import series_uid, sop_uid, study_uid

STUDY_UID, SERIES_UID, SOP_UID = 0x0020000D, 0x0020000E, 0x00080018
PATIENT_ID, PATIENT_NAME = 0x00100020, 0x00100010


def studies(archive: Archive, fuzzy: bool = False, **keys: str) -> set[str]:
    """Catalogue keys of the studies a STUDY level query matches."""
    query = query_from_keywords("STUDY", {"StudyInstanceUID": "", **keys}, fuzzy=fuzzy)
    return {catalogue.key_of(m["0020000D"]["Value"][0]) for m in archive.find(query).matches}


def values(match: dict[str, Any], tag: str) -> list[Any]:
    return match.get(tag, {}).get("Value", [])


ALL = {e.key for e in catalogue.ENTRIES}


# ------------------------------------------------------------- single value, universal
@pytest.mark.parametrize(
    "keys, expected",
    [
        ({}, ALL),
        ({"PatientID": "PID0001"}, {"A", "B"}),
        ({"PatientID": ""}, ALL),
        ({"PatientID": "*"}, ALL),
        ({"AccessionNumber": "ACC3"}, {"C"}),
        ({"AccessionNumber": "acc3"}, set()),  # only PN ignores case
        ({"PatientID": "PID0001", "AccessionNumber": "ACC2"}, {"B"}),  # keys combine with AND
        ({"StudyDescription": "CT"}, set()),  # single value means the whole value
    ],
)
def test_single_value_and_universal_matching(
    catalogue_archive: Archive, keys: dict, expected: set[str]
) -> None:
    assert studies(catalogue_archive, **keys) == expected


# ----------------------------------------------------------------------- wildcard
@pytest.mark.parametrize(
    "keys, expected",
    [
        ({"StudyDescription": "CT*"}, {"A", "C", "D", "F"}),
        ({"StudyDescription": "*ABDOMEN"}, {"D", "E"}),
        ({"AccessionNumber": "ACC?"}, {"A", "B", "C", "D", "E"}),
        ({"AccessionNumber": "A*C?"}, {"A", "B", "C", "D", "E"}),
        ({"AccessionNumber": "ACC%6"}, {"F"}),  # SQL LIKE characters are literal
        ({"AccessionNumber": "ACC%"}, set()),
        ({"AccessionNumber": "ACC_"}, set()),
        ({"AccessionNumber": "ACC%*"}, {"F"}),
    ],
)
def test_wildcard_matching_with_star_and_question_mark(
    catalogue_archive: Archive, keys: dict, expected: set[str]
) -> None:
    assert studies(catalogue_archive, **keys) == expected


# -------------------------------------------------------------------- person names
@pytest.mark.parametrize(
    "name, expected",
    [
        ("SMITH^JOHN", {"A", "B"}),
        ("smith^john", {"A", "B"}),
        ("smith*", {"A", "B", "C"}),
        ("SM?TH^*", {"A", "B", "C"}),
        ("SM?TH*", {"A", "B", "C", "F"}),
        ("*john", {"A", "B", "F"}),
        ("john", set()),
    ],
)
def test_person_names_match_case_insensitively(
    catalogue_archive: Archive, name: str, expected: set[str]
) -> None:
    assert studies(catalogue_archive, PatientName=name) == expected


@pytest.mark.parametrize(
    "name, expected",
    [
        ("john", {"A", "B", "F"}),
        ("smi", {"A", "B", "C"}),
        ("sm john", {"A", "B", "F"}),
        ("anna", {"C"}),
    ],
)
def test_fuzzy_matching_finds_names_by_the_start_of_any_component(
    catalogue_archive: Archive, name: str, expected: set[str]
) -> None:
    assert studies(catalogue_archive, fuzzy=True, PatientName=name) == expected


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Yamada^Tarou=山田^太郎=やまだ^たろう", {"E"}),
        ("YAMADA^TAROU", {"E"}),
        ("*=山田^太郎*", {"E"}),
        ("=山田^太郎", {"E"}),
        ("==やまだ*", {"E"}),
        ("yamada*=山田*=*", {"E"}),
        ("=やまだ^たろう", set()),  # the phonetic group is not the ideographic one
        ("Yamada^Tarou=鈴木^一郎", set()),  # every group given must match
        ("SMITH*=山田*", set()),
    ],
)
def test_person_names_with_ideographic_and_phonetic_groups_match_group_by_group(
    catalogue_archive: Archive, name: str, expected: set[str]
) -> None:
    assert studies(catalogue_archive, PatientName=name) == expected


def test_person_name_is_returned_with_all_its_component_groups(catalogue_archive: Archive) -> None:
    found = catalogue_archive.find(
        query_from_keywords("PATIENT", {"PatientID": "PID0004", "PatientName": ""})
    )
    assert [values(m, "00100010") for m in found.matches] == [
        [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}]
    ]


# ------------------------------------------------------------------ date and time
@pytest.mark.parametrize(
    "value, expected",
    [
        ("20200310", {"B"}),
        ("20200101-", {"B", "C", "D", "E"}),
        ("-20201231", {"A", "B", "C", "E", "F"}),
        ("20200101-20201231", {"B", "C", "E"}),
        ("20200310-20200310", {"B"}),
        ("20220101-", set()),
    ],
)
def test_date_single_value_and_range_matching(
    catalogue_archive: Archive, value: str, expected: set[str]
) -> None:
    assert studies(catalogue_archive, StudyDate=value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("0800-0900", {"A"}),
        ("1415", {"B"}),  # a partial time is the whole minute it names
        ("14", {"B"}),
        ("235959", {"C"}),
        ("-0830", {"A", "D"}),
        ("2300-", {"C"}),
        ("120000-141500", {"B", "E"}),
    ],
)
def test_time_single_value_and_range_matching(
    catalogue_archive: Archive, value: str, expected: set[str]
) -> None:
    assert studies(catalogue_archive, StudyTime=value) == expected


@pytest.mark.parametrize(
    "keyword, value",
    [
        ("StudyDate", "20201231-20200101"),  # ends before it starts
        ("StudyDate", "2020-01-01"),
        ("StudyDate", "-"),
        ("StudyDate", "20201301"),
        ("StudyDate", "yesterday"),
        ("StudyTime", "2500"),
        ("StudyTime", "12:00"),
        ("StudyTime", "1200-1100"),
    ],
)
def test_invalid_dates_times_and_ranges_are_query_errors(
    catalogue_archive: Archive, keyword: str, value: str
) -> None:
    with pytest.raises(QueryError, match=keyword):
        studies(catalogue_archive, **{keyword: value})


def test_time_bounds_stretch_a_partial_time_to_the_moments_it_denotes() -> None:
    assert _time_lower("14") == "14"
    assert _time_lower("140000") == "14"
    assert _time_upper("14") == "145959.999999"
    assert _time_upper("1415") == "141559.999999"
    assert (_time_lower("141500.5"), _time_upper("141500.5")) == ("141500.5", "141500.599999")
    assert _time_lower("141500.50") == "141500.5"


# ------------------------------------------------------------------- UID lists, numbers
def test_list_of_uids_matches_any_of_them(catalogue_archive: Archive) -> None:
    uids = "\\".join([study_uid("A"), study_uid("C"), "1.2.3.999"])
    assert studies(catalogue_archive, StudyInstanceUID=uids) == {"A", "C"}


def test_image_level_list_of_sop_instance_uids(catalogue_archive: Archive) -> None:
    wanted = [sop_uid("A", 1, 1), sop_uid("A", 2, 2)]
    query = query_from_keywords(
        "IMAGE", {"SOPInstanceUID": "\\".join(wanted), "InstanceNumber": ""}
    )
    found = catalogue_archive.find(query).matches
    assert sorted(values(m, "00080018")[0] for m in found) == sorted(wanted)
    assert sorted(values(m, "00200013")[0] for m in found) == [1, 2]


def test_integer_keys_match_numerically(catalogue_archive: Archive) -> None:
    query = query_from_keywords("SERIES", {"SeriesNumber": "2", "SeriesInstanceUID": ""})
    found = {values(m, "0020000E")[0] for m in catalogue_archive.find(query).matches}
    assert found == {series_uid("A", 2), series_uid("D", 2)}


def test_integer_key_with_text_is_a_query_error(catalogue_archive: Archive) -> None:
    with pytest.raises(QueryError, match="SeriesNumber"):
        catalogue_archive.find(query_from_keywords("SERIES", {"SeriesNumber": "two"}))


# -------------------------------------------------------------- non-indexed attributes
def test_keys_not_indexed_are_matched_from_stored_metadata(catalogue_archive: Archive) -> None:
    assert studies(catalogue_archive, InstitutionName="OTHER*") == {"D"}
    assert studies(catalogue_archive, InstitutionName="other hospital") == set()
    assert studies(catalogue_archive, InstitutionName="ISTHMUS GENERAL") == ALL - {"D"}


def test_keys_not_indexed_are_returned_from_stored_metadata(catalogue_archive: Archive) -> None:
    keys = {"SeriesInstanceUID": series_uid("D", 1), "InstitutionName": "", "SliceThickness": ""}
    [match] = catalogue_archive.find(query_from_keywords("IMAGE", keys)).matches
    assert values(match, "00080080") == ["OTHER HOSPITAL"]
    assert values(match, "00180050") == [1.0]


@pytest.mark.parametrize("level", ["STUDY", "SERIES"])
def test_keys_not_indexed_are_returned_only_at_their_level(
    catalogue_archive: Archive, level: str
) -> None:
    """PS3.18 10.6.3.3, PS3.4 C.6.2.1: Slice Thickness (Image Plane module) is of the
    instance level, Institution Name (General Equipment) of the series level; neither
    is taken from the first instance of a study, nor the first of a series."""
    keys = {"AccessionNumber": "ACC4", "InstitutionName": "", "SliceThickness": ""}
    matches = catalogue_archive.find(query_from_keywords(level, keys)).matches
    assert matches and all("00180050" not in m for m in matches)
    assert all(("00080080" in m) == (level == "SERIES") for m in matches)


def test_requested_key_absent_everywhere_is_returned_empty(catalogue_archive: Archive) -> None:
    query = query_from_keywords("STUDY", {"AccessionNumber": "ACC1", "OtherPatientIDs": ""})
    [match] = catalogue_archive.find(query).matches
    assert match["00101000"] == {"vr": "LO"}


def test_requested_private_creator_absent_is_returned_empty_as_lo(
    catalogue_archive: Archive,
) -> None:
    """A private creator is LO (PS3.5 7.8.1), not UN, also when the entity lacks it."""
    query = Query(
        "STUDY", {STUDY_UID: study_uid("A"), 0x00090010: "", 0x00091001: ""}, root="STUDY"
    )
    [match] = catalogue_archive.find(query).matches
    assert (match["00090010"], match["00091001"]) == ({"vr": "LO"}, {"vr": "UN"})


def test_keys_below_the_query_level_are_ignored(catalogue_archive: Archive) -> None:
    query = query_from_keywords("STUDY", {"StudyInstanceUID": "", "SeriesDescription": "nothing"})
    found = catalogue_archive.find(query).matches
    assert len(found) == len(ALL)
    assert all("0008103E" not in m for m in found)


# ----------------------------------------------------------------- computed attributes
def test_modalities_in_study_matches_any_series_modality(catalogue_archive: Archive) -> None:
    assert studies(catalogue_archive, ModalitiesInStudy="MR") == {"B"}
    assert studies(catalogue_archive, ModalitiesInStudy="SR") == {"D"}
    assert studies(catalogue_archive, ModalitiesInStudy="MR\\US") == {"B", "E"}


def test_study_level_counts_and_modalities_are_returned(catalogue_archive: Archive) -> None:
    query = query_from_keywords(
        "STUDY",
        {
            "StudyInstanceUID": study_uid("D"),
            "ModalitiesInStudy": "",
            "NumberOfStudyRelatedSeries": "",
            "NumberOfStudyRelatedInstances": "",
        },
    )
    [match] = catalogue_archive.find(query).matches
    assert values(match, "00080061") == ["CT", "SR"]
    assert values(match, "00201206") == [2]
    assert values(match, "00201208") == [2]


def test_a_study_s_computed_attributes_come_in_one_statement_after_the_match(
    catalogue_archive: Archive,
) -> None:
    """Counts, Modalities and SOP Classes in Study together: one statement besides the
    match (on PostgreSQL each is a round trip), each value list sorted."""
    query = query_from_keywords(
        "STUDY",
        {
            "StudyInstanceUID": study_uid("D"),
            "ModalitiesInStudy": "",
            "SOPClassesInStudy": "",
            "NumberOfStudyRelatedSeries": "",
            "NumberOfStudyRelatedInstances": "",
        },
    )
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    sa.event.listen(catalogue_archive.engine, "before_cursor_execute", seen)
    try:
        [match] = catalogue_archive.find(query).matches
    finally:
        sa.event.remove(catalogue_archive.engine, "before_cursor_execute", seen)
    assert len(statements) == 2
    assert values(match, "00080061") == ["CT", "SR"]
    classes = values(match, "00080062")
    assert "1.2.840.10008.5.1.4.1.1.2" in classes and classes == sorted(set(classes))
    assert (values(match, "00201206"), values(match, "00201208")) == ([2], [2])


def test_patient_level_counts(catalogue_archive: Archive) -> None:
    query = query_from_keywords(
        "PATIENT",
        {
            "PatientName": "smith*",
            "PatientID": "",
            "NumberOfPatientRelatedStudies": "",
            "NumberOfPatientRelatedSeries": "",
            "NumberOfPatientRelatedInstances": "",
        },
    )
    found = {values(m, "00100020")[0]: m for m in catalogue_archive.find(query).matches}
    assert sorted(found) == ["PID0001", "PID0002"]
    john = found["PID0001"]
    assert (values(john, "00201200"), values(john, "00201202"), values(john, "00201204")) == (
        [2],
        [3],
        [catalogue.instance_count("A") + catalogue.instance_count("B")],
    )


def test_series_level_count_of_instances(catalogue_archive: Archive) -> None:
    query = query_from_keywords(
        "SERIES",
        {
            "StudyInstanceUID": study_uid("A"),
            "Modality": "CT",
            "SeriesInstanceUID": "",
            "NumberOfSeriesRelatedInstances": "",
        },
    )
    found = catalogue_archive.find(query).matches
    assert sorted(values(m, "0020000E")[0] for m in found) == [
        series_uid("A", 1),
        series_uid("A", 2),
    ]
    assert [values(m, "00201209") for m in found] == [[2], [2]]


# ------------------------------------------------------------------ paging, include_all
def test_limit_offset_and_truncated_page_through_every_match(catalogue_archive: Archive) -> None:
    seen: list[str] = []
    offset = 0
    while True:
        query = query_from_keywords("STUDY", {"StudyInstanceUID": ""}, limit=4, offset=offset)
        result = catalogue_archive.find(query)
        seen += [values(m, "0020000D")[0] for m in result.matches]
        offset += 4
        if not result.truncated:
            break
        assert len(result.matches) == 4
    assert sorted(seen) == sorted(study_uid(k) for k in ALL)


def test_limit_and_offset_apply_after_matching_non_indexed_keys(catalogue_archive: Archive) -> None:
    def page(offset: int) -> tuple[list[str], bool]:
        query = query_from_keywords(
            "STUDY", {"StudyInstanceUID": "", "InstitutionName": "ISTHMUS*"}, limit=3, offset=offset
        )
        result = catalogue_archive.find(query)
        return [values(m, "0020000D")[0] for m in result.matches], result.truncated

    first, more = page(0)
    second, after = page(3)
    assert (len(first), more, len(second), after) == (3, True, 2, False)
    assert {catalogue.key_of(u) for u in first + second} == ALL - {"D"}


def test_include_all_returns_every_stored_attribute_but_bulk_data(
    catalogue_archive: Archive,
) -> None:
    query = Query(level="IMAGE", keys={STUDY_UID: study_uid("C")}, include_all=True)
    match = catalogue_archive.find(query).matches[0]
    assert values(match, "00080080") == ["ISTHMUS GENERAL"]
    assert values(match, "00100010") == [{"Alphabetic": "Smith^Anna"}]
    assert "7FE00010" not in match
    assert not [k for k, v in match.items() if "BulkDataURI" in v or "InlineBinary" in v]


def test_include_defaults_returns_the_level_attributes(catalogue_archive: Archive) -> None:
    query = Query(level="STUDY", keys={STUDY_UID: study_uid("B")}, include_defaults=True)
    [match] = catalogue_archive.find(query).matches
    assert values(match, "00080020") == ["20200310"]
    assert values(match, "00100020") == ["PID0001"]
    assert values(match, "00080061") == ["MR"]
    assert values(match, "00201208") == [1]


# --------------------------------------------------------------- hierarchical checks
@pytest.mark.parametrize(
    "level, root, keys",
    [
        ("SERIES", "STUDY", {SERIES_UID: ""}),
        ("SERIES", "STUDY", {STUDY_UID: "1.2.*", SERIES_UID: ""}),
        ("IMAGE", "STUDY", {STUDY_UID: "1.2.3", SOP_UID: ""}),
        ("STUDY", "PATIENT", {STUDY_UID: ""}),
        ("IMAGE", "PATIENT", {STUDY_UID: "1.2.3", SERIES_UID: "1.2.3.4", SOP_UID: ""}),
        ("PATIENT", "STUDY", {PATIENT_ID: ""}),
    ],
)
def test_hierarchical_query_without_unique_keys_above_is_refused(
    catalogue_archive: Archive, level: str, root: str, keys: dict[int, str]
) -> None:
    with pytest.raises(QueryError):
        catalogue_archive.find(Query(level=level, keys=keys, root=root, hierarchical=True))


def test_hierarchical_query_with_unique_keys_above_runs(catalogue_archive: Archive) -> None:
    query = Query(
        level="IMAGE",
        root="PATIENT",
        hierarchical=True,
        keys={
            PATIENT_ID: "PID0001",
            STUDY_UID: study_uid("A"),
            SERIES_UID: series_uid("A", 2),
            SOP_UID: "",
        },
    )
    found = catalogue_archive.find(query).matches
    assert sorted(values(m, "00080018")[0] for m in found) == [
        sop_uid("A", 2, 1),
        sop_uid("A", 2, 2),
    ]


def test_unknown_level_and_unknown_keyword_are_query_errors(catalogue_archive: Archive) -> None:
    with pytest.raises(QueryError):
        catalogue_archive.find(Query(level="FRAME"))
    with pytest.raises(QueryError, match="NoSuchKeyword"):
        query_from_keywords("STUDY", {"NoSuchKeyword": "1"})


def test_keys_may_be_given_as_tags(catalogue_archive: Archive) -> None:
    query = query_from_keywords("STUDY", {"00100020": "PID0003", "(0020,000D)": ""})
    assert [values(m, "0020000D") for m in catalogue_archive.find(query).matches] == [
        [study_uid("D")]
    ]


# ------------------------------------------------- single values, fixed-shape statement
@pytest.mark.parametrize(
    "level, keys, limit, offset, fixed_shape",
    [
        ("STUDY", {"AccessionNumber": "ACC3"}, None, 0, True),
        ("STUDY", {"PatientID": "PID0001", "AccessionNumber": "ACC2"}, 10, 0, True),
        ("SERIES", {"StudyInstanceUID": study_uid("D")}, 1000, 0, True),
        ("SERIES", {"StudyInstanceUID": study_uid("D")}, 1, 1, True),  # truncated, past an offset
        ("IMAGE", {"SeriesInstanceUID": series_uid("D", 1)}, 2, 0, True),
        (
            "IMAGE",
            {"StudyInstanceUID": study_uid("A"), "SOPInstanceUID": sop_uid("A", 1, 1)},
            None,
            0,
            True,
        ),
        ("STUDY", {"AccessionNumber": "NONE"}, 5, 0, True),
        ("STUDY", {"PatientName": "smith*"}, 100, 0, True),  # upper-cased, on the _norm column
        ("STUDY", {"PatientName": "smith^john"}, 100, 0, True),
        ("STUDY", {"PatientName": "SM?TH*", "StudyDescription": "CT*"}, 100, 0, True),
        ("STUDY", {"StudyDescription": "*ABDOMEN"}, 100, 0, True),
        ("STUDY", {"StudyDescription": "C_*"}, 100, 0, True),  # "_" is literal, escaped
        ("STUDY", {"PatientName": "Yamada^Tarou=山田^太郎=やまだ^たろう"}, 100, 0, False),
        ("STUDY", {"PatientName": "smith*", "StudyDate": "20000101-20301231"}, 100, 0, False),
    ],
)
def test_a_query_of_single_values_answers_as_the_general_statement_does(
    catalogue_archive: Archive,
    monkeypatch: pytest.MonkeyPatch,
    level: str,
    keys: dict[str, str],
    limit: int | None,
    offset: int,
    fixed_shape: bool,
) -> None:
    """Keys that are each one comparison of a column with one value (a UID, a text or
    name with or without wildcards) run as a statement of fixed shape
    (matching._match_by_values); the answer is the one the general path gives.  Names
    with other component groups, and ranges, take the general path."""
    query = query_from_keywords(level, keys)
    query.include_defaults, query.limit, query.offset = True, limit, offset
    taken: list[bool] = []
    prepared = matching._match_by_values

    def spied(*args: Any) -> Any:
        rows = prepared(*args)
        taken.append(rows is not None)
        return rows

    monkeypatch.setattr(matching, "_match_by_values", spied)
    fixed = catalogue_archive.find(query)
    monkeypatch.setattr(matching, "_match_by_values", lambda *args: None)
    general = catalogue_archive.find(query)
    assert taken == ([True] if fixed_shape else [False] * len(taken))
    assert (fixed.matches, fixed.truncated) == (general.matches, general.truncated)
