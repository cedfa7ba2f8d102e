"""DICOM audit messages (PS3.15 A.5): an activity event to the XML of the A.5.1 schema.

One `Record` per message: the XML (``AuditMessage``: EventIdentification, one or more
ActiveParticipant, AuditSourceIdentification, ParticipantObjectIdentification) and the
fields the audit log is searched by.  An event naming several studies becomes one
message per study (A.5.3.7: "DICOM Instances Transferred" describes one patient's
study), so a transfer of three studies is three messages, not one per instance.  A
Procedure Record (A.5.3.15) is one message per change: its Study objects (0..N), then
its Patient.

Codes: the DCM event IDs, event types and roles of PS3.16 (CID 400-405) and PS3.15
A.5.3; participant object ID types of RFC 3881 (2 "Patient Number", 12 "URI") and DCM
(110180 "Study Instance UID", 110181 "SOP Class UID").  Every coded value carries
csd-code, codeSystemName and originalText, as the schema's CodedValueType asks.
The schema (A.5.1.1) makes a participant object name or query mandatory: a study's
name is its Study Instance UID, a patient's the Patient's Name (possibly empty).
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from isthmus.archive import MPPS_SOP_CLASS

Code = tuple[str, str, str]  # csd-code, codeSystemName, originalText

# (EventID, EventTypeCode or None, EventActionCode) per activity event (A.5.3)
APPLICATION_ACTIVITY: Code = ("110100", "DCM", "Application Activity")
INSTANCES_ACCESSED: Code = ("110103", "DCM", "DICOM Instances Accessed")
INSTANCES_TRANSFERRED: Code = ("110104", "DCM", "DICOM Instances Transferred")
STUDY_DELETED: Code = ("110105", "DCM", "DICOM Study Deleted")
EXPORT: Code = ("110106", "DCM", "Export")
PROCEDURE_RECORD: Code = ("110111", "DCM", "Procedure Record")
QUERY: Code = ("110112", "DCM", "Query")
SECURITY_ALERT: Code = ("110113", "DCM", "Security Alert")
USER_AUTHENTICATION: Code = ("110114", "DCM", "User Authentication")
APPLICATION_START: Code = ("110120", "DCM", "Application Start")
APPLICATION_STOP: Code = ("110121", "DCM", "Application Stop")
LOGIN: Code = ("110122", "DCM", "Login")
# Security Alert types (PS3.16 CID 403)
SECURITY_ALERT_TYPES: dict[str, Code] = {
    "node-authentication": ("110126", "DCM", "Node Authentication"),
}
# Roles (PS3.16 CID 402)
APPLICATION: Code = ("110150", "DCM", "Application")
DESTINATION: Code = ("110152", "DCM", "Destination Role ID")
SOURCE: Code = ("110153", "DCM", "Source Role ID")
# Participant object ID types (RFC 3881 5.5.4, PS3.16 CID 404)
PATIENT_NUMBER: Code = ("2", "RFC-3881", "Patient Number")
URI: Code = ("12", "RFC-3881", "URI")
STUDY_INSTANCE_UID: Code = ("110180", "DCM", "Study Instance UID")
SOP_CLASS_UID: Code = ("110181", "DCM", "SOP Class UID")
QUERY_SYNTAX = "1.2.840.10008.1.2.1"  # Explicit VR Little Endian: how a C-FIND query is kept

ACTIONS = {
    "application": (APPLICATION_ACTIVITY, "E"),
    "association": (USER_AUTHENTICATION, "E"),
    "authentication": (USER_AUTHENTICATION, "E"),
    "query": (QUERY, "E"),
    "stored": (INSTANCES_TRANSFERRED, "C"),
    "transferred": (INSTANCES_TRANSFERRED, "R"),
    "exported": (EXPORT, "R"),
    "deleted": (STUDY_DELETED, "D"),
    "share-link": (INSTANCES_ACCESSED, "R"),
    "relay-transfer": (INSTANCES_TRANSFERRED, "R"),
    "procedure-record": (PROCEDURE_RECORD, "U"),
    "security-alert": (SECURITY_ALERT, "E"),
}
SHARE_LINK_ACTIONS = {"created": "C", "used": "R", "revoked": "D"}
# What XML 1.0 (2.2, Char) does not allow: control characters but tab, LF and CR,
# surrogates, U+FFFE and U+FFFF.  ElementTree writes them as they are.
NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass
class Record:
    """One audit message and what the audit log is searched by (docs/operations.md)."""

    time: str
    event: str
    action: str
    outcome: int
    user: str
    source: str
    patients: list[dict[str, str]] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)
    xml: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "event": self.event,
            "action": self.action,
            "outcome": self.outcome,
            "user": self.user,
            "source": self.source,
            "patients": self.patients,
            "studies": self.studies,
            "xml": self.xml,
        }


def records(event: str, payload: Mapping[str, Any], audit_source: str) -> list[Record]:
    """The audit messages of one ``audit.<event>`` payload (archive/activity.py)."""
    studies = list(payload.get("studies") or [])
    if event == "procedure-record":
        return [_procedure_record(payload, audit_source)]
    if not studies:
        return [_record(event, payload, audit_source, None)]
    return [_record(event, payload, audit_source, study) for study in studies]


def _record(
    event: str, payload: Mapping[str, Any], audit_source: str, study: Mapping[str, Any] | None
) -> Record:
    event_id, action = ACTIONS[event]
    detail = payload.get("detail") or {}
    if event == "share-link":
        action = SHARE_LINK_ACTIONS.get(str(detail.get("action", "")), "R")
    if event == "relay-transfer" and detail.get("direction") == "received":
        action = "C"
    root = ET.Element("AuditMessage")
    _event_identification(root, event, payload, event_id, action)
    for participant in _participants(event, payload, audit_source):
        _participant(root, *participant)
    source = ET.SubElement(root, "AuditSourceIdentification", AuditSourceID=audit_source)
    ET.SubElement(source, "AuditSourceTypeCode", {"csd-code": "4"})  # application server
    patients: list[dict[str, str]] = []
    studies: list[str] = []
    if study is not None:
        studies.append(str(study["uid"]))
        _study_object(root, study)
        if study.get("patient_id") is not None:
            patient = {"id": str(study["patient_id"]), "name": str(study.get("patient_name", ""))}
            patients.append(patient)
            _patient_object(root, patient)
    if payload.get("query") is not None:
        _query_object(root, payload)
    return Record(
        time=str(payload["time"]),
        event=event,
        action=action,
        outcome=int(payload.get("outcome", 0)),
        user=str(payload.get("user") or ""),
        source=str(payload.get("address") or ""),
        patients=patients,
        studies=studies,
        xml=_well_formed(ET.tostring(root, encoding="unicode")),
    )


def _procedure_record(payload: Mapping[str, Any], audit_source: str) -> Record:
    """A.5.3.15 Procedure Record: EventActionCode C (a step created) or U (changed); the
    requestor as source and the archive as destination (as dcm4chee-arc writes it); a
    Study object per study the step names, its description naming the step (an MPPS by
    its UID; a UPS as one instance of the UPS Push SOP class) and the accession; the
    Patient when the step (or the index, for its studies) names one.  An accepted
    change's EventOutcomeDescription is the step's state after it."""
    detail = payload.get("detail") or {}
    action = str(detail.get("action") or "U")
    if action not in ("C", "R", "U", "D"):
        action = "U"
    if payload.get("description") is None and detail.get("state") and not payload.get("outcome"):
        payload = {**payload, "description": str(detail["state"])}
    root = ET.Element("AuditMessage")
    _event_identification(root, "procedure-record", payload, PROCEDURE_RECORD, action)
    user = str(payload.get("user") or "unknown")
    _participant(root, user, True, payload.get("address"), SOURCE)
    _participant(root, str(payload.get("local") or "isthmus"), False, None, DESTINATION)
    source = ET.SubElement(root, "AuditSourceIdentification", AuditSourceID=audit_source)
    ET.SubElement(source, "AuditSourceTypeCode", {"csd-code": "4"})
    studies = [s for s in payload.get("studies") or [] if s.get("uid")]
    for study in studies:
        _procedure_study_object(root, str(study["uid"]), detail)
    patients: list[dict[str, str]] = []
    named = (
        detail
        if detail.get("patient_id")
        else next((s for s in studies if s.get("patient_id")), None)
    )
    if named is not None:
        patients.append(
            {"id": str(named["patient_id"]), "name": str(named.get("patient_name") or "")}
        )
        _patient_object(root, patients[0])
    return Record(
        time=str(payload["time"]),
        event="procedure-record",
        action=action,
        outcome=int(payload.get("outcome", 0)),
        user=str(payload.get("user") or ""),
        source=str(payload.get("address") or ""),
        patients=patients,
        studies=[str(s["uid"]) for s in studies],
        xml=_well_formed(ET.tostring(root, encoding="unicode")),
    )


def _procedure_study_object(root: ET.Element, uid: str, detail: Mapping[str, Any]) -> None:
    """A study of a Procedure Record (type 2 system object, role 3 report), with the step
    in its ParticipantObjectDescription: an MPPS element for an MPPS, a SOPClass with
    its one Instance for a UPS (the schema's order: MPPS, Accession, SOPClass)."""
    obj = _study_identification(root, uid)
    sop_class = str(detail.get("sop_class") or "")
    instance = str(detail.get("sop_instance") or "")
    accession = str(detail.get("accession") or "")
    if not (instance or accession):
        return
    description = ET.SubElement(obj, "ParticipantObjectDescription")
    if instance and sop_class == MPPS_SOP_CLASS:
        ET.SubElement(description, "MPPS", UID=instance)
    if accession:
        ET.SubElement(description, "Accession", Number=accession)
    if instance and sop_class and sop_class != MPPS_SOP_CLASS:
        element = ET.SubElement(description, "SOPClass", UID=sop_class, NumberOfInstances="1")
        ET.SubElement(element, "Instance", UID=instance)


def _well_formed(xml: str) -> str:
    """The message with each character XML 1.0 does not allow replaced by U+FFFD: a
    caller's text (a calling AE title not yet validated, a reason) may hold them, and
    the collector must still be able to parse the message."""
    return NOT_XML_CHAR.sub("\ufffd", xml)


def _coded(parent: ET.Element, tag: str, code: Code) -> ET.Element:
    return ET.SubElement(
        parent, tag, {"csd-code": code[0], "codeSystemName": code[1], "originalText": code[2]}
    )


def _event_identification(
    root: ET.Element, event: str, payload: Mapping[str, Any], event_id: Code, action: str
) -> None:
    ident = ET.SubElement(
        root,
        "EventIdentification",
        EventActionCode=action,
        EventDateTime=str(payload["time"]),
        EventOutcomeIndicator=str(int(payload.get("outcome", 0))),
    )
    _coded(ident, "EventID", event_id)
    if event == "application":
        state = (payload.get("detail") or {}).get("state")
        _coded(
            ident, "EventTypeCode", APPLICATION_STOP if state == "stopped" else APPLICATION_START
        )
    elif event in ("association", "authentication"):
        _coded(ident, "EventTypeCode", LOGIN)
    elif event == "security-alert":
        kind = str((payload.get("detail") or {}).get("type", ""))
        _coded(ident, "EventTypeCode", SECURITY_ALERT_TYPES[kind])
    if payload.get("description"):
        ET.SubElement(ident, "EventOutcomeDescription").text = str(payload["description"])


# (UserID, UserIsRequestor, NetworkAccessPointID or None, role or None)
Participant = tuple[str, bool, str | None, Code | None]


def _participants(event: str, payload: Mapping[str, Any], audit_source: str) -> list[Participant]:
    """Who took part (A.5.3): the requestor (UserIsRequestor), the archive, a peer."""
    user = str(payload.get("user") or "unknown")
    address = payload.get("address")
    local = str(payload.get("local") or "isthmus")
    peer = str(payload.get("peer") or "")
    if event == "application":
        return [(local, False, None, APPLICATION)]
    if event == "security-alert":  # A.5.3.11: the node refused, and the archive reporting
        return [(user, True, address, None), (audit_source, False, None, None)]
    if event in ("association", "authentication", "query", "deleted", "share-link"):
        role = SOURCE if event == "query" else None
        # A relayed association's called AE is at another site: its access point says so.
        called = (payload.get("detail") or {}).get("called_address")
        return [
            (user, True, address, role),
            (local, False, str(called) if called else None, DESTINATION if role else None),
        ]
    if event == "stored" or (
        event == "relay-transfer" and (payload.get("detail") or {}).get("direction") == "received"
    ):
        return [(user, True, address, SOURCE), (local, False, None, DESTINATION)]
    # sent: transferred, exported, relay-transfer (sent)
    if peer and peer != user:  # C-MOVE, export: the requestor is neither end
        return [
            (user, True, address, None),
            (local, False, None, SOURCE),
            (peer, False, None, DESTINATION),
        ]
    return [(user, True, address, DESTINATION), (local, False, None, SOURCE)]


def _participant(
    root: ET.Element, user: str, requestor: bool, address: str | None, role: Code | None
) -> None:
    attrs = {"UserID": user, "UserIsRequestor": "true" if requestor else "false"}
    if address:
        attrs["NetworkAccessPointID"] = address
        attrs["NetworkAccessPointTypeCode"] = "2" if _is_ip(address) else "1"
    element = ET.SubElement(root, "ActiveParticipant", attrs)
    if role is not None:
        _coded(element, "RoleIDCode", role)


def _is_ip(address: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _study_object(root: ET.Element, study: Mapping[str, Any]) -> None:
    """The study (type 2 system object, role 3 report; A.5.3.7)."""
    obj = _study_identification(root, str(study["uid"]))
    classes = study.get("sop_classes") or {}
    if classes:
        description = ET.SubElement(obj, "ParticipantObjectDescription")
        for sop_class, count in classes.items():
            attrs = {"NumberOfInstances": str(int(count))}
            if sop_class:
                attrs["UID"] = sop_class
            ET.SubElement(description, "SOPClass", attrs)


def _study_identification(root: ET.Element, uid: str) -> ET.Element:
    """A study's ParticipantObjectIdentification up to its description: a type 2 system
    object, role 3 report, identified by its Study Instance UID (A.5.3.7, A.5.3.15)."""
    obj = ET.SubElement(
        root,
        "ParticipantObjectIdentification",
        ParticipantObjectID=uid,
        ParticipantObjectTypeCode="2",
        ParticipantObjectTypeCodeRole="3",
    )
    _coded(obj, "ParticipantObjectIDTypeCode", STUDY_INSTANCE_UID)
    ET.SubElement(obj, "ParticipantObjectName").text = uid
    return obj


def _patient_object(root: ET.Element, patient: Mapping[str, str]) -> None:
    """The patient (type 1 person, role 1 patient; A.5.3.7)."""
    obj = ET.SubElement(
        root,
        "ParticipantObjectIdentification",
        ParticipantObjectID=patient["id"],
        ParticipantObjectTypeCode="1",
        ParticipantObjectTypeCodeRole="1",
    )
    _coded(obj, "ParticipantObjectIDTypeCode", PATIENT_NUMBER)
    ET.SubElement(obj, "ParticipantObjectName").text = patient["name"]


def _query_object(root: ET.Element, payload: Mapping[str, Any]) -> None:
    """The query (A.5.3.10).  A C-FIND: the SOP class queried, a system object (2) in
    the role of a report (3), its identifier as a data set in Explicit VR Little Endian,
    which ParticipantObjectDetail "TransferSyntax" names (both mandatory there).  A
    QIDO-RS or UPS-RS search: its URL (RFC 3881 type 12, role 24 query) and query string.
    The query itself is base64-encoded."""
    sop_class = payload.get("sop_class")
    syntax = None
    if sop_class:
        ident, code, role = str(sop_class), SOP_CLASS_UID, "3"
        query, syntax = _identifier(str(payload.get("query") or ""))
    else:
        ident, code, role = str(payload.get("local") or ""), URI, "24"
        query = str(payload["query"]).encode("utf-8")
    obj = ET.SubElement(
        root,
        "ParticipantObjectIdentification",
        ParticipantObjectID=ident or "query",
        ParticipantObjectTypeCode="2",
        ParticipantObjectTypeCodeRole=role,
    )
    _coded(obj, "ParticipantObjectIDTypeCode", code)
    ET.SubElement(obj, "ParticipantObjectQuery").text = base64.b64encode(query).decode("ascii")
    if syntax:
        value = base64.b64encode(syntax.encode("ascii")).decode("ascii")
        ET.SubElement(obj, "ParticipantObjectDetail", type="TransferSyntax", value=value)


def _identifier(query: str) -> tuple[bytes, str | None]:
    """A C-FIND identifier given as DICOM JSON (PS3.18 F) as a data set in Explicit VR
    Little Endian, and that syntax; empty when there is none (a refused request).  JSON
    that is no data set is kept as it came, with no syntax: the message must be written."""
    if not query:
        return b"", QUERY_SYNTAX
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    try:
        write_dataset(out, Dataset.from_json(query))
    except Exception:  # noqa: BLE001 - pydicom raises many kinds for bad JSON or values
        return query.encode("utf-8"), None
    return out.getvalue(), QUERY_SYNTAX
