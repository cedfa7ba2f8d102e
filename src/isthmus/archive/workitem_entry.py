"""A scheduled procedure in plain words → a UPS work item dataset (DICOM JSON).

What a RIS or an administrator writes in a worklist file (``isthmus worklist add``) and
what tests create: patient, accession, modality, station AE title, start, label.  The
attributes follow the Modality Worklist mapping in workitems.py, so the MWL door finds
each entry by ScheduledStationAETitle, Modality, date, PatientID and AccessionNumber.

The scheduler makes what is Type 1 and the entry lacks: the Study Instance UID of the
requested procedure (Type 1 in the Referenced Request Sequence at N-CREATE, PS3.4
Table CC.2.5-3, and a Type 1 MWL return key, Table K.6-1: the modality puts it into
the images), under Isthmus's UID root; and the Requested Procedure ID, which the
Modality Worklist also returns as Scheduled Procedure Step ID (both Type 1 there).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from pydicom.uid import generate_uid

from isthmus import UID_ROOT
from isthmus.archive.workitem_rules import element

STATION_SCHEME = "99ISTHMUS"  # CodingSchemeDesignator of station AE title codes
MODALITY_SCHEME = "DCM"  # modality codes of CID 29 are DCM codes
STUDY_UID_PREFIX = f"{UID_ROOT}.4."  # the UIDs a node makes for what it schedules

FIELDS = (
    "patient_id",
    "patient_name",
    "birth_date",
    "sex",
    "accession",
    "requested_procedure_id",
    "procedure",
    "modality",
    "station_aet",
    "start",
    "label",
    "priority",
    "performer",
    "study_uid",
)


class EntryError(ValueError):
    """An entry that cannot become a work item; the message says which field."""


def _code(value: str, scheme: str, meaning: str | None = None) -> dict[str, Any]:
    return {
        "00080100": element("SH", value),
        "00080102": element("SH", scheme),
        "00080104": element("LO", meaning or value),
    }


def _procedure_id() -> str:
    """A new Requested Procedure ID: 16 random hex digits (SH holds 16 characters)."""
    return uuid.uuid4().hex[:16].upper()


def scheduled_workitem(entry: Mapping[str, str]) -> dict[str, Any]:
    """The work item of one entry.  Needed: `start` (DT, e.g. ``20260102T0930`` or
    ``202601020930``) and `label` or `procedure`; the rest may be empty."""
    unknown = set(entry) - set(FIELDS)
    if unknown:
        raise EntryError(f"unknown fields {sorted(unknown)}; known: {', '.join(FIELDS)}")
    e = {k: str(v).strip() for k, v in entry.items() if v is not None and str(v).strip()}
    start = e.get("start", "").replace("T", "").replace("-", "").replace(":", "")
    if not start.isdigit() or len(start) < 8:
        raise EntryError(f"start: {entry.get('start')!r} is not a date-time (YYYYMMDDHHMM)")
    label = e.get("label") or e.get("procedure")
    if not label:
        raise EntryError("label (or procedure) is required")
    priority = e.get("priority", "MEDIUM").upper()
    study_uid = e.get("study_uid") or str(generate_uid(STUDY_UID_PREFIX))
    request: dict[str, Any] = {
        "00080050": element("SH", *[e["accession"]] if "accession" in e else []),
        "00401001": element("SH", e.get("requested_procedure_id") or _procedure_id()),
        "00321060": element("LO", *[e["procedure"]] if "procedure" in e else []),
        "0020000D": element("UI", study_uid),
    }
    ds: dict[str, Any] = {
        "00100010": element(
            "PN", *[{"Alphabetic": e["patient_name"]}] if "patient_name" in e else []
        ),
        "00100020": element("LO", *[e["patient_id"]] if "patient_id" in e else []),
        "00100030": element("DA", *[e["birth_date"]] if "birth_date" in e else []),
        "00100040": element("CS", *[e["sex"].upper()] if "sex" in e else []),
        "00741000": element("CS", "SCHEDULED"),
        "00741200": element("CS", priority),
        "00741204": element("LO", label),
        "00404005": element("DT", start),
        "00404041": element("CS", "READY"),
        "0040A370": element("SQ", request),
        "00404025": element(
            "SQ", *[_code(e["station_aet"], STATION_SCHEME)] if "station_aet" in e else []
        ),
        "00404026": element(
            "SQ", *[_code(e["modality"].upper(), MODALITY_SCHEME)] if "modality" in e else []
        ),
        # the other type 2 attributes of N-CREATE (Table CC.2.5-3), present and empty
        "00100021": element("LO"),
        "00380010": element("LO"),
        "00404018": element("SQ"),
        "00404021": element("SQ"),
        "00404027": element("SQ"),
        "00741216": element("SQ"),
    }
    if "performer" in e:
        ds["00404034"] = element("SQ", {"00404037": element("PN", {"Alphabetic": e["performer"]})})
    return ds


def completion(
    start: str, end: str, station_aet: str, workitem: tuple[str, str, str]
) -> dict[str, Any]:
    """The attributes a performer sets before COMPLETED (the final state requirements,
    PS3.4 Table CC.2.5-3, code P): the Unified Procedure Step Performed Procedure
    Sequence with the start and end, the station that performed it and what was done
    (`workitem`: code value, coding scheme designator, code meaning); no output."""
    item = {
        "00404050": element("DT", start),
        "00404051": element("DT", end),
        "00404028": element("SQ", _code(station_aet, STATION_SCHEME)),
        "00404019": element("SQ", _code(*workitem)),
        "00404033": element("SQ"),
    }
    return {"00741216": element("SQ", item)}
