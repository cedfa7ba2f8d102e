"""DIMSE-N data sets ↔ the DICOM JSON model the archive's stores speak (PS3.18 F.2).

The work item and performed step stores keep DICOM JSON; the DIMSE-N services
(MPPS, UPS) receive and send encoded data sets.  Decoding goes through pydicom once
per message (these are small data sets, not instances to keep byte for byte).
"""

from __future__ import annotations

import json
from typing import Any

from pydicom.dataset import Dataset

from isthmus.dimse import messages as msg

SPECIFIC_CHARACTER_SET = "00080005"


def decode_json(data: bytes | memoryview, transfer_syntax: str) -> dict[str, Any]:
    """An encoded data set as DICOM JSON; ValueError if it does not decode."""
    try:
        ds = msg.decode_identifier(data, transfer_syntax)
        return dict(ds.to_json_dict(bulk_data_threshold=1 << 30))
    except Exception as exc:  # noqa: BLE001 - anything pydicom cannot read is bad input
        raise ValueError(f"the data set cannot be decoded: {exc}") from exc


def encode_json(model: dict[str, Any], transfer_syntax: str) -> bytes:
    """DICOM JSON encoded in `transfer_syntax` (for N-GET, N-EVENT-REPORT, C-FIND)."""
    return msg.encode_identifier(to_dataset(unicode_model(model)), transfer_syntax)


def unicode_model(model: dict[str, Any]) -> dict[str, Any]:
    """`model` ready to encode: its values are Unicode (DICOM JSON, PS3.18 F.2), so the
    data set declares ISO_IR 192 when a value is not ASCII (PS3.5 6.1.2.3), whatever
    Specific Character Set the model carries from a data set it was decoded from."""
    rest = {tag: element for tag, element in model.items() if tag != SPECIFIC_CHARACTER_SET}
    if json.dumps(rest, ensure_ascii=False).isascii():
        return rest
    return {SPECIFIC_CHARACTER_SET: {"vr": "CS", "Value": ["ISO_IR 192"]}, **rest}


def to_dataset(model: dict[str, Any]) -> Dataset:
    return Dataset.from_json(model)


def select(model: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The attributes of `model` an identifier or attribute list asks for (`wanted`, DICOM
    JSON): each requested key, empty when `model` lacks it; of a sequence whose request
    item names keys, those keys of each item (PS3.4 C.2.2.1.3), else whole items."""
    out: dict[str, Any] = {}
    for tag, request in wanted.items():
        found = model.get(tag)
        vr = request.get("vr", "UN")
        if found is None:
            out[tag] = {"vr": vr}
            continue
        template = (request.get("Value") or [None])[0] if vr == "SQ" else None
        if isinstance(template, dict) and template:
            found = {
                "vr": "SQ",
                "Value": [select(item, template) for item in found.get("Value") or []],
            }
        out[tag] = found
    return out
