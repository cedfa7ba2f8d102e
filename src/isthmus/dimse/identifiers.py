"""C-FIND identifiers to archive queries and DICOM JSON results back (PS3.4 C.4.1.1.3)."""

from __future__ import annotations

import json
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

# Not matching keys: how the query is asked, not what is asked for.
_CONTROL_TAGS = {0x00080052, 0x00080005, 0x00080054, 0x00080056}


def identifier_keys(identifier: Dataset) -> dict[int, str]:
    """Each key of an identifier as a match string; '' means universal (return only)."""
    keys: dict[int, str] = {}
    for elem in identifier:
        tag = int(elem.tag)
        if tag in _CONTROL_TAGS or elem.tag.group in (0x0000, 0x0002):
            continue
        if elem.tag.is_private_creator:  # reserves a private block: not a key (PS3.5 7.8.1)
            continue
        keys[tag] = _text(elem)
    return keys


def _text(elem: Any) -> str:
    if elem.VR == "SQ":
        return ""
    value = elem.value
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)


def result_dataset(match: dict[str, Any], level: str, retrieve_aet: str) -> Dataset:
    """A C-FIND response identifier from a DICOM JSON match."""
    ds = Dataset.from_json(match)
    ds.QueryRetrieveLevel = level
    ds.RetrieveAETitle = retrieve_aet
    if _non_ascii(match):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _non_ascii(match: dict[str, Any]) -> bool:
    """Any character outside the default repertoire?  (Not str(match): its repr escapes
    unprintable characters such as NO-BREAK SPACE to ASCII.)"""
    return not json.dumps(match, ensure_ascii=False).isascii()


def identifier_params(identifier: Dataset) -> dict[str, str]:
    """An identifier as the query engine's named keys (``query_from_keywords``): each
    top-level key by tag, each key of a sequence's item as ``SEQ.KEY`` (sequence
    matching, PS3.4 C.2.2.2.6, one level); '' is universal (return only)."""
    params: dict[str, str] = {}
    for elem in identifier:
        tag = int(elem.tag)
        if tag in _CONTROL_TAGS or elem.tag.group in (0x0000, 0x0002):
            continue
        if elem.tag.is_private or elem.tag.is_private_creator:
            continue
        if elem.VR == "SQ":
            for item in elem.value or []:
                for sub in item:
                    if sub.VR != "SQ" and not sub.tag.is_private:
                        params[f"{tag:08X}.{int(sub.tag):08X}"] = _text(sub)
            continue
        params[f"{tag:08X}"] = _text(elem)
    return params
