"""From a parsed header to the index rows of one instance."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from isthmus.archive.attributes import ATTRIBUTES
from isthmus.archive.matchers import pn_norm
from isthmus.dicom import json as dicom_json
from isthmus.dicom.part10 import Header

MAX_TEXT = 256
INT_VRS = ("IS", "US", "UL", "SL", "SS")


@dataclass
class InstanceRecord:
    """Values for one row per level, ready to insert."""

    patient: dict[str, Any] = field(default_factory=dict)
    study: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)
    instance: dict[str, Any] = field(default_factory=dict)

    @property
    def sop_instance_uid(self) -> str:
        return str(self.instance["sop_instance_uid"])


def normalize_pn(value: str) -> str:
    """Upper-cased alphabetic component group of a PN (PS3.5 6.2.1) without its trailing
    empty components, for matching: the query's value takes the same form (one rule,
    `matchers.pn_norm`)."""
    return pn_norm(value)


def column_value(model: dict[str, Any], key: str, vr: str) -> Any:
    """A header value, from its DICOM JSON (`key`: the tag as 8 hex digits), as stored
    in an index column."""
    entry = model.get(key)
    values = entry.get("Value") if entry else None
    if not values:
        return None
    if vr in INT_VRS:
        try:
            return int(values[0])
        except (TypeError, ValueError):
            return None
    if vr == "PN":
        text = "\\".join("=".join(_pn_groups(v)) for v in values)
    else:
        text = "\\".join("" if v is None else str(v) for v in values)
    return text.strip()[:MAX_TEXT] or None


def _pn_groups(value: Any) -> list[str]:
    if not isinstance(value, dict):
        return [str(value or "")]
    groups = [value.get("Alphabetic", ""), value.get("Ideographic", ""), value.get("Phonetic", "")]
    while groups and not groups[-1]:
        groups.pop()
    return groups


# The indexed attributes read from the header: (tag as in DICOM JSON, VR, level, column).
_FROM_HEADER = tuple(
    (f"{a.tag:08X}", a.vr, a.level, a.column)
    for a in ATTRIBUTES
    if a.from_header and not a.computed
)


def build_record(
    header: Header,
    blob_key: str,
    size: int,
    source_aet: str | None,
    pixel_offset_in_blob: int | None,
) -> InstanceRecord:
    """Index rows for every level plus the instance's DICOM JSON metadata."""
    record = InstanceRecord()
    targets = {
        "PATIENT": record.patient,
        "STUDY": record.study,
        "SERIES": record.series,
        "IMAGE": record.instance,
    }
    model = header.json
    for key, vr, level, column in _FROM_HEADER:
        value = column_value(model, key, vr)
        target = targets[level]
        target[column] = value
        if vr == "PN":
            target[column + "_norm"] = normalize_pn(value) if value else None
    record.patient["patient_id"] = record.patient.get("patient_id") or ""
    record.patient["issuer_of_patient_id"] = record.patient.get("issuer_of_patient_id") or ""
    record.instance.update(
        transfer_syntax_uid=header.transfer_syntax,
        blob_key=blob_key,
        size=size,
        pixel_offset=pixel_offset_in_blob,
        pixel_length=header.pixel_length,
        metadata=dicom_json.dumps_bytes(model).decode("utf-8"),
        source_aet=(source_aet or "").strip()[:16] or None,
        stored_at=datetime.now(UTC),
    )
    return record
