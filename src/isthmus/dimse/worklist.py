"""Modality Worklist Information Model - FIND, SCP (PS3.4 K.6.1), from scheduled work items.

A modality asks for its Scheduled Procedure Steps by the keys of PS3.4 Table K.6-1
(ScheduledStationAETitle, ScheduledProcedureStepStartDate/Time, Modality, PatientID,
AccessionNumber, ...).  The worklist is the archive's work items (UPS, PS3.4 CC) in
the state SCHEDULED: each MWL key is mapped onto the work item attribute that holds
it (the mapping is the one documented in archive/workitems.py), matched there by the
query engine (`WorkItems.search`), and each match is mapped back to a worklist item
of which only the requested keys are returned (PS3.4 C.2.2.1.3).

Matching: the keys below match; any other key is return only.  Date and time are
matched independently (PS3.4 C.2.2.2.5 without the combined date-time extended
negotiation), each against its part of the work item's Scheduled Procedure Step Start
DateTime as written, before any UTC offset: the date and time the worklist item shows
(no Timezone Query Adjustment is negotiated, so nothing is converted).  The query
engine only narrows the candidates by a window a day wider on each side.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from pydicom.dataset import Dataset

from isthmus.archive import SCHEDULED, Archive, QueryError
from isthmus.config import Settings
from isthmus.dicom.status import (
    CANCEL,
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
    NOT_AUTHORIZED,
    PENDING,
    SUCCESS,
    UNABLE_TO_PROCESS,
)
from isthmus.dimse import messages as msg
from isthmus.dimse.identifiers import identifier_params
from isthmus.dimse.nmodel import encode_json, select
from isthmus.dimse.service import Channel, Message, audit_query
from isthmus.node.access import AccessControl

log = logging.getLogger(__name__)

MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"

SPS = "00400100"  # Scheduled Procedure Step Sequence
SPS_START_DATE, SPS_START_TIME = "00400002", "00400003"
REQUEST = "0040A370"  # Referenced Request Sequence (of the work item)
START = "00404005"  # Scheduled Procedure Step Start DateTime (of the work item)

# MWL key (in the SPS item) → work item key (QIDO-style name for WorkItems.search)
_SPS_KEYS = {
    "00400001": "00404025.00080100",  # ScheduledStationAETitle → Station Name Code Value
    "00080060": "00404026.00080100",  # Modality → Station Class Code Value
    "00400006": "00404034.00404037",  # ScheduledPerformingPhysicianName → Human Performer
    "00400007": "00741204",  # ScheduledProcedureStepDescription → Procedure Step Label
    "00400009": f"{REQUEST}.00401001",  # ScheduledProcedureStepID → Requested Procedure ID
}
# MWL top-level key → work item key
_TOP_KEYS = {
    "00100010": "00100010",  # PatientName
    "00100020": "00100020",  # PatientID
    "00100030": "00100030",  # PatientBirthDate
    "00100040": "00100040",  # PatientSex
    "00080050": f"{REQUEST}.00080050",  # AccessionNumber
    "00401001": f"{REQUEST}.00401001",  # RequestedProcedureID
    "00321060": f"{REQUEST}.00321060",  # RequestedProcedureDescription
    "0020000D": f"{REQUEST}.0020000D",  # StudyInstanceUID
}


def workitem_params(params: dict[str, str]) -> tuple[dict[str, str], str, str]:
    """MWL keys (identifier_params of the C-FIND identifier) → work item search keys,
    and the date and time keys (matched apart, on the date and time part of the start)."""
    out = {"ProcedureStepState": SCHEDULED}
    for key, value in params.items():
        if not value:
            continue
        if key in _TOP_KEYS:
            out[_TOP_KEYS[key]] = value
        elif key.startswith(SPS + ".") and key[9:] in _SPS_KEYS:
            out[_SPS_KEYS[key[9:]]] = value
    day = params.get(f"{SPS}.{SPS_START_DATE}", "")
    if day:
        out[START] = _start_window(day)
    return out, day, params.get(f"{SPS}.{SPS_START_TIME}", "")


def _start_window(key: str) -> str:
    """The DA key (single value or range, PS3.4 C.2.2.2.5) as a DT range a day wider on
    each side: it holds every start whose local date matches, whatever its UTC offset
    (at most 14 hours); `_date_matches` then decides.  QueryError for a bad date."""
    low, _, high = key.partition("-") if "-" in key else (key, "", key)
    return "-".join(_da(part, days) if part else "" for part, days in ((low, -1), (high, 1)))


def _da(value: str, days: int) -> str:
    """The YYYYMMDD `days` after `value`; QueryError if `value` is not a date."""
    try:
        if len(value) != 8 or not value.isdigit():
            raise ValueError(value)
        moved = date(int(value[:4]), int(value[4:6]), int(value[6:])) + timedelta(days=days)
    except (ValueError, OverflowError):
        raise QueryError(f"ScheduledProcedureStepStartDate: {value!r} is not a date") from None
    return moved.strftime("%Y%m%d")


def worklist_item(workitem: dict[str, Any]) -> dict[str, Any]:
    """The Modality Worklist view of a work item (DICOM JSON)."""
    request = _first(workitem, REQUEST)
    start = str(_value(workitem, START) or "")
    date, time = start[:8], start[8:].split("+")[0].split("-")[0]
    step: dict[str, Any] = {
        "00400001": _el("AE", _value(_first(workitem, "00404025"), "00080100")),
        "00080060": _el("CS", _value(_first(workitem, "00404026"), "00080100")),
        SPS_START_DATE: _el("DA", date),
        SPS_START_TIME: _el("TM", time),
        "00400006": _el("PN", _value(_first(workitem, "00404034"), "00404037")),
        "00400007": _el("LO", _value(workitem, "00741204")),
        "00400009": _el("SH", _value(request, "00401001")),
        "00400008": workitem.get("00404018") or {"vr": "SQ"},  # protocol ← workitem code
        "00400020": _el("CS", SCHEDULED),
    }
    item: dict[str, Any] = {
        tag: workitem.get(tag) or {"vr": vr}
        for tag, vr in (("00100010", "PN"), ("00100020", "LO"), ("00100030", "DA"))
    }
    item["00100040"] = workitem.get("00100040") or {"vr": "CS"}
    for tag, vr in (("00080050", "SH"), ("00401001", "SH"), ("00321060", "LO")):
        item[tag] = _el(vr, _value(request, tag))
    item["0020000D"] = _el("UI", _value(request, "0020000D"))
    item["00401003"] = _el("SH", _value(workitem, "00741200"))  # priority
    item[SPS] = {"vr": "SQ", "Value": [step]}
    return item


class WorklistSCP:
    """C-FIND handler of the service table for the Modality Worklist model."""

    def __init__(self, archive: Archive, settings: Settings, access: AccessControl) -> None:
        self.workitems = archive.workitems
        self.access = access

    def find(self, channel: Channel, message: Message) -> None:
        if not self.access.allowed("worklist", channel.calling_aet, channel.address):
            channel.respond(message, msg.C_FIND_RSP, NOT_AUTHORIZED, comment="not authorized")
            audit_query(channel, message, "", outcome=4, description="not authorized")
            return
        ts = channel.transfer_syntax(message)
        try:
            identifier = msg.decode_identifier(message.require_dataset(), ts)
            wanted = _wanted(identifier)
            params, day, time = workitem_params(identifier_params(identifier))
            matches = [
                worklist_item(w)
                for w in self.workitems.search(params)
                if _start_matches(str(_value(w, START) or ""), day, time)
            ]
            audit_query(channel, message, identifier.to_json())
        except QueryError as exc:
            channel.respond(
                message, msg.C_FIND_RSP, IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, comment=str(exc)
            )
            return
        except Exception as exc:  # noqa: BLE001 - an identifier pydicom cannot read
            log.warning("worklist C-FIND from %s: %s", channel.calling_aet, exc)
            channel.respond(message, msg.C_FIND_RSP, UNABLE_TO_PROCESS, comment="undecodable")
            return
        log.info("worklist C-FIND from %s: %d item(s)", channel.calling_aet, len(matches))
        for item in matches:
            if channel.cancelled(message):
                channel.respond(message, msg.C_FIND_RSP, CANCEL)
                return
            data = encode_json(select(item, wanted), ts)  # declares ISO_IR 192 if need be
            channel.respond(message, msg.C_FIND_RSP, PENDING, dataset=data)
        channel.respond(message, msg.C_FIND_RSP, SUCCESS)


def _wanted(identifier: Dataset) -> dict[str, Any]:
    wanted = dict(identifier.to_json_dict(bulk_data_threshold=1 << 30))
    wanted.pop("00080005", None)
    return wanted


def _start_matches(start: str, day: str, time: str) -> bool:
    """The start's own date and time (before any UTC offset) against the keys."""
    return _date_matches(start[:8], day) and _time_matches(start[8:14], time)


def _date_matches(value: str, key: str) -> bool:
    """DA single value or range (PS3.4 C.2.2.2.5) against YYYYMMDD, compared as digits."""
    if not key:
        return True
    low, _, high = key.partition("-") if "-" in key else (key, "", key)
    return (not low or value >= low) and (not high or value <= high)


def _time_matches(time: str, key: str) -> bool:
    """TM single value or range (PS3.4 C.2.2.2.5) against HHMMSS, compared as digits."""
    if not key:
        return True
    low, _, high = key.partition("-") if "-" in key else (key, "", key)
    clock = time.ljust(6, "0")
    return (not low or clock >= _tm(low, "0")) and (not high or clock <= _tm(high, "9"))


def _tm(value: str, fill: str) -> str:
    digits = value.replace(":", "").split(".")[0]
    return digits.ljust(6, fill)[:6]


def _first(ds: dict[str, Any], tag: str) -> dict[str, Any]:
    values = (ds.get(tag) or {}).get("Value") or []
    return values[0] if values and isinstance(values[0], dict) else {}


def _value(ds: dict[str, Any], tag: str) -> Any:
    values = (ds.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def _el(vr: str, value: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": [value]} if value not in (None, "") else {"vr": vr}
