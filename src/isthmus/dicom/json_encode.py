"""DICOM JSON (PS3.18 F.2) straight to an encoded data set (PS3.5 7.1), without pydicom.

C-FIND answers each match, stored as DICOM JSON, with an identifier in the transfer
syntax of the presentation context.  Building a pydicom Dataset from the JSON and
writing it took half of the service's time; this writes the same bytes directly.

It writes exactly what ``Dataset.from_json`` followed by pydicom's ``write_dataset``
writes (tests/dicom/test_json_encode.py compares them byte for byte), including
pydicom's choices where the standard leaves room: sequences and items of defined
length, IS and DS numbers as Python writes them (``5``, ``5.0``), binary values
written as they are in big endian, a 16-bit-length value longer than 64 KiB written
as UN (PS3.5 6.2.2).  Text is encoded as UTF-8: the caller declares ISO_IR 192 in
Specific Character Set when `JsonEncoder.non_ascii` says a value needs it (PS3.5
6.1.2.3), which is what the archive's C-FIND has always done.

Whatever it does not handle the same way raises `Unsupported`, and the caller uses
pydicom for that data set: BulkDataURI values, UN and ambiguous VRs, LUT
descriptors, group lengths, a Specific Character Set inside an item, values of a
type the VR does not take (pydicom fails on those too, and then says why).
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Callable, Mapping
from typing import Any

ITEM = 0xFFFEE000
SPECIFIC_CHARACTER_SET = 0x00080005

# Explicit VR with a 32-bit value length (PS3.5 Table 7.1-1); the others have 16 bits.
_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
# Text in the default repertoire only (PS3.5 6.1.2.2): pydicom writes it as ISO 8859-1.
_DEFAULT_TEXT = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UR"})
# Text in the Specific Character Set (PS3.5 6.1.2.3), here UTF-8.
_CHARSET_TEXT = frozenset({"LO", "LT", "SH", "ST", "UC", "UT"})
# Binary numbers (PS3.5 Table 6.2-1) as struct formats.
_BINARY = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "UV": "Q", "SV": "q", "FL": "f", "FD": "d"}
_FLOATS = frozenset({"FL", "FD"})
_BYTES = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
# pydicom writes the first value of these 'US or SS' descriptors unsigned: left to it.
_LUT_DESCRIPTORS = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})
_TAG_KEY = re.compile(r"[0-9A-Fa-f]{8}")
_TAGS: dict[str, int] = {}  # tag keys seen, parsed once


class Unsupported(ValueError):
    """A data set this encoder leaves to pydicom."""


def tag_of(key: str) -> int:
    """The tag of a DICOM JSON attribute key: eight hex digits (PS3.18 F.2.1.1)."""
    tag = _TAGS.get(key)
    if tag is None:
        if not _TAG_KEY.fullmatch(key):
            raise Unsupported(f"attribute key {key!r} is not eight hex digits")
        tag = int(key, 16)
        if len(_TAGS) < 65536:
            _TAGS[key] = tag
    return tag


class JsonEncoder:
    """Encodes DICOM JSON data sets in one transfer syntax's encoding (PS3.5 7.1).

    `non_ascii` becomes true once a value outside ASCII has been seen: the data set
    then needs Specific Character Set ISO_IR 192 for its text to read as written.
    """

    def __init__(self, implicit: bool, little: bool) -> None:
        self.implicit = implicit
        self.order = "<" if little else ">"
        self.non_ascii = False
        self._length16, self._length32, self._tag = _PACKERS[self.order]
        self._heads = _HEADS[(implicit, little)]

    def dataset(self, dataset: Mapping[str, Any], item: bool = False) -> bytes:
        """The data set's elements in tag order (PS3.5 7.1)."""
        return b"".join(element for _, element in sorted(self.elements(dataset, item).items()))

    def elements(self, dataset: Mapping[str, Any], item: bool = False) -> dict[int, bytes]:
        """Each element of a data set, encoded, by tag; an item's (`item`) may not
        change the character set (PS3.5 7.5.2 allows it; pydicom's path handles it)."""
        out: dict[int, bytes] = {}
        for key, attribute in dataset.items():
            tag = tag_of(key)
            if tag in out:
                raise Unsupported(f"tag {key} twice")
            if tag & 0xFFFF == 0 or (item and tag == SPECIFIC_CHARACTER_SET):
                raise Unsupported(f"group length or item character set {key}")
            out[tag] = self.element(tag, attribute)
        return out

    def element(self, tag: int, attribute: Mapping[str, Any]) -> bytes:
        """One data element: tag, VR unless implicit, value length, value (PS3.5 7.1.1)."""
        try:
            vr = attribute["vr"]
            value = self._value(tag, vr, attribute)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
            raise Unsupported(f"({tag:08X}): {exc}") from exc
        head = self._heads.get((tag, vr))
        if head is None:
            head = self._head(tag, vr)
        if self.implicit or vr in _LONG_VRS:
            return head + self._length32(len(value)) + value
        if len(value) > 0xFFFF:  # as pydicom: UN, which has a 32-bit length (PS3.5 6.2.2)
            return self._head(tag, "UN") + self._length32(len(value)) + value
        return head + self._length16(len(value)) + value

    def _head(self, tag: int, vr: str) -> bytes:
        """Tag, and VR (with its reserved bytes for a 32-bit length) unless implicit."""
        head = self._tag(tag >> 16, tag & 0xFFFF)
        if not self.implicit:
            head += vr.encode() + (b"\0\0" if vr in _LONG_VRS else b"")
        if len(self._heads) < 65536:
            self._heads[(tag, vr)] = head
        return head

    def _value(self, tag: int, vr: str, attribute: Mapping[str, Any]) -> bytes:
        """The value field; an attribute without a value has length 0 (PS3.18 F.2.5)."""
        if len(attribute) == 1:
            key = None  # "vr" alone
        elif len(attribute) == 2 and "Value" in attribute:
            key = "Value"
        else:
            key = _value_key(attribute)
        if vr in _BYTES:
            if key == "Value":
                raise Unsupported("Value of a binary VR")
            return b"" if key is None else self._inline_binary(attribute[key])
        write = _WRITERS.get(vr)
        if write is None or key == "InlineBinary" or tag in _LUT_DESCRIPTORS:
            raise Unsupported(f"VR {vr!r} or InlineBinary of a non-binary VR")
        values = attribute["Value"] if key else []
        if not isinstance(values, list):
            raise Unsupported("Value is not a list")
        return write(self, tag, vr, values) if values else b""

    def _inline_binary(self, value: str | list[str]) -> bytes:
        """Base64 (PS3.18 F.2.7), padded with NUL to even length as pydicom pads."""
        text = value[0] if isinstance(value, list) else value
        if not isinstance(text, str) or not text.isascii():
            raise Unsupported("InlineBinary is not base64 text")
        raw = base64.b64decode(text)
        return raw + b"\0" if len(raw) % 2 else raw

    def _strings(self, values: list[Any]) -> list[str]:
        """String values; null is an empty value (PS3.18 F.2.5)."""
        out = ["" if v is None else v for v in values]
        for v in out:
            if not isinstance(v, str):
                raise Unsupported(f"{type(v).__name__} value of a string VR")
            if not v.isascii():
                self.non_ascii = True
        return out

    def _default_text(self, tag: int, vr: str, values: list[Any]) -> bytes:
        return _padded("\\".join(self._strings(values)).encode("latin-1"), b" ")

    def _charset_text(self, tag: int, vr: str, values: list[Any]) -> bytes:
        return _padded("\\".join(self._strings(values)).encode("utf-8"), b" ")

    def _ui(self, tag: int, vr: str, values: list[Any]) -> bytes:
        """UIDs stripped of spaces as pydicom's UID does, NUL padded (PS3.5 9.1)."""
        uids = self._strings(values)
        if len(uids) == 1:  # one value with backslashes is several (PS3.5 6.4)
            uids = uids[0].split("\\")
        return _padded("\\".join(u.strip() for u in uids).encode("latin-1"), b"\0")

    def _pn(self, tag: int, vr: str, values: list[Any]) -> bytes:
        """Person names: component groups joined by '=' without trailing empty groups
        (PS3.5 6.2.1.1, PS3.18 F.2.2)."""
        names = self._strings([_person_name(v) for v in values])
        if len(names) == 1:
            names = names[0].split("\\")
        return _padded("\\".join(n.rstrip("=") for n in names).encode("utf-8"), b" ")

    def _numbers(self, values: list[Any], number: Callable[[Any], Any]) -> list[Any]:
        if None in values:
            raise Unsupported("null among several numbers")
        for v in values:
            if isinstance(v, str) and not v.isascii():
                self.non_ascii = True
        return [number(v) for v in values]

    def _is(self, tag: int, vr: str, values: list[Any]) -> bytes:
        if values == [None]:
            return b""
        return _padded("\\".join(str(v) for v in self._numbers(values, int)).encode(), b" ")

    def _ds(self, tag: int, vr: str, values: list[Any]) -> bytes:
        """Decimal strings as Python writes the float (pydicom's DSfloat does)."""
        if values == [None]:
            return b""
        return _padded("\\".join(repr(v) for v in self._numbers(values, float)).encode(), b" ")

    def _binary(self, tag: int, vr: str, values: list[Any]) -> bytes:
        if values == [None]:
            return b""
        numbers = self._numbers(values, float if vr in _FLOATS else int)
        try:
            return struct.pack(f"{self.order}{len(numbers)}{_BINARY[vr]}", *numbers)
        except struct.error as exc:
            raise Unsupported(str(exc)) from exc

    def _at(self, tag: int, vr: str, values: list[Any]) -> bytes:
        """Attribute tags as eight hex digits (PS3.18 F.2.3), each group then element."""
        if values == [None]:
            return b""
        out = []
        for v in self._numbers(values, lambda v: v):
            if not isinstance(v, str):
                raise Unsupported("AT value is not a string")
            t = int(v, 16)
            if not 0 <= t <= 0xFFFFFFFF:
                raise Unsupported(f"AT value {v!r}")
            out.append(self._tag(t >> 16, t & 0xFFFF))
        return b"".join(out)

    def _sq(self, tag: int, vr: str, values: list[Any]) -> bytes:
        """Items of defined length (PS3.5 7.5.1), as pydicom writes them."""
        out = []
        for item in values:
            if item is not None and not isinstance(item, dict):
                raise Unsupported("sequence item is not an object")
            body = self.dataset(item or {}, item=True)
            out.append(self._tag(0xFFFE, 0xE000) + self._length32(len(body)) + body)
        return b"".join(out)


_WRITERS: dict[str, Callable[[JsonEncoder, int, str, list[Any]], bytes]] = {
    **dict.fromkeys(_DEFAULT_TEXT, JsonEncoder._default_text),
    **dict.fromkeys(_CHARSET_TEXT, JsonEncoder._charset_text),
    **dict.fromkeys(_BINARY, JsonEncoder._binary),
    "UI": JsonEncoder._ui,
    "PN": JsonEncoder._pn,
    "IS": JsonEncoder._is,
    "DS": JsonEncoder._ds,
    "AT": JsonEncoder._at,
    "SQ": JsonEncoder._sq,
}
_PACKERS = {
    order: (
        struct.Struct(order + "H").pack,
        struct.Struct(order + "I").pack,
        struct.Struct(order + "HH").pack,
    )
    for order in "<>"
}
# Element headers by (tag, VR), per (implicit, little endian): the same few are written
# for every match.
_HEADS: dict[tuple[bool, bool], dict[tuple[int, str], bytes]] = {
    (implicit, little): {} for implicit in (True, False) for little in (True, False)
}


def _value_key(attribute: Mapping[str, Any]) -> str | None:
    """Which of Value and InlineBinary the attribute has, if any (PS3.18 F.2.2);
    BulkDataURI, two of them or another member are unsupported."""
    key = None
    for name in attribute:
        if name != "vr":
            if key is not None or name not in ("Value", "InlineBinary"):
                raise Unsupported(f"{name} beside {key}")
            key = name
    return key


def _person_name(value: Any) -> Any:
    """A PN value's text: its component groups joined by '=' (PS3.18 F.2.2), a string
    as it is (some DICOMweb servers send those; pydicom takes them)."""
    if not isinstance(value, dict):
        return value
    if not value.keys() <= set(_PN_GROUPS):
        raise Unsupported(f"person name groups {sorted(value)}")
    count = 3 if "Phonetic" in value else 2 if "Ideographic" in value else 1
    groups = [value.get(group, "") for group in _PN_GROUPS[:count]]
    if not all(isinstance(g, str) for g in groups):
        raise Unsupported("person name group is not a string")
    return "=".join(groups)


def _padded(raw: bytes, pad: bytes) -> bytes:
    """Even length (PS3.5 7.1.1)."""
    return raw + pad if len(raw) % 2 else raw
