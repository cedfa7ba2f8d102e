"""Audit messages (PS3.15 A.5) built from each activity event, checked against the
standard's schema (A.5.1.1) and the codes and participants A.5.3 gives each event."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset

from isthmus.archive.activity import AUDIT_EVENTS
from isthmus.audit.message import records

from .schema import check, code

UPS_PUSH, MPPS = "1.2.840.10008.5.1.4.34.6.1", "1.2.840.10008.3.1.2.3.3"
STUDY = {
    "uid": "1.2.3.4",
    "sop_classes": {"1.2.840.10008.5.1.4.1.1.2": 3},
    "patient_id": "PID7",
    "patient_name": "AUDIT^ALICE",
}


def payload(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "time": "2026-01-02T03:04:05.678+00:00",
        "outcome": 0,
        "door": "dimse",
        "user": "MODALITY",
        "address": "127.0.0.1",
        "local": "ISTHMUS",
        "peer": "",
        "studies": [],
    }
    return {**base, **changes}


EXAMPLES: dict[str, dict[str, Any]] = {
    "application": payload(user="", address=None, detail={"state": "started"}),
    "association": payload(outcome=4, description="called AE title not recognized"),
    "authentication": payload(door="http", user="alice"),
    "query": payload(sop_class="1.2.840.10008.5.1.4.1.2.2.1", query='{"00100010": {"vr": "PN"}}'),
    "stored": payload(studies=[STUDY]),
    "transferred": payload(studies=[STUDY], peer="DEST"),
    "exported": payload(studies=[STUDY], peer="PACS2"),
    "deleted": payload(door="dicomweb", user="boss", studies=[STUDY]),
    "share-link": payload(studies=[STUDY], detail={"action": "created", "link": "abc"}),
    "relay-transfer": payload(studies=[STUDY], peer="SITE-B", detail={"direction": "sent"}),
    "procedure-record": payload(
        studies=[{"uid": "1.2.3.4", "patient_id": "PID7", "patient_name": "AUDIT^ALICE"}],
        detail={
            "action": "C",
            "sop_class": UPS_PUSH,
            "sop_instance": "1.2.3.9",
            "operation": "N-CREATE",
            "state": "SCHEDULED",
            "accession": "ACC1",
            "patient_id": "PID7",
            "patient_name": "AUDIT^ALICE",
        },
    ),
    "security-alert": payload(
        outcome=4,
        user="127.0.0.1",
        local="",
        description="TLS handshake failed: certificate verify failed",
        detail={"type": "node-authentication"},
    ),
}
EXPECTED = {  # EventID, EventActionCode
    "application": ("110100", "E"),
    "association": ("110114", "E"),
    "authentication": ("110114", "E"),
    "query": ("110112", "E"),
    "stored": ("110104", "C"),
    "transferred": ("110104", "R"),
    "exported": ("110106", "R"),
    "deleted": ("110105", "D"),
    "share-link": ("110103", "C"),
    "relay-transfer": ("110104", "R"),
    "procedure-record": ("110111", "C"),
    "security-alert": ("110113", "E"),
}


def test_every_documented_event_has_an_example_here() -> None:
    assert set(EXAMPLES) == set(AUDIT_EVENTS)


@pytest.mark.parametrize("event", AUDIT_EVENTS)
def test_each_event_is_a_schema_valid_message_with_its_dcm_event_id(event: str) -> None:
    (record,) = records(event, EXAMPLES[event], "ISTHMUS")
    doc = check(record.xml)
    event_id, action = EXPECTED[event]
    assert code(doc, "EventIdentification/EventID")[:2] == (event_id, "DCM")
    ident = doc.find("EventIdentification")
    assert ident is not None
    assert ident.get("EventActionCode") == action == record.action
    assert ident.get("EventDateTime") == EXAMPLES[event]["time"] == record.time
    assert doc.find("AuditSourceIdentification").get("AuditSourceID") == "ISTHMUS"
    requestors = [p for p in doc.iter("ActiveParticipant") if p.get("UserIsRequestor") == "true"]
    assert len(requestors) == (0 if event == "application" else 1)


def test_application_start_and_stop_have_their_event_types() -> None:
    started = check(records("application", EXAMPLES["application"], "X")[0].xml)
    stopped = check(records("application", payload(detail={"state": "stopped"}), "X")[0].xml)
    assert code(started, "EventIdentification/EventTypeCode") == (
        "110120",
        "DCM",
        "Application Start",
    )
    assert code(stopped, "EventIdentification/EventTypeCode")[0] == "110121"
    assert code(started, "ActiveParticipant/RoleIDCode")[0] == "110150"


def test_a_node_refused_at_its_tls_handshake_is_a_node_authentication_alert() -> None:
    """PS3.15 A.5.3.11: type 110126 (CID 403); the node refused is the requestor, at its
    address; the archive, named by its audit source, reports it."""
    (record,) = records("security-alert", EXAMPLES["security-alert"], "ISTHMUS-DEVICE")
    doc = check(record.xml)
    assert code(doc, "EventIdentification/EventTypeCode") == (
        "110126",
        "DCM",
        "Node Authentication",
    )
    assert doc.find("EventIdentification").get("EventOutcomeIndicator") == "4"
    node, archive = doc.findall("ActiveParticipant")
    assert (node.get("UserID"), node.get("UserIsRequestor")) == ("127.0.0.1", "true")
    assert (node.get("NetworkAccessPointID"), node.get("NetworkAccessPointTypeCode")) == (
        "127.0.0.1",
        "2",
    )
    assert (archive.get("UserID"), archive.get("UserIsRequestor")) == ("ISTHMUS-DEVICE", "false")
    assert doc.find("ParticipantObjectIdentification") is None


def test_a_failure_carries_its_outcome_and_description() -> None:
    (record,) = records("association", EXAMPLES["association"], "X")
    doc = check(record.xml)
    assert doc.find("EventIdentification").get("EventOutcomeIndicator") == "4"
    assert doc.findtext("EventIdentification/EventOutcomeDescription") == (
        "called AE title not recognized"
    )
    assert record.outcome == 4


def test_a_relayed_association_names_the_site_of_the_called_ae() -> None:
    relayed = payload(door="relay", local="PACSB", peer="B", detail={"called_address": "B (relay)"})
    (record,) = records("association", relayed, "X")
    caller, called = check(record.xml).findall("ActiveParticipant")
    assert (caller.get("UserID"), caller.get("NetworkAccessPointID")) == ("MODALITY", "127.0.0.1")
    assert (called.get("UserID"), called.get("NetworkAccessPointID")) == ("PACSB", "B (relay)")
    assert called.get("NetworkAccessPointTypeCode") == "1"  # a machine name, not an IP


def test_stored_names_source_destination_study_and_patient() -> None:
    (record,) = records("stored", EXAMPLES["stored"], "X")
    doc = check(record.xml)
    source, destination = doc.findall("ActiveParticipant")
    assert (source.get("UserID"), source.get("UserIsRequestor")) == ("MODALITY", "true")
    assert source.get("NetworkAccessPointID") == "127.0.0.1"
    assert source.get("NetworkAccessPointTypeCode") == "2"
    assert code(source, "RoleIDCode")[0] == "110153"
    assert (destination.get("UserID"), code(destination, "RoleIDCode")[0]) == ("ISTHMUS", "110152")
    study, patient = doc.findall("ParticipantObjectIdentification")
    assert study.get("ParticipantObjectID") == "1.2.3.4"
    assert (study.get("ParticipantObjectTypeCode"), study.get("ParticipantObjectTypeCodeRole")) == (
        "2",
        "3",
    )
    assert code(study, "ParticipantObjectIDTypeCode")[0] == "110180"
    sop = study.find("ParticipantObjectDescription/SOPClass")
    assert (sop.get("UID"), sop.get("NumberOfInstances")) == ("1.2.840.10008.5.1.4.1.1.2", "3")
    assert patient.get("ParticipantObjectID") == "PID7"
    assert patient.findtext("ParticipantObjectName") == "AUDIT^ALICE"
    assert record.patients == [{"id": "PID7", "name": "AUDIT^ALICE"}]
    assert record.studies == ["1.2.3.4"]


def test_a_move_names_the_requestor_the_archive_and_the_destination() -> None:
    doc = check(records("transferred", EXAMPLES["transferred"], "X")[0].xml)
    roles = {
        p.get("UserID"): (p.get("UserIsRequestor"), p.find("RoleIDCode"))
        for p in doc.findall("ActiveParticipant")
    }
    assert roles["MODALITY"][0] == "true" and roles["MODALITY"][1] is None
    assert roles["ISTHMUS"][1].get("csd-code") == "110153"  # source of the instances
    assert roles["DEST"][1].get("csd-code") == "110152"


def test_a_c_find_query_is_a_report_with_its_identifier_in_a_transfer_syntax() -> None:
    """PS3.15 A.5.3.10: the SOP queried is a system object (2) in the role of a report
    (3), its ID the SOP Class UID (110181); the query is the identifier, base64, in the
    transfer syntax that ParticipantObjectDetail "TransferSyntax" names."""
    doc = check(records("query", EXAMPLES["query"], "X")[0].xml)
    obj = doc.find("ParticipantObjectIdentification")
    assert obj.get("ParticipantObjectID") == "1.2.840.10008.5.1.4.1.2.2.1"
    assert (obj.get("ParticipantObjectTypeCode"), obj.get("ParticipantObjectTypeCodeRole")) == (
        "2",
        "3",
    )
    assert code(obj, "ParticipantObjectIDTypeCode")[0] == "110181"
    (detail,) = obj.findall("ParticipantObjectDetail")
    assert detail.get("type") == "TransferSyntax"
    syntax = base64.b64decode(detail.get("value")).decode("ascii")
    assert syntax == "1.2.840.10008.1.2.1"
    raw = DicomBytesIO(base64.b64decode(obj.findtext("ParticipantObjectQuery")))
    identifier = read_dataset(raw, is_implicit_VR=False, is_little_endian=True)
    assert "PatientName" in identifier and identifier.PatientName == ""


def test_a_refused_c_find_without_identifier_still_names_its_transfer_syntax() -> None:
    event = payload(outcome=4, sop_class="1.2.840.10008.5.1.4.31", query="")
    obj = check(records("query", event, "X")[0].xml).find("ParticipantObjectIdentification")
    assert obj.findtext("ParticipantObjectQuery") == ""
    assert obj.find("ParticipantObjectDetail").get("type") == "TransferSyntax"


def test_a_qido_query_is_its_url_and_query_string() -> None:
    event = payload(door="dicomweb", local="/dicom-web/studies", query="PatientID=P1")
    obj = check(records("query", event, "X")[0].xml).find("ParticipantObjectIdentification")
    assert obj.get("ParticipantObjectID") == "/dicom-web/studies"
    assert code(obj, "ParticipantObjectIDTypeCode")[0] == "12"
    assert base64.b64decode(obj.findtext("ParticipantObjectQuery")) == b"PatientID=P1"


def test_an_event_naming_two_studies_is_two_messages() -> None:
    other = {**STUDY, "uid": "1.2.3.5", "patient_id": "PID8"}
    both = records("stored", payload(studies=[STUDY, other]), "X")
    assert [r.studies for r in both] == [["1.2.3.4"], ["1.2.3.5"]]
    assert [r.patients[0]["id"] for r in both] == ["PID7", "PID8"]


def test_text_that_looks_like_xml_is_escaped_not_injected() -> None:
    hostile = {**STUDY, "patient_name": "</ParticipantObjectName><Evil/>"}
    doc = check(records("stored", payload(studies=[hostile], user="<x>&"), "X")[0].xml)
    assert doc.find(".//Evil") is None
    assert doc.find("ActiveParticipant").get("UserID") == "<x>&"


def test_the_schema_check_refuses_what_the_standard_refuses() -> None:
    """The validator is no rubber stamp: no audit source, a bad outcome, no EventID."""
    (record,) = records("stored", EXAMPLES["stored"], "X")
    broken = [
        record.xml.replace('<AuditSourceIdentification AuditSourceID="X">', "<X>").replace(
            "</AuditSourceIdentification>", "</X>"
        ),
        record.xml.replace('EventOutcomeIndicator="0"', 'EventOutcomeIndicator="3"'),
        record.xml.replace("<EventID ", "<EventIDX "),
    ]
    for xml in broken:
        with pytest.raises(AssertionError):
            check(xml)


def test_control_characters_a_caller_sends_still_give_well_formed_xml() -> None:
    """XML 1.0 (2.2 Char) has no control characters but tab, CR and LF; an A-ASSOCIATE-RQ
    can carry them in its calling AE title, and the rejection is audited before the
    title is validated: they are replaced, and the message stays a valid one."""
    event = payload(user="EVIL\x01\x1b", outcome=4, description="bad\x00 title\x7f\ufffe")
    record = records("association", event, "X")[0]
    doc = check(record.xml)
    assert doc.find("ActiveParticipant").get("UserID") == "EVIL\ufffd\ufffd"
    assert doc.findtext(".//EventOutcomeDescription") == "bad\ufffd title\x7f\ufffd"


def test_a_procedure_record_names_requestor_archive_study_with_the_step_and_patient() -> None:
    """PS3.15 A.5.3.15: the requestor and the archive; the Study (type 2, role 3, 110180)
    whose description names the step (a UPS: one instance of UPS Push) and accession;
    the Patient (type 1, role 1, RFC-3881 2 "Patient Number")."""
    (record,) = records("procedure-record", EXAMPLES["procedure-record"], "X")
    doc = check(record.xml)
    requestor, archive = doc.findall("ActiveParticipant")
    assert (requestor.get("UserID"), requestor.get("UserIsRequestor")) == ("MODALITY", "true")
    assert requestor.get("NetworkAccessPointID") == "127.0.0.1"
    assert (archive.get("UserID"), archive.get("UserIsRequestor")) == ("ISTHMUS", "false")
    study, patient = doc.findall("ParticipantObjectIdentification")
    assert study.get("ParticipantObjectID") == "1.2.3.4"
    assert (study.get("ParticipantObjectTypeCode"), study.get("ParticipantObjectTypeCodeRole")) == (
        "2",
        "3",
    )
    assert code(study, "ParticipantObjectIDTypeCode")[0] == "110180"
    assert study.find("ParticipantObjectDescription/Accession").get("Number") == "ACC1"
    sop = study.find("ParticipantObjectDescription/SOPClass")
    assert (sop.get("UID"), sop.get("NumberOfInstances")) == (UPS_PUSH, "1")
    assert sop.find("Instance").get("UID") == "1.2.3.9"
    assert patient.get("ParticipantObjectID") == "PID7"
    assert (
        patient.get("ParticipantObjectTypeCode"),
        patient.get("ParticipantObjectTypeCodeRole"),
    ) == (
        "1",
        "1",
    )
    assert code(patient, "ParticipantObjectIDTypeCode") == ("2", "RFC-3881", "Patient Number")
    assert patient.findtext("ParticipantObjectName") == "AUDIT^ALICE"
    assert doc.findtext("EventIdentification/EventOutcomeDescription") == "SCHEDULED"
    assert (record.patients, record.studies) == (
        [{"id": "PID7", "name": "AUDIT^ALICE"}],
        ["1.2.3.4"],
    )


def test_a_procedure_record_of_an_mpps_update_names_the_mpps_and_every_study_in_one() -> None:
    """One message per change, naming its studies (A.5.3.15: Study 0..N); an MPPS is
    the description's MPPS element; the patient the index found for a study."""
    event = payload(
        studies=[
            {"uid": "1.2.3.4", "patient_id": "PID7", "patient_name": "A^B"},
            {"uid": "1.2.3.5"},
        ],
        detail={"action": "U", "sop_class": MPPS, "sop_instance": "1.2.3.8", "state": "COMPLETED"},
    )
    (record,) = records("procedure-record", event, "X")
    doc = check(record.xml)
    assert doc.find("EventIdentification").get("EventActionCode") == "U" == record.action
    first, second, patient = doc.findall("ParticipantObjectIdentification")
    assert [first.get("ParticipantObjectID"), second.get("ParticipantObjectID")] == [
        "1.2.3.4",
        "1.2.3.5",
    ]
    assert first.find("ParticipantObjectDescription/MPPS").get("UID") == "1.2.3.8"
    assert first.find("ParticipantObjectDescription/SOPClass") is None
    assert patient.get("ParticipantObjectID") == "PID7"
    assert record.studies == ["1.2.3.4", "1.2.3.5"]


def test_a_refused_procedure_record_without_study_or_patient_is_still_valid() -> None:
    event = payload(
        outcome=4,
        description="no work item 1.2.3.7",
        detail={"action": "U", "sop_class": UPS_PUSH, "sop_instance": "1.2.3.7", "state": "X"},
    )
    (record,) = records("procedure-record", event, "X")
    doc = check(record.xml)
    assert doc.find("EventIdentification").get("EventOutcomeIndicator") == "4"
    assert doc.findtext(".//EventOutcomeDescription") == "no work item 1.2.3.7"
    assert doc.findall("ParticipantObjectIdentification") == []
    assert (record.patients, record.studies, record.outcome) == ([], [], 4)
