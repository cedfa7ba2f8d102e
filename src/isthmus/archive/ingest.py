"""From a parsed header to the index rows of one instance."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from isthmus.archive.attributes import ATTRIBUTES
from isthmus.dicom import json as dicom_json
from isthmus.dicom.part10 import Header

MAX_TEXT = 256


@dataclass
class InstanceRecord:
    """Values for one row per level, ready to insert."""

    patient: dict[str, Any] = field(default_factory=dict)
    study: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)
    instance: dict[str, Any] = field(default_factory=dict)

    @property
    def sop_instance_uid(self) -> str:
        return self.instance["sop_instance_uid"]


def normalize_pn(value: str) -> str:
    """Upper-cased alphabetic component group of a PN (PS3.5 6.2.1), for matching."""
    return value.split("=", 1)[0].upper()


def column_value(ds: Dataset, keyword: str, vr: str) -> Any:
    """A header value as stored in an index column (text, or int for IS/US)."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue):
        if vr in ("IS", "US", "UL", "SL", "SS"):
            value = value[0] if len(value) else None
        else:
            value = "\\".join(str(v) for v in value)
    if vr in ("IS", "US", "UL", "SL", "SS"):
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    return str(value).strip()[:MAX_TEXT]


def build_record(header: Header, blob_key: str, size: int, source_aet: str | None,
                 pixel_offset_in_blob: int | None) -> InstanceRecord:
    """Index rows for every level plus the instance's DICOM JSON metadata."""
    ds = header.dataset
    record = InstanceRecord()
    targets = {"PATIENT": record.patient, "STUDY": record.study, "SERIES": record.series,
               "IMAGE": record.instance}
    for attr in ATTRIBUTES:
        if attr.computed:
            continue
        value = column_value(ds, attr.keyword, attr.vr)
        target = targets[attr.level]
        target[attr.column] = value
        if attr.vr == "PN":
            target[attr.column + "_norm"] = normalize_pn(value) if value else None
    record.patient["patient_id"] = record.patient.get("patient_id") or ""
    record.patient["issuer_of_patient_id"] = record.patient.get("issuer_of_patient_id") or ""
    record.instance.update(
        transfer_syntax_uid=header.transfer_syntax,
        blob_key=blob_key,
        size=size,
        pixel_offset=pixel_offset_in_blob,
        pixel_length=header.pixel_length,
        metadata=dicom_json.dumps(dicom_json.header_to_json(header)),
        source_aet=(source_aet or "").strip()[:16] or None,
        stored_at=datetime.now(timezone.utc),
    )
    return record
