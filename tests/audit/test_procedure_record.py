"""Procedure Records (PS3.15 A.5.3.15) end to end: pynetdicom creates, claims and
completes a work item (UPS over DIMSE) and reports a performed step (MPPS), httpx
creates one and asks for its cancellation (UPS-RS); each change, and each refused one,
is one schema-valid message in the audit log with its EventActionCode (C, U), the
requestor and the archive, and the step's study and patient.

One node for the module (tokens configured, so the HTTP requestor has a name).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import (
    ModalityPerformedProcedureStep,
    UnifiedProcedureStepPull,
    UnifiedProcedureStepPush,
)
from tests.dimse.support import mpps_in_progress

from isthmus.archive import completion, scheduled_workitem
from isthmus.config import Settings
from isthmus.server import Node
from isthmus.testing.net import free_port
from isthmus.web.auth import hash_token

from .schema import check, code

UPS_PUSH, MPPS = "1.2.840.10008.5.1.4.34.6.1", "1.2.840.10008.3.1.2.3.3"
WRITER = "writer-secret"
TOKENS = {"ris": {"hash": hash_token(WRITER), "permissions": ["read", "write"]}}
CT_HEAD = ("P5-08000", "SRT", "CT of head")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    settings = Settings(
        data=tmp_path_factory.mktemp("procedure-record"),
        dicom_port=free_port(),
        http_port=free_port(),
        check_on_start=False,
        tokens=TOKENS,
    )
    with Node(settings) as running:
        yield running


@pytest.fixture
def scu(node: Node) -> Iterator[Any]:
    ae = AE(ae_title="PERFORMER")
    for sop_class in (UnifiedProcedureStepPush, UnifiedProcedureStepPull):
        ae.add_requested_context(sop_class)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.settings.aet)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        assoc.release()


def _entry(patient: str) -> dict[str, str]:
    return {
        "patient_id": patient,
        "patient_name": "AUDIT^CAROL",
        "accession": "ACC" + generate_uid()[-8:],
        "modality": "CT",
        "station_aet": "CT01",
        "start": "202601020930",
        "label": "CT head",
        "study_uid": str(generate_uid()),
    }


def _records(node: Node, uid: str) -> list[dict[str, Any]]:
    """The Procedure Records of the step `uid`, oldest first, each with its parsed XML."""
    node.audit.flush()
    path = Path(node.settings.data) / "audit.log"
    entries = [json.loads(line) for line in path.open(encoding="utf-8")]
    found = []
    for entry in entries:
        if entry["event"] != "procedure-record" or uid not in entry["xml"]:
            continue
        doc = check(entry["xml"])
        assert code(doc, "EventIdentification/EventID") == ("110111", "DCM", "Procedure Record")
        found.append({**entry, "doc": doc})
    return found


def _participants(record: dict[str, Any]) -> list[tuple[str | None, str | None, str | None]]:
    return [
        (p.get("UserID"), p.get("UserIsRequestor"), p.get("NetworkAccessPointID"))
        for p in record["doc"].findall("ActiveParticipant")
    ]


def _objects(record: dict[str, Any]) -> list[tuple[str | None, str | None, str | None]]:
    return [
        (
            o.get("ParticipantObjectTypeCode"),
            o.get("ParticipantObjectTypeCodeRole"),
            o.get("ParticipantObjectID"),
        )
        for o in record["doc"].findall("ParticipantObjectIdentification")
    ]


def _outcome(record: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    ident = record["doc"].find("EventIdentification")
    return (
        ident.get("EventActionCode"),
        ident.get("EventOutcomeIndicator"),
        ident.findtext("EventOutcomeDescription"),
    )


def _state(scu: Any, uid: str, state: str, transaction: str) -> int:
    info = Dataset()
    info.ProcedureStepState = state
    info.TransactionUID = transaction
    status, _ = scu.send_n_action(info, 1, UnifiedProcedureStepPull, uid)
    return int(status.Status)


def test_ups_n_create_claim_and_complete_are_procedure_records_and_a_refused_claim_too(
    node: Node, scu: Any
) -> None:
    entry = _entry("P-UPS")
    uid, transaction = str(generate_uid()), str(generate_uid())
    ds = Dataset.from_json(scheduled_workitem(entry))
    status, _ = scu.send_n_create(ds, UnifiedProcedureStepPush, uid)
    assert status.Status == 0x0000
    assert _state(scu, uid, "IN PROGRESS", transaction) == 0x0000
    assert _state(scu, uid, "IN PROGRESS", str(generate_uid())) == 0xC302  # claimed already
    done = Dataset.from_json(completion("202601020931", "202601020950", "CT01", CT_HEAD))
    done.TransactionUID = transaction
    status, _ = scu.send_n_set(done, UnifiedProcedureStepPull, uid)
    assert status.Status == 0x0000
    assert _state(scu, uid, "COMPLETED", transaction) == 0x0000

    records = _records(node, uid)
    assert [_outcome(r) for r in records] == [
        ("C", "0", "SCHEDULED"),
        ("U", "0", "IN PROGRESS"),
        ("U", "4", "the work item is IN PROGRESS"),  # 0xC302, with the store's reason
        ("U", "0", "IN PROGRESS"),  # the N-SET
        ("U", "0", "COMPLETED"),
    ]
    for record in records:
        assert (record["user"], record["source"]) == ("PERFORMER", "127.0.0.1")
        assert _participants(record) == [
            ("PERFORMER", "true", "127.0.0.1"),
            (node.settings.aet, "false", None),
        ]
        assert _objects(record) == [("2", "3", entry["study_uid"]), ("1", "1", "P-UPS")]
        assert record["patients"] == [{"id": "P-UPS", "name": "AUDIT^CAROL"}]
        assert record["studies"] == [entry["study_uid"]]
        sop = record["doc"].find(".//ParticipantObjectDescription/SOPClass")
        assert (sop.get("UID"), sop.find("Instance").get("UID")) == (UPS_PUSH, uid)
        accession = record["doc"].find(".//ParticipantObjectDescription/Accession")
        assert accession.get("Number") == entry["accession"]


def test_ups_rs_create_and_cancel_request_are_procedure_records_with_the_http_user(
    node: Node,
) -> None:
    entry = _entry("P-RS")
    uid = str(generate_uid())
    headers = {"Authorization": f"Bearer {WRITER}", "Content-Type": "application/dicom+json"}
    base = f"http://127.0.0.1:{node.http_port}/dicom-web"
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        body = json.dumps(scheduled_workitem(entry))
        assert client.post(f"/workitems?{uid}", content=body).status_code == 201
        assert client.post(f"/workitems/{uid}/cancelrequest", content=b"").status_code == 202
        assert client.post(f"/workitems?{uid}", content=body).status_code == 409  # exists
        unknown = str(generate_uid())
        assert client.post(f"/workitems/{unknown}/cancelrequest").status_code == 404

    created, canceled, duplicate = _records(node, uid)
    assert _outcome(created) == ("C", "0", "SCHEDULED")
    assert _outcome(canceled) == ("U", "0", "CANCELED")
    action, outcome, description = _outcome(duplicate)
    assert (action, outcome) == ("C", "4") and f"work item {uid} already exists" in description
    paths = ["/dicom-web/workitems", f"/dicom-web/workitems/{uid}/cancelrequest"]
    for record, path in zip((created, canceled, duplicate), [*paths, paths[0]], strict=True):
        assert (record["user"], record["source"]) == ("ris", "127.0.0.1")
        assert _participants(record) == [("ris", "true", "127.0.0.1"), (path, "false", None)]
        assert _objects(record) == [("2", "3", entry["study_uid"]), ("1", "1", "P-RS")]
    (refused,) = _records(node, unknown)
    assert _outcome(refused)[:2] == ("U", "4")
    assert _objects(refused) == []  # no such work item: nobody to name


def _completed(status: str) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20260102"
    ds.PerformedProcedureStepEndTime = "0950"
    item = Dataset()
    item.SeriesInstanceUID = generate_uid()
    item.PerformingPhysicianName = ""
    item.ProtocolName = "CHEST"
    item.OperatorsName = ""
    item.SeriesDescription = ""
    item.RetrieveAETitle = ""
    item.ReferencedImageSequence = []
    ds.PerformedSeriesSequence = [item]
    return ds


def test_mpps_n_create_and_n_set_are_procedure_records_and_a_refused_n_set_too(
    node: Node, scu: Any
) -> None:
    study, accession, uid = str(generate_uid()), "ACC-MPPS", str(generate_uid())
    status, _ = scu.send_n_create(
        mpps_in_progress(study, accession, "AUDIT^DAVE", "P-MPPS"), MPPS, uid
    )
    assert status.Status == 0x0000
    assert scu.send_n_set(_completed("COMPLETED"), MPPS, uid)[0].Status == 0x0000
    assert scu.send_n_set(_completed("DISCONTINUED"), MPPS, uid)[0].Status == 0x0110

    created, completed, refused = _records(node, uid)
    assert _outcome(created) == ("C", "0", "IN PROGRESS")
    assert _outcome(completed) == ("U", "0", "COMPLETED")
    action, outcome, description = _outcome(refused)
    assert (action, outcome) == ("U", "4") and "may no longer be updated" in description
    for record in (created, completed, refused):
        assert _participants(record) == [
            ("PERFORMER", "true", "127.0.0.1"),
            (node.settings.aet, "false", None),
        ]
        assert _objects(record) == [("2", "3", study), ("1", "1", "P-MPPS")]
        assert record["doc"].find(".//ParticipantObjectDescription/MPPS").get("UID") == uid
        assert record["patients"] == [{"id": "P-MPPS", "name": "AUDIT^DAVE"}]
