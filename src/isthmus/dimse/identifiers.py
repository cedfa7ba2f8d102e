"""C-FIND identifiers to archive queries and DICOM JSON results back (PS3.4 C.4.1.1.3)."""

from __future__ import annotations

import json
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from isthmus.dicom import uids
from isthmus.dicom.json_encode import SPECIFIC_CHARACTER_SET, JsonEncoder, Unsupported
from isthmus.dimse import messages as msg

# Not matching keys: how the query is asked, not what is asked for.
_CONTROL_TAGS = {0x00080052, 0x00080005, 0x00080054, 0x00080056}


def identifier_keys(identifier: Dataset) -> dict[int, str]:
    """Each key of an identifier as a match string; '' means universal (return only),
    as for a private creator."""
    keys: dict[int, str] = {}
    for elem in identifier:
        tag = int(elem.tag)
        if tag in _CONTROL_TAGS or elem.tag.group in (0x0000, 0x0002):
            continue
        if elem.tag.is_private_creator:
            # Reserves a private block (PS3.5 7.8.1): never matched on, but returned, so
            # that a response's private elements come with the creator of their block.
            keys[tag] = ""
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


QUERY_RETRIEVE_LEVEL = 0x00080052
RETRIEVE_AE_TITLE = 0x00080054
# Character sets in which ASCII text is encoded as ASCII, as the direct encoder writes
# it (PS3.3 C.12.1.1.2): a match stored in one of them, all ASCII, keeps it.
_ASCII_CHARSETS = frozenset(
    {"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 192"}
)


def result_identifier(
    match: dict[str, Any], level: str, retrieve_aet: str, transfer_syntax: str
) -> bytes:
    """A C-FIND response identifier from a DICOM JSON match, encoded (PS3.4 C.4.1.1.3.2).

    The same bytes as `result_dataset` written by `messages.encode_identifier`, written
    straight from the JSON (`isthmus.dicom.json_encode`); pydicom's path for a match
    that encoder leaves to it.
    """
    implicit, little, deflated = uids.encoding(transfer_syntax)
    try:
        raw = _encode_result(match, level, retrieve_aet, JsonEncoder(implicit, little))
    except Unsupported:
        return msg.encode_identifier(result_dataset(match, level, retrieve_aet), transfer_syntax)
    return msg.deflate(raw) if deflated else raw


def _encode_result(
    match: dict[str, Any], level: str, retrieve_aet: str, encoder: JsonEncoder
) -> bytes:
    """`result_dataset`'s elements: the match's, then the level and the AE title, and
    ISO_IR 192 when the match has a character outside ASCII (its text is UTF-8)."""
    elements = encoder.elements(match)
    added = {QUERY_RETRIEVE_LEVEL: ("CS", level), RETRIEVE_AE_TITLE: ("AE", retrieve_aet)}
    if encoder.non_ascii:
        added[SPECIFIC_CHARACTER_SET] = ("CS", "ISO_IR 192")
    elif SPECIFIC_CHARACTER_SET in elements:
        charset = match.get(f"{SPECIFIC_CHARACTER_SET:08X}", {}).get("Value", [])
        if not set(charset) <= _ASCII_CHARSETS:
            raise Unsupported(f"Specific Character Set {charset}")
    for tag, (vr, value) in added.items():
        stored = match.get(f"{tag:08X}")
        if stored is not None and stored.get("vr") != vr:  # pydicom keeps the stored VR
            raise Unsupported(f"({tag:08X}) stored as {stored.get('vr')}")
        elements[tag] = encoder.element(tag, {"vr": vr, "Value": [value]})
    return b"".join(element for _, element in sorted(elements.items()))


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
