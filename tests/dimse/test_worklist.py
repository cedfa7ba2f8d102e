"""Modality Worklist C-FIND (PS3.4 K) from scheduled work items, asked by DCMTK findscu -W.

The worklist is the work item store: entries are created as work items (the way
UPS-RS and `isthmus worklist add` create them), found by the keys modalities use,
and leave the worklist once claimed.  Both backends, one node per module.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.sop_class import ModalityWorklistInformationFind

from isthmus import UID_ROOT
from isthmus.archive import scheduled_workitem
from isthmus.server import Node

from .support import address, run_ok, send_raw_request

SPS = "ScheduledProcedureStepSequence[0]"
ENTRIES = [
    # accession, patient, modality, station, start
    ("ACC-CT1", "P-CT1", "CT", "CT01", "202601050800"),
    ("ACC-CT2", "P-CT2", "CT", "CT01", "202601051400"),
    ("ACC-MR1", "P-MR1", "MR", "MR01", "202601060900"),
    ("ACC-CT3", "P-CT3", "CT", "CT02", "202601070930"),
]


@pytest.fixture(scope="module")
def worklist(module_node: Node) -> Iterator[dict[str, str]]:
    """The entries of ENTRIES as work items: accession → work item UID."""
    uids = {}
    for accession, patient, modality, station, start in ENTRIES:
        entry = {
            "patient_id": patient,
            "patient_name": f"PATIENT^{patient}",
            "accession": accession,
            "requested_procedure_id": "RP" + accession[-3:],
            "procedure": f"{modality} EXAM",
            "modality": modality,
            "station_aet": station,
            "start": start,
            "label": f"{modality} step",
            "study_uid": str(generate_uid()),
        }
        uids[accession] = module_node.archive.workitems.create(scheduled_workitem(entry)).uid
    yield uids


def _findscu(node: Node, folder: Path, *keys: str) -> list[Dataset]:
    """DCMTK findscu -W with the keys given plus the usual return keys."""
    from pydicom import dcmread

    folder.mkdir(parents=True, exist_ok=True)
    returned = [
        "PatientName",
        "PatientID",
        "AccessionNumber",
        "StudyInstanceUID",
        "RequestedProcedureID",
        f"{SPS}.ScheduledStationAETitle",
        f"{SPS}.Modality",
        f"{SPS}.ScheduledProcedureStepStartDate",
        f"{SPS}.ScheduledProcedureStepStartTime",
        f"{SPS}.ScheduledProcedureStepID",
        f"{SPS}.ScheduledProcedureStepDescription",
    ]
    args = ["-W", "-aet", "MODALITY", "-X", "-od", str(folder)]
    named = {k.split("=")[0] for k in keys}
    for key in [*keys, *(k for k in returned if k not in named)]:
        args += ["-k", key]
    run_ok("findscu", *args, *address(node))
    responses = [dcmread(p) for p in sorted(folder.glob("rsp*.dcm"))]
    for p in folder.glob("rsp*.dcm"):
        p.unlink()
    return responses


def _accessions(responses: list[Dataset]) -> list[str]:
    return sorted(str(r.AccessionNumber) for r in responses)


def test_findscu_lists_the_steps_of_a_station_by_ae_title(
    module_node: Node, worklist: dict[str, str], tmp_path: Path, dcmtk_tools: None
) -> None:
    found = _findscu(module_node, tmp_path, f"{SPS}.ScheduledStationAETitle=CT01")
    assert _accessions(found) == ["ACC-CT1", "ACC-CT2"]
    first = next(r for r in found if r.AccessionNumber == "ACC-CT1")
    step = first.ScheduledProcedureStepSequence[0]
    assert (step.ScheduledStationAETitle, step.Modality) == ("CT01", "CT")
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == (
        "20260105",
        "0800",
    )
    assert first.PatientID == "P-CT1"
    assert str(first.PatientName) == "PATIENT^P-CT1"
    assert step.ScheduledProcedureStepID == "RPCT1"
    assert "ScheduledProtocolCodeSequence" not in step  # not asked for: not returned


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        pytest.param((f"{SPS}.Modality=MR",), ["ACC-MR1"], id="modality"),
        pytest.param(
            (f"{SPS}.ScheduledProcedureStepStartDate=20260105",),
            ["ACC-CT1", "ACC-CT2"],
            id="date",
        ),
        pytest.param(
            (f"{SPS}.ScheduledProcedureStepStartDate=20260106-20260107",),
            ["ACC-CT3", "ACC-MR1"],
            id="date-range",
        ),
        pytest.param(
            (
                f"{SPS}.ScheduledProcedureStepStartDate=20260105",
                f"{SPS}.ScheduledProcedureStepStartTime=1200-",
            ),
            ["ACC-CT2"],
            id="date-and-time-range",
        ),
        pytest.param(("PatientID=P-CT3",), ["ACC-CT3"], id="patient-id"),
        pytest.param(("AccessionNumber=ACC-MR1",), ["ACC-MR1"], id="accession"),
        pytest.param(
            (f"{SPS}.Modality=CT", f"{SPS}.ScheduledStationAETitle=CT02"),
            ["ACC-CT3"],
            id="modality-and-station",
        ),
        pytest.param(("AccessionNumber=NOSUCH",), [], id="nothing"),
    ],
)
def test_findscu_matches_the_keys_modalities_use(
    module_node: Node,
    worklist: dict[str, str],
    tmp_path: Path,
    dcmtk_tools: None,
    keys: tuple[str, ...],
    expected: list[str],
) -> None:
    assert _accessions(_findscu(module_node, tmp_path, *keys)) == expected


def test_a_claimed_step_leaves_the_worklist(module_node: Node, tmp_path: Path) -> None:
    entry = {
        "accession": "ACC-CLAIM",
        "patient_id": "P-CLAIM",
        "modality": "US",
        "station_aet": "US01",
        "start": "202601080800",
        "label": "US step",
    }
    uid = module_node.archive.workitems.create(scheduled_workitem(entry)).uid
    key = f"{SPS}.ScheduledStationAETitle=US01"
    assert _accessions(_findscu(module_node, tmp_path, key)) == ["ACC-CLAIM"]
    module_node.archive.workitems.change_state(uid, "IN PROGRESS", str(generate_uid()))
    assert _findscu(module_node, tmp_path, key) == []


def test_a_name_in_unicode_comes_back_in_utf8(
    module_node: Node, tmp_path: Path, dcmtk_tools: None
) -> None:
    """A value ASCII cannot hold is answered in ISO_IR 192 (PS3.5 6.1.2.3)."""
    entry = {
        "accession": "ACC-UTF8",
        "patient_id": "P-UTF8",
        "patient_name": "Müller^Jürgen=山田^太郎",
        "modality": "CT",
        "station_aet": "CT09",
        "start": "202601090800",
        "label": "CT step",
    }
    module_node.archive.workitems.create(scheduled_workitem(entry))
    (found,) = _findscu(module_node, tmp_path, "PatientID=P-UTF8")
    assert found.SpecificCharacterSet == "ISO_IR 192"
    assert str(found.PatientName) == "Müller^Jürgen=山田^太郎"


def test_a_bad_date_key_gets_a_failure_status(module_node: Node) -> None:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", module_node.dicom_port, ae_title=module_node.settings.aet)
    try:
        query = Dataset()
        step = Dataset()
        step.ScheduledProcedureStepStartDate = "tomorrow"
        query.ScheduledProcedureStepSequence = [step]
        statuses = [
            int(s.Status) for s, _ in assoc.send_c_find(query, ModalityWorklistInformationFind)
        ]
        assert statuses == [0xA900]
    finally:
        assoc.release()


def test_an_entry_without_study_or_procedure_ids_gets_them_generated(
    module_node: Node, tmp_path: Path, dcmtk_tools: None
) -> None:
    """Study Instance UID, Requested Procedure ID and Scheduled Procedure Step ID are
    Type 1 return keys (PS3.4 Table K.6-1); the scheduler makes what the entry lacks,
    the Study Instance UID under Isthmus's UID root."""
    entry = {
        "accession": "ACC-NOIDS",
        "patient_id": "P-NOIDS",
        "modality": "DX",
        "station_aet": "DX01",
        "start": "202601090800",
        "label": "DX step",
    }
    module_node.archive.workitems.create(scheduled_workitem(entry))
    (found,) = _findscu(module_node, tmp_path, f"{SPS}.ScheduledStationAETitle=DX01")
    step = found.ScheduledProcedureStepSequence[0]
    assert str(found.StudyInstanceUID).startswith(UID_ROOT + ".")
    assert found.RequestedProcedureID
    assert step.ScheduledProcedureStepID == found.RequestedProcedureID
    other = scheduled_workitem(entry)["0040A370"]["Value"][0]
    assert other["0020000D"]["Value"][0] != found.StudyInstanceUID


def test_a_start_with_a_utc_offset_is_found_by_the_date_it_is_answered_with(
    module_node: Node, tmp_path: Path, dcmtk_tools: None
) -> None:
    """The DA and TM keys match the date and time the worklist item shows, the local
    ones before the offset (PS3.4 C.2.2.2.5: without Timezone Query Adjustment nothing
    is converted); the offset of 00:30+0100 made the step a step of the day before."""
    entry = {
        "accession": "ACC-TZ",
        "patient_id": "P-TZ",
        "modality": "CT",
        "station_aet": "CT07",
        "start": "202601060030",
        "label": "CT step",
    }
    workitem = scheduled_workitem(entry)
    workitem["00404005"]["Value"] = ["202601060030+0100"]
    module_node.archive.workitems.create(workitem)
    station = f"{SPS}.ScheduledStationAETitle=CT07"
    date = f"{SPS}.ScheduledProcedureStepStartDate"
    (found,) = _findscu(module_node, tmp_path, station, f"{date}=20260106")
    assert found.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate == "20260106"
    assert _findscu(module_node, tmp_path, station, f"{date}=20260105") == []
    assert _accessions(_findscu(module_node, tmp_path, station, f"{date}=20260106-")) == ["ACC-TZ"]
    assert _findscu(module_node, tmp_path, station, f"{date}=-20260105") == []


@pytest.mark.parametrize(
    "identifier",
    [
        pytest.param(b"\x10\x00\x10\x00PN\xff\x7fxx", id="value-shorter-than-its-length"),
        pytest.param(
            b"\x40\x00\x00\x01SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff",
            id="sequence-without-its-delimiters",
        ),
        pytest.param(b"\x10\x00\x20\x00LO", id="element-header-cut-short"),
    ],
)
def test_a_truncated_identifier_is_unable_to_process(module_node: Node, identifier: bytes) -> None:
    """An identifier whose bytes end inside an element or sequence cannot be processed
    (0xC000, PS3.4 K.4.1.1.4); pydicom read what there was, the cut sequence as an empty
    item, and the query was answered as if its keys were universal."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ModalityWorklistInformationFind, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", module_node.dicom_port, ae_title=module_node.settings.aet)
    try:
        req = C_FIND()
        req.MessageID = 1
        req.AffectedSOPClassUID = ModalityWorklistInformationFind
        req.Priority = 2
        req.Identifier = BytesIO(identifier)
        rsp = send_raw_request(assoc, req, ModalityWorklistInformationFind)
        assert rsp.Status == 0xC000
    finally:
        assoc.release()
