"""Orthanc 1.10 (Debian's package) as a real DICOM peer, driven through its REST API.

Orthanc as SCU against Isthmus: C-ECHO, C-STORE (kept byte for byte), C-FIND at every
level, C-MOVE out of Isthmus, Storage Commitment and Modality Worklist C-FIND.  Isthmus as
SCU against Orthanc: C-ECHO, C-FIND, C-MOVE and C-GET into the archive, C-STORE.

One Orthanc and one Isthmus node (SQLite) serve the whole module; each knows the other as
a peer.  The catalogue (isthmus.testing.catalogue) is loaded into Isthmus for the
queries; the other tests store studies of their own, under Patient IDs starting "ORT" so
that the catalogue's answers stay as they are.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from isthmus.archive import scheduled_workitem
from isthmus.config import Peer, Settings
from isthmus.dicom.part10 import split_part10
from isthmus.dimse import scu
from isthmus.dimse.fetch import retrieve_into_archive
from isthmus.server import Node
from isthmus.testing import catalogue, orthanc, samples
from isthmus.testing.generate import ROOT, StudySpec, study
from isthmus.testing.net import free_port
from isthmus.testing.orthanc import OrthancError, TemporaryOrthanc

from .support import stored

pytestmark = pytest.mark.skipif(
    not orthanc.installed(),
    reason=f"{orthanc.ORTHANC_BIN} is missing (scripts/system-deps.sh installs Orthanc)",
)

ISTHMUS, ORTHANC = "ISTHMUS", "ORTHANC"
WAIT = 20.0  # seconds any asynchronous outcome may take


# ------------------------------------------------------------------------- fixtures
class Pair:
    """The module's Isthmus node and Orthanc, each the other's peer."""

    def __init__(self, node: Node, peer: TemporaryOrthanc) -> None:
        self.node = node
        self.orthanc = peer
        self.peer = Peer(ORTHANC, "127.0.0.1", peer.dicom_port)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    folder = tmp_path_factory.mktemp("orthanc-peer")
    dicom_port, http_port = free_port(), free_port()
    modality = {"AET": ISTHMUS, "Host": "127.0.0.1", "Port": dicom_port}
    with TemporaryOrthanc(ORTHANC, modalities={"isthmus": modality}, timeout=WAIT) as peer:
        settings = Settings(
            data=folder / "data",
            dicom_port=dicom_port,
            http_port=http_port,
            aet=ISTHMUS,
            peers=(Peer(ORTHANC, "127.0.0.1", peer.dicom_port),),
            check_on_start=False,
        )
        node = Node(settings)
        node.start(http=False)
        try:
            catalogue.load(node.archive, folder / "catalogue")
            yield Pair(node, peer)
        finally:
            node.stop()


def part10(ds: Dataset) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def own_study(patient_id: str, count: int = 2, **spec: Any) -> list[Dataset]:
    """A small CT study of its own (Patient ID "ORT…", outside the catalogue's)."""
    assert patient_id.startswith("ORT")
    return list(
        study(
            StudySpec(
                patient_id=patient_id, instances_per_series=count, rows=16, columns=16, **spec
            )
        )
    )


def upload(peer: TemporaryOrthanc, datasets: list[Dataset]) -> list[str]:
    """Store into Orthanc through its REST API; the Orthanc IDs of the instances."""
    return [peer.upload(part10(ds))["ID"] for ds in datasets]


def orthanc_file(peer: TemporaryOrthanc, sop_uid: str) -> bytes:
    """The Part 10 file Orthanc keeps for a SOP Instance UID."""
    [found] = peer.post("/tools/lookup", sop_uid)
    data: bytes = peer.get(f"/instances/{found['ID']}/file")
    return data


def orthanc_holds(peer: TemporaryOrthanc, sop_uid: str) -> bool:
    return any(r["Type"] == "Instance" for r in peer.post("/tools/lookup", sop_uid))


def query(peer: TemporaryOrthanc, level: str, keys: dict[str, str]) -> list[dict[str, Any]]:
    """Orthanc's C-FIND to Isthmus (/modalities/isthmus/query); its answers, simplified."""
    found = peer.post("/modalities/isthmus/query", {"Level": level, "Query": keys})
    answers: list[dict[str, Any]] = peer.get(f"{found['Path']}/answers?expand&simplify")
    return answers


def uids(answers: list[dict[str, Any]], key: str) -> set[str]:
    return {a[key] for a in answers}


# ------------------------------------------------------------- Orthanc as the SCU
def test_orthanc_c_echo_to_isthmus_succeeds(pair: Pair) -> None:
    assert pair.orthanc.post("/modalities/isthmus/echo") == {}


def _ct_utf8() -> Dataset:
    return own_study("ORT-UTF8", 1, patient_name="Müller^Jürgen=山田^太郎", charset="ISO_IR 192")[0]


def _ct_latin1() -> Dataset:
    return own_study("ORT-LATIN1", 1, patient_name="Gérard^Élodie", charset="ISO_IR 100")[0]


def _sample(syntax: str) -> Dataset:
    ds = samples.canonical(dcmread(samples.bundled_path(samples.BUNDLED[syntax])))
    ds.PatientID = "ORT-SAMPLE"
    return ds


def _multi_frame() -> Dataset:
    ds = samples.canonical(dcmread(samples.bundled_path("rtdose.dcm")))
    ds.PatientID = "ORT-MULTIFRAME"
    return ds


INSTANCES = {
    "ct": lambda: own_study("ORT-CT", 1)[0],
    "mr": lambda: _sample("1.2.840.10008.1.2.1"),
    "multi-frame-rt-dose": _multi_frame,
    "iso-ir-192-name": _ct_utf8,
    "iso-ir-100-name": _ct_latin1,
    "jpeg-baseline": lambda: _sample("1.2.840.10008.1.2.4.50"),
}


@pytest.mark.parametrize("kind", list(INSTANCES))
def test_orthanc_c_store_to_isthmus_is_kept_byte_for_byte(pair: Pair, kind: str) -> None:
    ds = INSTANCES[kind]()
    [orthanc_id] = upload(pair.orthanc, [ds])
    job = pair.orthanc.post(
        "/modalities/isthmus/store", {"Resources": [orthanc_id], "Synchronous": True}
    )
    assert (job["InstancesCount"], job["FailedInstancesCount"]) == (1, 0)
    sent_meta, sent = split_part10(orthanc_file(pair.orthanc, ds.SOPInstanceUID))
    syntax, kept = stored(pair.node, ds.SOPInstanceUID)
    assert syntax == sent_meta.TransferSyntaxUID
    assert kept == bytes(sent)


# C-FIND: the catalogue's answers (PS3.4 C.2.2.2: wildcards, ranges, case-insensitive
# names per Isthmus's conformance statement).
def test_orthanc_patient_level_c_find_with_a_wildcard_name(pair: Pair) -> None:
    keys = {"PatientName": "SMITH*", "PatientID": "", "NumberOfPatientRelatedStudies": ""}
    answers = query(pair.orthanc, "Patient", keys)
    assert {(a["PatientID"], a["NumberOfPatientRelatedStudies"]) for a in answers} == {
        ("PID0001", "2"),
        ("PID0002", "1"),
    }


def test_orthanc_study_level_c_find_with_a_date_range(pair: Pair) -> None:
    keys = {"StudyDate": "20200101-20201231", "PatientID": "PID*", "ModalitiesInStudy": ""}
    answers = query(pair.orthanc, "Study", keys)
    expected = {catalogue.study_uid(k) for k in "BCE"}
    assert uids(answers, "StudyInstanceUID") == expected
    by_uid = {a["StudyInstanceUID"]: a for a in answers}
    assert by_uid[catalogue.study_uid("B")]["ModalitiesInStudy"] == "MR"
    assert by_uid[catalogue.study_uid("C")]["StudyDate"] == "20201231"


def test_orthanc_study_level_c_find_with_an_open_date_range_and_a_question_mark(
    pair: Pair,
) -> None:
    keys = {"StudyDate": "-20191231", "AccessionNumber": "ACC?", "PatientID": "PID*"}
    answers = query(pair.orthanc, "Study", keys)
    assert uids(answers, "StudyInstanceUID") == {catalogue.study_uid("A")}


def test_orthanc_series_level_c_find_within_a_study(pair: Pair) -> None:
    keys = {"StudyInstanceUID": catalogue.study_uid("D"), "Modality": "", "SeriesNumber": ""}
    answers = query(pair.orthanc, "Series", keys)
    assert {(a["SeriesInstanceUID"], a["Modality"]) for a in answers} == {
        (catalogue.series_uid("D", 1), "CT"),
        (catalogue.series_uid("D", 2), "SR"),
    }


def test_orthanc_instance_level_c_find_within_a_series(pair: Pair) -> None:
    keys = {
        "StudyInstanceUID": catalogue.study_uid("A"),
        "SeriesInstanceUID": catalogue.series_uid("A", 2),
        "InstanceNumber": "",
        "SOPClassUID": "",
    }
    answers = query(pair.orthanc, "Instance", keys)
    assert uids(answers, "SOPInstanceUID") == {catalogue.sop_uid("A", 2, n) for n in (1, 2)}
    assert {a["InstanceNumber"] for a in answers} == {"1", "2"}


@pytest.mark.parametrize(
    ("charset", "name"), [("ISO_IR 192", "Müller^Jürgen"), ("ISO_IR 100", "Gérard^Élodie")]
)
def test_orthanc_c_find_decodes_names_isthmus_returns_in_their_character_set(
    pair: Pair, charset: str, name: str
) -> None:
    """Orthanc asks in ISO_IR 100 (its DefaultEncoding, Latin-1); Isthmus answers in the
    stored instance's character set and says so in Specific Character Set (PS3.5 6.1.2.3,
    PS3.4 C.4.1.1.3.2).  Names in Latin-1 come back intact either way: Orthanc decodes
    the answer, then keeps it in its own encoding, dropping what Latin-1 lacks (an
    ideographic group of a UTF-8 name comes back empty: Orthanc's choice, not the wire's)."""
    patient_id = f"ORT-CS{charset[-3:]}"
    [ds] = own_study(patient_id, 1, patient_name=name, charset=charset)
    pair.node.archive.store(part10(ds))
    [answer] = query(pair.orthanc, "Study", {"PatientID": patient_id, "PatientName": ""})
    assert answer["PatientName"] == name


def test_orthanc_c_move_from_isthmus_to_itself(pair: Pair) -> None:
    body = {
        "Level": "Study",
        "Resources": [{"StudyInstanceUID": catalogue.study_uid("A")}],
        "TargetAet": ORTHANC,
        "Synchronous": True,
    }
    pair.orthanc.post("/modalities/isthmus/move", body)
    for s, n in ((1, 1), (1, 2), (2, 1), (2, 2)):
        sop_uid = catalogue.sop_uid("A", s, n)
        _meta, received = split_part10(orthanc_file(pair.orthanc, sop_uid))
        assert bytes(received) == stored(pair.node, sop_uid)[1]


def test_orthanc_instance_level_c_move_from_isthmus(pair: Pair) -> None:
    sop_uid = catalogue.sop_uid("D", 2, 1)
    resource = {
        "StudyInstanceUID": catalogue.study_uid("D"),
        "SeriesInstanceUID": catalogue.series_uid("D", 2),
        "SOPInstanceUID": sop_uid,
    }
    body = {"Level": "Instance", "Resources": [resource], "TargetAet": ORTHANC, "Synchronous": True}
    pair.orthanc.post("/modalities/isthmus/move", body)
    assert orthanc_holds(pair.orthanc, sop_uid)
    assert not orthanc_holds(pair.orthanc, catalogue.sop_uid("D", 1, 1))


def test_orthanc_patient_level_c_move_in_the_study_root_model_is_refused(pair: Pair) -> None:
    """Orthanc 1.10 asks every C-MOVE in the Study Root model, a PATIENT level one too;
    that model has no PATIENT level (PS3.4 C.6.2.1), so Isthmus answers 0xA900
    (Identifier does not match SOP Class) and moves nothing.  Orthanc's deviation: the
    standard outcome is checked, Isthmus is not bent to it."""
    body = {
        "Level": "Patient",
        "Resources": [{"PatientID": "PID0003"}],
        "TargetAet": ORTHANC,
        "Synchronous": True,
    }
    with pytest.raises(OrthancError) as refused:
        pair.orthanc.post("/modalities/isthmus/move", body)
    assert "0xA900" in refused.value.body
    assert not orthanc_holds(pair.orthanc, catalogue.sop_uid("D", 1, 1))


def test_orthanc_retrieves_a_query_answer_by_c_move(pair: Pair) -> None:
    found = pair.orthanc.post(
        "/modalities/isthmus/query",
        {
            "Level": "Series",
            "Query": {
                "StudyInstanceUID": catalogue.study_uid("F"),
                "SeriesInstanceUID": catalogue.series_uid("F", 1),
            },
        },
    )
    pair.orthanc.post(f"{found['Path']}/retrieve", {"TargetAet": ORTHANC, "Synchronous": True})
    assert orthanc_holds(pair.orthanc, catalogue.sop_uid("F", 1, 1))


def _commitment(pair: Pair, references: list[tuple[str, str]]) -> dict[str, Any]:
    """Orthanc's Storage Commitment request (N-ACTION, PS3.4 J.3.2) and the report it
    received (N-EVENT-REPORT, J.3.3), as its REST API shows it."""
    body = {
        "DicomInstances": [{"SOPClassUID": c, "SOPInstanceUID": i} for c, i in references],
        "Timeout": int(WAIT),
    }
    started = pair.orthanc.post("/modalities/isthmus/storage-commitment", body)
    deadline = time.monotonic() + WAIT
    while True:
        report: dict[str, Any] = pair.orthanc.get(started["Path"])
        if report["Status"] != "Pending" or time.monotonic() > deadline:
            return report
        time.sleep(0.05)


def test_orthanc_storage_commitment_of_held_instances_succeeds(pair: Pair) -> None:
    references = [(catalogue_class(), catalogue.sop_uid("B", 1, 1))]
    report = _commitment(pair, references)
    assert report["Status"] == "Success"
    assert [(s["SOPClassUID"], s["SOPInstanceUID"]) for s in report["Success"]] == references


def test_orthanc_storage_commitment_of_an_unknown_instance_reports_no_such_object(
    pair: Pair,
) -> None:
    missing = generate_uid(ROOT)
    references = [(catalogue_class(), catalogue.sop_uid("C", 1, 1)), (catalogue_class(), missing)]
    report = _commitment(pair, references)
    assert report["Status"] == "Failure"
    assert [s["SOPInstanceUID"] for s in report["Success"]] == [catalogue.sop_uid("C", 1, 1)]
    [failure] = report["Failures"]
    assert failure["SOPInstanceUID"] == missing
    assert failure["FailureReason"] == 0x0112  # No such object instance (PS3.4 J.3.3.1.1)


def test_orthanc_storage_commitment_naming_the_wrong_class_reports_a_class_instance_conflict(
    pair: Pair,
) -> None:
    mr = "1.2.840.10008.5.1.4.1.1.4"
    report = _commitment(pair, [(mr, catalogue.sop_uid("E", 1, 1))])
    assert (report["Status"], report["Success"]) == ("Failure", [])
    [failure] = report["Failures"]
    assert failure["FailureReason"] == 0x0119  # Class / Instance conflict (PS3.4 J.3.3.1.1)


def catalogue_class() -> str:
    return "1.2.840.10008.5.1.4.1.1.2"  # the catalogue's instances are CT images


def test_orthanc_modality_worklist_c_find_lists_a_scheduled_procedure(pair: Pair) -> None:
    entry = {
        "patient_id": "ORT-MWL",
        "patient_name": "WORK^LIST",
        "accession": "ORTMWL1",
        "procedure": "CT HEAD",
        "modality": "CT",
        "station_aet": ORTHANC,
        "start": "2030-01-02T08:30",
    }
    pair.node.archive.workitems.create(scheduled_workitem(entry))
    keys = {
        "PatientID": "ORT-MWL",
        "PatientName": "",
        "AccessionNumber": "",
        "ScheduledProcedureStepSequence": [
            {"Modality": "CT", "ScheduledProcedureStepStartDate": "", "ScheduledStationAETitle": ""}
        ],
    }
    [answer] = pair.orthanc.post("/modalities/isthmus/find-worklist", keys)
    assert (answer["PatientName"], answer["AccessionNumber"]) == ("WORK^LIST", "ORTMWL1")
    [step] = answer["ScheduledProcedureStepSequence"]
    assert step["ScheduledProcedureStepStartDate"] == "20300102"
    assert step["ScheduledStationAETitle"] == ORTHANC


# ------------------------------------------------------------- Isthmus as the SCU
def test_isthmus_c_echo_to_orthanc_succeeds(pair: Pair) -> None:
    assert scu.echo(pair.peer, ISTHMUS) == 0


def test_isthmus_c_find_on_orthanc_at_study_and_patient_level(pair: Pair) -> None:
    datasets = own_study("ORT-FIND", 2, patient_name="FIND^ME", study_date="20111111")
    upload(pair.orthanc, datasets)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientName = "FIND*"
    identifier.StudyDate = "20111101-20111130"
    identifier.StudyInstanceUID = ""
    [answer] = scu.find(pair.peer, identifier, calling_aet=ISTHMUS)
    assert answer.StudyInstanceUID == datasets[0].StudyInstanceUID
    patient = Dataset()
    patient.QueryRetrieveLevel = "PATIENT"
    patient.PatientID = "ORT-FIND"
    patient.PatientName = ""
    [answer] = scu.find(pair.peer, patient, model="PATIENT", calling_aet=ISTHMUS)
    assert str(answer.PatientName) == "FIND^ME"


@pytest.mark.parametrize("via", ["move", "get"])
def test_isthmus_retrieves_a_study_from_orthanc_into_the_archive(pair: Pair, via: str) -> None:
    datasets = own_study(f"ORT-{via.upper()}", 3)
    upload(pair.orthanc, datasets)
    report = retrieve_into_archive(
        pair.node.settings, pair.peer, datasets[0].StudyInstanceUID, None, via
    )
    assert (report.status, report.completed, report.failed) == (0, 3, 0)
    for ds in datasets:
        _meta, sent = split_part10(orthanc_file(pair.orthanc, ds.SOPInstanceUID))
        assert stored(pair.node, ds.SOPInstanceUID)[1] == bytes(sent)


def test_isthmus_c_store_to_orthanc_is_kept_byte_for_byte(pair: Pair, tmp_path: Path) -> None:
    files = []
    for kind in ("ct", "mr", "iso-ir-192-name", "jpeg-baseline"):
        ds = INSTANCES[kind]()
        path = tmp_path / f"{kind}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    report = scu.send(pair.peer, files, calling_aet=ISTHMUS)
    assert (report.sent, report.failed) == (4, [])
    for path in files:
        meta, dataset = split_part10(path.read_bytes())
        _meta, received = split_part10(orthanc_file(pair.orthanc, meta.MediaStorageSOPInstanceUID))
        assert bytes(received) == bytes(dataset)
