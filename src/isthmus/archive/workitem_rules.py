"""The UPS state machine and attribute rules (PS3.4 CC.1.1, CC.2.5, Table CC.2.5-3).

Pure functions over DICOM JSON: `check_create` (N-CREATE / UPS-RS create),
`check_update` (N-SET / UPS-RS update), `check_state_change` (N-ACTION Change UPS State /
UPS-RS change state) and `check_final_state` (the final state requirements).  Each
refusal is a `WorkItemError` carrying its DIMSE status (the status tables of PS3.4
CC.2.1 Change UPS State, CC.2.2 Request UPS Cancel, CC.2.5 N-CREATE, CC.2.6 N-SET, and PS3.7
Annex C); every door maps that status to its own answer, so the rules live here once,
whichever door changes a work item.

States (CC.1.1, Figure CC.1.1-1)::

    SCHEDULED ──(Change State + new Transaction UID)──► IN PROGRESS ──► COMPLETED
        │                                                      └──────► CANCELED
    Request Cancel while SCHEDULED: the SCP itself takes it IN PROGRESS, then CANCELED
    (CC.2.2.3), one State Report for each.

Only N-CREATE makes a SCHEDULED item (0xC303 otherwise).  An IN PROGRESS item changes
only with its Transaction UID (0xC301); COMPLETED and CANCELED are final (0xC300).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

SCHEDULED, IN_PROGRESS, COMPLETED, CANCELED = "SCHEDULED", "IN PROGRESS", "COMPLETED", "CANCELED"
STATES = (SCHEDULED, IN_PROGRESS, COMPLETED, CANCELED)
FINAL_STATES = (COMPLETED, CANCELED)

UPS_PUSH_SOP_CLASS = "1.2.840.10008.5.1.4.34.6.1"

# Tags (DICOM JSON keys) the rules look at.
SPECIFIC_CHARACTER_SET = "00080005"
SOP_CLASS_UID = "00080016"
SOP_INSTANCE_UID = "00080018"
TRANSACTION_UID = "00081195"
PROCEDURE_STEP_STATE = "00741000"
PROGRESS_INFORMATION = "00741002"  # Procedure Step Progress Information Sequence
CANCELLATION_DATETIME = "00404052"
REASON_FOR_CANCELLATION = "00741238"
DISCONTINUATION_REASONS = "0074100E"
PRIORITY = "00741200"
WORKLIST_LABEL = "00741202"
PROCEDURE_STEP_LABEL = "00741204"
SCHEDULED_START = "00404005"
INPUT_READINESS = "00404041"
MODIFICATION_DATETIME = "00404010"
STATION_NAMES = "00404025"
HUMAN_PERFORMERS = "00404034"
PERFORMED_PROCEDURE = "00741216"  # Unified Procedure Step Performed Procedure Sequence
PERFORMED_START = "00404050"
PERFORMED_END = "00404051"
PATIENT_ID = "00100020"

DEFAULT_WORKLIST_LABEL = "ISTHMUS"


class UpsStatus(IntEnum):
    """The DIMSE statuses of UPS operations (PS3.4 CC.2.x, PS3.7 Annex C)."""

    SUCCESS = 0x0000
    INVALID_ATTRIBUTE_VALUE = 0x0106
    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    NO_SUCH_ACTION = 0x0123
    MISSING_ATTRIBUTE = 0x0120
    MISSING_ATTRIBUTE_VALUE = 0x0121
    NOT_AUTHORIZED = 0x0124
    CREATED_WITH_MODIFICATIONS = 0xB300
    DELETION_LOCK_NOT_GRANTED = 0xB301
    ALREADY_CANCELED = 0xB304
    COERCED = 0xB305
    ALREADY_COMPLETED = 0xB306
    MAY_NO_LONGER_BE_UPDATED = 0xC300
    WRONG_TRANSACTION_UID = 0xC301
    ALREADY_IN_PROGRESS = 0xC302
    ONLY_N_CREATE_SCHEDULES = 0xC303
    FINAL_STATE_NOT_MET = 0xC304
    NO_SUCH_WORKITEM = 0xC307
    RECEIVING_AE_UNKNOWN = 0xC308
    STATE_NOT_SCHEDULED = 0xC309
    NOT_YET_IN_PROGRESS = 0xC310
    ALREADY_COMPLETED_CANCEL = 0xC311
    PERFORMER_CANNOT_BE_CONTACTED = 0xC312

    @property
    def warning(self) -> bool:
        return 0xB000 <= self <= 0xBFFF


class WorkItemError(Exception):
    """A refused work item operation: its DIMSE status and why, in words."""

    def __init__(self, status: UpsStatus, reason: str) -> None:
        super().__init__(f"0x{int(status):04X}: {reason}")
        self.status, self.reason = status, reason


@dataclass
class Change:
    """What an accepted operation does: the new state, Transaction UID and dataset,
    and the warning statuses (success with a warning, e.g. 0xB304)."""

    state: str
    transaction_uid: str | None
    dataset: dict[str, Any]
    warnings: list[UpsStatus]


# --------------------------------------------------------------------- helpers
def value(ds: Mapping[str, Any], tag: str) -> Any:
    """The first value of an attribute, or None (absent or empty)."""
    values = (ds.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def unicode(ds: Mapping[str, Any]) -> dict[str, Any]:
    """A dataset as the store keeps it: DICOM JSON, whose values are Unicode whatever
    character set they arrived in, so without a Specific Character Set (0008,0005) that
    would misdescribe them once values of other sets join (PS3.4 CC.2.6.3: later
    operations reflect the combination of the character sets)."""
    return {tag: element for tag, element in ds.items() if tag != SPECIFIC_CHARACTER_SET}


def items(ds: Mapping[str, Any], tag: str) -> list[dict[str, Any]]:
    return [i for i in (ds.get(tag) or {}).get("Value") or [] if isinstance(i, dict)]


def element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


# Table CC.2.5-3, N-CREATE: type 1 (a value) and type 2 (present, may be empty).
_CREATE_TYPE_1 = {
    PRIORITY: "Scheduled Procedure Step Priority",
    PROCEDURE_STEP_LABEL: "Procedure Step Label",
    SCHEDULED_START: "Scheduled Procedure Step Start DateTime",
    INPUT_READINESS: "Input Readiness State",
}
_CREATE_TYPE_2 = {
    "00100010": "PN",  # Patient's Name
    PATIENT_ID: "LO",
    "00100021": "LO",  # Issuer of Patient ID
    "00100030": "DA",  # Patient's Birth Date
    "00100040": "CS",  # Patient's Sex
    "00380010": "LO",  # Admission ID
    STATION_NAMES: "SQ",
    "00404026": "SQ",  # Scheduled Station Class Code Sequence
    "00404027": "SQ",  # Scheduled Station Geographic Location Code Sequence
    "00404018": "SQ",  # Scheduled Workitem Code Sequence
    "00404021": "SQ",  # Input Information Sequence
    "0040A370": "SQ",  # Referenced Request Sequence
    PERFORMED_PROCEDURE: "SQ",
}
# Table CC.2.5-3, N-CREATE: type 1 in each item of a sequence that may have none.
REFERENCED_REQUEST = "0040A370"
_CREATE_ITEM_TYPE_1 = {
    REFERENCED_REQUEST: {"0020000D": "Study Instance UID"},
}
# Table CC.2.5-3, N-CREATE: "2/2 Shall be empty" (Procedure Step Progress Information
# Sequence) and "2/2 Shall be created empty" (Unified Procedure Step Performed Procedure
# Sequence); their items' attributes are "-/-" there, set later by N-SET.
_CREATE_EMPTY = {
    PROGRESS_INFORMATION: "Procedure Step Progress Information Sequence",
    PERFORMED_PROCEDURE: "Unified Procedure Step Performed Procedure Sequence",
}
_ENUMS = {
    PRIORITY: ("HIGH", "MEDIUM", "LOW"),
    INPUT_READINESS: ("READY", "UNAVAILABLE", "INCOMPLETE"),
}
# Not to be set by N-SET (Table CC.2.5-3, "Not allowed"); the state changes by N-ACTION.
_NOT_SETTABLE = {
    SOP_CLASS_UID: "SOP Class UID",
    SOP_INSTANCE_UID: "SOP Instance UID",
    PROCEDURE_STEP_STATE: "Procedure Step State (use Change State)",
}


_TAG_RE = re.compile(r"[0-9A-F]{8}")
_VR_RE = re.compile(r"[A-Z]{2}")


def check_shape(ds: Any, depth: int = 0) -> None:
    """A DICOM JSON dataset (PS3.18 F.2): tags of 8 hex digits, each element an object
    with a VR and, if any, a list of values; sequence items datasets too.  Anything
    else is 0x0106, before a rule looks at it."""
    if not isinstance(ds, Mapping) or depth > 8:
        raise WorkItemError(UpsStatus.INVALID_ATTRIBUTE_VALUE, "not a DICOM JSON dataset")
    for tag, elem in ds.items():
        if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
            raise WorkItemError(
                UpsStatus.INVALID_ATTRIBUTE_VALUE, f"{str(tag)[:20]!r} is not a tag"
            )
        vr = elem.get("vr") if isinstance(elem, Mapping) else None
        if not isinstance(vr, str) or not _VR_RE.fullmatch(vr):
            raise WorkItemError(UpsStatus.INVALID_ATTRIBUTE_VALUE, f"{tag}: no valid vr")
        values = elem.get("Value", [])
        if not isinstance(values, list):
            raise WorkItemError(UpsStatus.INVALID_ATTRIBUTE_VALUE, f"{tag}: Value is not a list")
        if vr == "SQ":
            for item in values:
                check_shape(item, depth + 1)


def check_create(dataset: Mapping[str, Any], uid: str, now: str) -> Change:
    """N-CREATE (PS3.4 CC.2.5): a new SCHEDULED item.  Missing type 2 attributes are
    added empty and reported as 0xB300 "created with modifications"; a missing Worklist
    Label gets the SCP's default (Table CC.2.5-3: the SCP fills it in); progress or
    performed procedure information is refused (0x0106, Table CC.2.5-3: shall be empty)."""
    check_shape(dataset)
    ds = unicode(dataset)
    state = value(ds, PROCEDURE_STEP_STATE)
    if state is None:
        raise WorkItemError(UpsStatus.MISSING_ATTRIBUTE, "Procedure Step State is required")
    if state != SCHEDULED:
        raise WorkItemError(
            UpsStatus.STATE_NOT_SCHEDULED, f"Procedure Step State is {state!r}, not SCHEDULED"
        )
    if value(ds, TRANSACTION_UID) is not None:
        raise WorkItemError(
            UpsStatus.INVALID_ATTRIBUTE_VALUE, "a new work item carries no Transaction UID"
        )
    for tag, name in _CREATE_TYPE_1.items():
        if tag not in ds:
            raise WorkItemError(UpsStatus.MISSING_ATTRIBUTE, f"{name} ({tag}) is required")
        if value(ds, tag) is None:
            raise WorkItemError(UpsStatus.MISSING_ATTRIBUTE_VALUE, f"{name} ({tag}) is empty")
    _check_items(ds)
    _check_empty(ds)
    _check_enums(ds)
    warnings: list[UpsStatus] = []
    for tag, vr in _CREATE_TYPE_2.items():
        if tag not in ds:
            ds[tag] = element(vr)
            warnings.append(UpsStatus.CREATED_WITH_MODIFICATIONS)
    if value(ds, WORKLIST_LABEL) is None:  # the SCP's duty, not a modification
        ds[WORKLIST_LABEL] = element("LO", DEFAULT_WORKLIST_LABEL)
    ds[SOP_CLASS_UID] = element("UI", UPS_PUSH_SOP_CLASS)
    ds[SOP_INSTANCE_UID] = element("UI", uid)
    ds[MODIFICATION_DATETIME] = element("DT", now)
    return Change(SCHEDULED, None, ds, sorted(set(warnings)))


def _check_items(ds: Mapping[str, Any]) -> None:
    """The type 1 attributes of each item (Table CC.2.5-3): a Referenced Request
    Sequence item names the Study Instance UID the performer files its results under."""
    for sequence, required in _CREATE_ITEM_TYPE_1.items():
        for number, item in enumerate(items(ds, sequence), 1):
            for tag, name in required.items():
                if tag not in item:
                    status, what = UpsStatus.MISSING_ATTRIBUTE, "is required"
                elif value(item, tag) is None:
                    status, what = UpsStatus.MISSING_ATTRIBUTE_VALUE, "is empty"
                else:
                    continue
                raise WorkItemError(
                    status, f"{name} ({tag}) of item {number} of ({sequence}) {what}"
                )


def _check_empty(ds: Mapping[str, Any]) -> None:
    """What a new item cannot have yet (Table CC.2.5-3, N-CREATE "shall be empty"):
    progress and what was performed, which the performer N-SETs once IN PROGRESS.  An
    item in either is an invalid value (0x0106), as a Transaction UID is."""
    for tag, name in _CREATE_EMPTY.items():
        if items(ds, tag):
            raise WorkItemError(
                UpsStatus.INVALID_ATTRIBUTE_VALUE, f"{name} ({tag}) must be empty at creation"
            )


def _check_enums(ds: Mapping[str, Any]) -> None:
    for tag, allowed in _ENUMS.items():
        v = value(ds, tag)
        if tag in ds and v is not None and v not in allowed:
            raise WorkItemError(
                UpsStatus.INVALID_ATTRIBUTE_VALUE, f"{tag}: {v!r} is not one of {allowed}"
            )


def check_transaction(state: str, stored: str | None, given: str | None) -> None:
    """An IN PROGRESS item is changed only by the holder of its Transaction UID
    (CC.1.1.2); a final one not at all (CC.2.1.3: 0xC300)."""
    if state in FINAL_STATES:
        raise WorkItemError(
            UpsStatus.MAY_NO_LONGER_BE_UPDATED, f"the work item is {state}: no more changes"
        )
    if state == IN_PROGRESS and (given is None or given != stored):
        raise WorkItemError(
            UpsStatus.WRONG_TRANSACTION_UID,
            "the Transaction UID is missing" if given is None else "the Transaction UID is wrong",
        )


def check_update(
    state: str,
    stored_tuid: str | None,
    dataset: Mapping[str, Any],
    changes: Mapping[str, Any],
    given_tuid: str | None,
    now: str,
) -> Change:
    """N-SET (PS3.4 CC.2.6): replace the attributes given (a sequence whole, atomically).  SCHEDULED
    items need no Transaction UID; IN PROGRESS ones need theirs."""
    check_transaction(state, stored_tuid, given_tuid)
    check_shape(changes)
    for tag, name in _NOT_SETTABLE.items():
        if tag in changes and changes[tag] != dataset.get(tag):
            raise WorkItemError(UpsStatus.INVALID_ATTRIBUTE_VALUE, f"{name} cannot be set")
    for tag in _CREATE_TYPE_1:
        if tag in changes and value(changes, tag) is None:
            raise WorkItemError(UpsStatus.MISSING_ATTRIBUTE_VALUE, f"{tag} cannot be emptied")
    _check_enums(changes)
    ds = dict(dataset)
    ds.update({k: v for k, v in unicode(changes).items() if k != TRANSACTION_UID})
    if state == SCHEDULED:
        ds[MODIFICATION_DATETIME] = element("DT", now)
    return Change(state, stored_tuid, ds, [])


def check_state_change(
    state: str,
    stored_tuid: str | None,
    dataset: Mapping[str, Any],
    requested: str,
    given_tuid: str | None,
    now: str,
) -> Change:
    """N-ACTION Change UPS State (PS3.4 CC.2.1): the transitions of Figure CC.1.1-1."""
    if requested not in STATES:
        raise WorkItemError(
            UpsStatus.INVALID_ATTRIBUTE_VALUE, f"{requested!r} is not a Procedure Step State"
        )
    if requested == SCHEDULED:
        raise WorkItemError(
            UpsStatus.ONLY_N_CREATE_SCHEDULES, "a work item becomes SCHEDULED only when created"
        )
    if requested == IN_PROGRESS:
        if state == IN_PROGRESS:
            raise WorkItemError(UpsStatus.ALREADY_IN_PROGRESS, "the work item is IN PROGRESS")
        if state in FINAL_STATES:
            raise WorkItemError(UpsStatus.MAY_NO_LONGER_BE_UPDATED, f"the work item is {state}")
        if not given_tuid:
            raise WorkItemError(
                UpsStatus.WRONG_TRANSACTION_UID, "claiming a work item needs a Transaction UID"
            )
        return Change(IN_PROGRESS, given_tuid, dict(dataset), [])
    # COMPLETED or CANCELED
    if state == SCHEDULED:
        raise WorkItemError(UpsStatus.NOT_YET_IN_PROGRESS, "the work item is not IN PROGRESS")
    if state in FINAL_STATES:
        if state == requested and given_tuid == stored_tuid:
            warning = (
                UpsStatus.ALREADY_COMPLETED if state == COMPLETED else UpsStatus.ALREADY_CANCELED
            )
            return Change(state, stored_tuid, dict(dataset), [warning])
        raise WorkItemError(UpsStatus.MAY_NO_LONGER_BE_UPDATED, f"the work item is {state}")
    check_transaction(state, stored_tuid, given_tuid)
    ds = dict(dataset)
    if requested == CANCELED:
        ds = with_cancellation(ds, now)
    check_final_state(ds, requested)
    return Change(requested, stored_tuid, ds, [])


# The SCP's reason when it cancels a SCHEDULED item on a request that proposes none
# (PS3.4 CC.2.2.3; CID 9300 Procedure Discontinuation Reasons).
UNSPECIFIED_DISCONTINUATION = {
    "00080100": element("SH", "110513"),
    "00080102": element("SH", "DCM"),
    "00080104": element("LO", "Discontinued for unspecified reason"),
}


def with_cancellation(ds: dict[str, Any], now: str) -> dict[str, Any]:
    """Record the Procedure Step Cancellation DateTime in the progress information."""
    progress = items(ds, PROGRESS_INFORMATION)
    item = dict(progress[0]) if progress else {}
    item.setdefault(CANCELLATION_DATETIME, element("DT", now))
    return {**ds, PROGRESS_INFORMATION: element("SQ", item, *progress[1:])}


def check_final_state(ds: Mapping[str, Any], requested: str) -> None:
    """Final state requirements (PS3.4 CC.2.1.3: Table CC.2.5-3, its Final State column).

    COMPLETED (code "P": a value before COMPLETED, CANCELED may go without): the Unified
    Procedure Step Performed Procedure Sequence holds an item with the Performed
    Procedure Step Start and End DateTime, an item in the Performed Station Name Code
    and Performed Workitem Code Sequences, and the Output Information Sequence present
    (it "may have no items" when there is no relevant output, Table CC.2.5-3).
    CANCELED (code "X": a value before CANCELED): the Procedure Step Progress Information
    Sequence holds the Procedure Step Cancellation DateTime (the SCP records it, see
    `with_cancellation`) and an item in the Procedure Step Discontinuation Reason Code
    Sequence; the "P" attributes may be empty."""
    if requested == CANCELED:
        progress = items(ds, PROGRESS_INFORMATION)
        if not progress or not items(progress[0], DISCONTINUATION_REASONS):
            raise WorkItemError(
                UpsStatus.FINAL_STATE_NOT_MET,
                "not ready to be CANCELED: missing an item of the Procedure Step"
                " Discontinuation Reason Code Sequence (0074,100E) in the Procedure Step"
                " Progress Information Sequence (0074,1002)",
            )
        return
    performed = items(ds, PERFORMED_PROCEDURE)
    missing = []
    if not performed:
        missing.append("Unified Procedure Step Performed Procedure Sequence (0074,1216)")
    else:
        item = performed[0]
        for tag, name in ((PERFORMED_START, "(0040,4050)"), (PERFORMED_END, "(0040,4051)")):
            if value(item, tag) is None:
                missing.append(
                    f"Performed Procedure Step {'Start' if tag == PERFORMED_START else 'End'} DateTime {name}"
                )
        for tag, name in (
            ("00404028", "Performed Station Name Code Sequence (0040,4028)"),
            ("00404019", "Performed Workitem Code Sequence (0040,4019)"),
        ):
            if not items(item, tag):
                missing.append(f"an item of the {name}")
        if "00404033" not in item:
            missing.append("Output Information Sequence (0040,4033)")
    if missing:
        raise WorkItemError(
            UpsStatus.FINAL_STATE_NOT_MET,
            "not ready to be COMPLETED: missing " + ", ".join(missing),
        )
