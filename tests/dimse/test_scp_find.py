"""C-FIND from DCMTK findscu and pynetdicom, Patient Root and Study Root, every level,
over the query catalogue, on SQLite and PostgreSQL."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from isthmus.dimse import scu
from isthmus.server import Node
from isthmus.testing.catalogue import key_of, series_uid, sop_uid, study_uid
from isthmus.testing.generate import StudySpec, study

from .support import findscu, peer

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def keys_of(responses: list[Dataset]) -> set[str]:
    return {key_of(str(r.StudyInstanceUID)) for r in responses}


# ------------------------------------------------------------------- Study Root, STUDY
@pytest.mark.parametrize(
    "match, expected",
    [
        ("PatientName=smith*", {"A", "B", "C"}),  # PN: case-insensitive
        ("PatientName=SMITH^JOHN", {"A", "B"}),
        ("AccessionNumber=ACC?", {"A", "B", "C", "D", "E"}),  # wildcard ?
        ("StudyDescription=*ABDOMEN", {"D", "E"}),  # wildcard *
        ("StudyDate=20200101-", {"B", "C", "D", "E"}),  # open-ended ranges and A-B
        ("StudyDate=-20201231", {"A", "B", "C", "E", "F"}),
        ("StudyDate=20200101-20201231", {"B", "C", "E"}),
        ("StudyTime=0800-0900", {"A"}),
        (f"StudyInstanceUID={study_uid('A')}\\{study_uid('F')}", {"A", "F"}),  # list of UIDs
        ("ModalitiesInStudy=MR", {"B"}),
        ("InstitutionName=OTHER*", {"D"}),  # not an indexed column
    ],
)
def test_findscu_study_level_matching(
    dcmtk_tools: None, catalogue_node: Node, tmp_path: Path, match: str, expected: set[str]
) -> None:
    keys = [match] if match.startswith("StudyInstanceUID=") else [match, "StudyInstanceUID"]
    responses, _ = findscu(catalogue_node, tmp_path, "STUDY", *keys)
    assert keys_of(responses) == expected
    assert all(r.QueryRetrieveLevel == "STUDY" for r in responses)
    assert all(r.RetrieveAETitle == catalogue_node.settings.aet for r in responses)


def test_findscu_returns_requested_keys_including_non_indexed_ones(
    dcmtk_tools: None, catalogue_node: Node, tmp_path: Path
) -> None:
    responses, _ = findscu(
        catalogue_node,
        tmp_path,
        "STUDY",
        "AccessionNumber=ACC4",
        "StudyInstanceUID",
        "PatientName",
        "StudyDate",
        "InstitutionName",
        "SliceThickness",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
    )
    [r] = responses
    assert str(r.PatientName) == "DOE^JANE"
    assert r.StudyDate == "20210101"
    assert list(r.ModalitiesInStudy) == ["CT", "SR"]
    assert int(r.NumberOfStudyRelatedInstances) == 2
    assert "SeriesDescription" not in r  # only what was asked for
    # Series (General Equipment) and instance (Image Plane) attributes are not the
    # study's: not taken from its first instance (PS3.4 C.6.2.1.2).
    assert "InstitutionName" not in r and "SliceThickness" not in r


def test_findscu_study_root_series_and_image_levels(
    dcmtk_tools: None, catalogue_node: Node, tmp_path: Path
) -> None:
    series, _ = findscu(
        catalogue_node,
        tmp_path,
        "SERIES",
        f"StudyInstanceUID={study_uid('D')}",
        "SeriesInstanceUID",
        "Modality=SR",
        "NumberOfSeriesRelatedInstances",
        "InstitutionName",
        "SliceThickness",
    )
    assert [
        (s.SeriesInstanceUID, s.Modality, int(s.NumberOfSeriesRelatedInstances)) for s in series
    ] == [(series_uid("D", 2), "SR", 1)]
    assert series[0].InstitutionName == "OTHER HOSPITAL"  # General Equipment: the series'
    assert "SliceThickness" not in series[0]  # Image Plane: the instance's
    images, _ = findscu(
        catalogue_node,
        tmp_path,
        "IMAGE",
        f"StudyInstanceUID={study_uid('A')}",
        f"SeriesInstanceUID={series_uid('A', 1)}",
        "SOPInstanceUID",
        "InstanceNumber",
    )
    assert sorted((i.SOPInstanceUID, int(i.InstanceNumber)) for i in images) == [
        (sop_uid("A", 1, 1), 1),
        (sop_uid("A", 1, 2), 2),
    ]


# ----------------------------------------------------------------------- Patient Root
def test_findscu_patient_root_at_all_four_levels(
    dcmtk_tools: None, catalogue_node: Node, tmp_path: Path
) -> None:
    patients, _ = findscu(
        catalogue_node,
        tmp_path,
        "PATIENT",
        "PatientName=smith*",
        "PatientID",
        "NumberOfPatientRelatedStudies",
        model="-P",
    )
    assert sorted((p.PatientID, int(p.NumberOfPatientRelatedStudies)) for p in patients) == [
        ("PID0001", 2),
        ("PID0002", 1),
    ]
    studies, _ = findscu(
        catalogue_node,
        tmp_path,
        "STUDY",
        "PatientID=PID0001",
        "StudyInstanceUID",
        "StudyDate=20200101-",
        model="-P",
    )
    assert keys_of(studies) == {"B"}
    series, _ = findscu(
        catalogue_node,
        tmp_path,
        "SERIES",
        "PatientID=PID0001",
        f"StudyInstanceUID={study_uid('A')}",
        "SeriesInstanceUID",
        "SeriesNumber=2",
        model="-P",
    )
    assert [s.SeriesInstanceUID for s in series] == [series_uid("A", 2)]
    wanted = f"{sop_uid('A', 2, 1)}\\{sop_uid('A', 2, 2)}\\1.2.3.4"
    images, _ = findscu(
        catalogue_node,
        tmp_path,
        "IMAGE",
        "PatientID=PID0001",
        f"StudyInstanceUID={study_uid('A')}",
        f"SeriesInstanceUID={series_uid('A', 2)}",
        f"SOPInstanceUID={wanted}",
        model="-P",
    )
    assert sorted(i.SOPInstanceUID for i in images) == [sop_uid("A", 2, 1), sop_uid("A", 2, 2)]


@pytest.mark.parametrize(
    "model, level, keys",
    [
        ("-S", "SERIES", ["SeriesInstanceUID"]),  # no Study Instance UID
        ("-S", "IMAGE", [f"StudyInstanceUID={study_uid('A')}", "SOPInstanceUID"]),
        ("-S", "SERIES", ["StudyInstanceUID=1.2.*", "SeriesInstanceUID"]),  # wildcard unique key
        ("-P", "STUDY", ["StudyInstanceUID"]),  # no Patient ID
        ("-S", "PATIENT", ["PatientID"]),  # no such level
    ],
)
def test_findscu_query_failing_the_hierarchical_check_gets_a_failure(
    dcmtk_tools: None, catalogue_node: Node, tmp_path: Path, model: str, level: str, keys: list[str]
) -> None:
    responses, log = findscu(catalogue_node, tmp_path, level, *keys, model=model)
    assert responses == []
    assert "Final Find Response (Error" in log or "Final Find Response (Failed" in log, log


# ------------------------------------------------------------------------- pynetdicom
def _identifier(level: str, **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_pynetdicom_find_with_person_name_groups(catalogue_node: Node) -> None:
    identifier = _identifier("STUDY", PatientName="*=山田^太郎", StudyInstanceUID="")
    identifier.SpecificCharacterSet = "ISO_IR 192"
    [match] = scu.find(peer(catalogue_node), identifier)
    assert match.StudyInstanceUID == study_uid("E")
    assert match.PatientName.ideographic == "山田^太郎"
    assert match.SpecificCharacterSet == "ISO_IR 192"


def test_pynetdicom_find_invalid_date_range_gets_a_failure_status(catalogue_node: Node) -> None:
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(
        "127.0.0.1", catalogue_node.dicom_port, ae_title=catalogue_node.settings.aet
    )
    try:
        identifier = _identifier("STUDY", StudyDate="20201231-20200101", StudyInstanceUID="")
        statuses = [
            (int(s.Status), s.get("ErrorComment", ""))
            for s, _ in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)
        ]
    finally:
        assoc.release()
    [(code, comment)] = statuses
    assert code == 0xA900 and "StudyDate" in comment


def test_pynetdicom_find_without_level_is_refused(catalogue_node: Node) -> None:
    with pytest.raises(scu.SCUError, match="0xA900"):
        scu.find(peer(catalogue_node), _identifier("", PatientID=""))


@pytest.mark.parametrize("tag", [0x7FE00010, 0x00283006])  # stored as bulk data; absent
def test_pynetdicom_find_of_a_key_with_an_ambiguous_vr_returns_it_empty(
    catalogue_node: Node, tag: int
) -> None:
    """Pixel Data ("OB or OW") and LUT Data ("US or OW") come back empty in one VR of
    theirs (PS3.4 C.4.1.1.3.2), and the association is not aborted."""
    identifier = _identifier(
        "IMAGE",
        StudyInstanceUID=study_uid("B"),
        SeriesInstanceUID=series_uid("B", 1),
        SOPInstanceUID="",
    )
    identifier.add_new(tag, "OW", None)
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind, EXPLICIT_LE)
    assoc = ae.associate(
        "127.0.0.1", catalogue_node.dicom_port, ae_title=catalogue_node.settings.aet
    )
    try:
        answers = list(assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind))
    finally:
        assoc.release()
    assert [int(s.Status) for s, _ in answers if "Status" in s] == [0xFF00, 0x0000]
    match = answers[0][1]
    assert match.SOPInstanceUID == sop_uid("B", 1, 1)
    assert tag in match and match[tag].is_empty


@pytest.mark.parametrize("level", ["STUDY", "SERIES"])
def test_instance_availability_asked_for_is_online(catalogue_node: Node, level: str) -> None:
    """PS3.4 C.6.2.1: Instance Availability is a return key of the STUDY, SERIES and
    IMAGE levels; whatever Isthmus holds is retrievable at once."""
    keys = {"StudyInstanceUID": study_uid("B"), "InstanceAvailability": ""}
    if level == "SERIES":
        keys["SeriesInstanceUID"] = ""
    matches = scu.find(peer(catalogue_node), _identifier(level, **keys))
    assert matches and all(m.InstanceAvailability == "ONLINE" for m in matches)


# ------------------------------------------------- trailing empty name components
@pytest.fixture(scope="module")
def trailing_names(module_node: Node) -> Node:
    """Two studies whose names differ in trailing delimiters only (PS3.5 6.2.1.1): one
    stored with them (JONES^MARY^^^), one without (BROWN^BOB)."""
    for name, patient_id in (("JONES^MARY^^^", "PNT1"), ("BROWN^BOB", "PNT2")):
        spec = StudySpec(patient_name=name, patient_id=patient_id, instances_per_series=1)
        [ds] = study(spec)
        out = BytesIO()
        ds.save_as(out, enforce_file_format=True)
        assert module_node.archive.store(out.getvalue()).status == "stored"
    return module_node


@pytest.mark.parametrize(
    "name, expected",
    [
        ("JONES^MARY", {"PNT1"}),  # stored with trailing delimiters
        ("BROWN^BOB^^^", {"PNT2"}),  # asked with them
        ("brown^bob==", {"PNT2"}),  # trailing empty component groups (PS3.5 6.2.1.2)
        ("BROWN^", set()),  # BROWN, not BROWN^BOB
        ("JONES^M*", {"PNT1"}),  # wildcards as before (PS3.4 C.2.2.2.4)
        ("JONES^*", {"PNT1"}),
        ("BROWN^BOB^*", {"PNT2"}),  # `*` after an empty component stands for none too
        ("JONES^MARY^?*", set()),
    ],
)
def test_findscu_names_differing_in_trailing_delimiters_are_one_name(
    dcmtk_tools: None, trailing_names: Node, tmp_path: Path, name: str, expected: set[str]
) -> None:
    responses, _ = findscu(trailing_names, tmp_path, "STUDY", f"PatientName={name}", "PatientID")
    assert {str(r.PatientID) for r in responses} == expected


def test_pynetdicom_find_names_differing_in_trailing_delimiters(trailing_names: Node) -> None:
    for name, patient_id, stored_as in (
        ("JONES^MARY", "PNT1", "JONES^MARY^^^"),
        ("BROWN^BOB^^^", "PNT2", "BROWN^BOB"),
    ):
        identifier = _identifier("STUDY", PatientName=name, PatientID="")
        [match] = scu.find(peer(trailing_names), identifier)
        assert (match.PatientID, str(match.PatientName)) == (patient_id, stored_as)
