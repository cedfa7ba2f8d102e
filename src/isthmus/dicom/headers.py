"""Fast header parsing: dataset bytes straight to the DICOM JSON model (PS3.18 F).

Ingest needs, for every instance, its DICOM JSON (stored for /metadata and C-FIND
return keys) and where pixel data starts - never the pixel values.  pydicom's
general path (Dataset, DataElement, then JSON) costs several milliseconds per
instance; this parser walks Explicit/Implicit VR Little Endian encodings (PS3.5
7.1) once and emits JSON directly.  Anything it does not handle (big endian, ISO
2022 code extensions, odd lengths) raises `Unsupported`, and the caller falls
back to pydicom; tests check both paths give the same JSON.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from pydicom.datadict import dictionary_VR

ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
SPECIFIC_CHARACTER_SET = 0x00080005
PIXEL_REPRESENTATION = 0x00280103

LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
TEXT_SINGLE = frozenset({"LT", "ST", "UT", "UR"})  # one value; backslash is text
TEXT_MULTI = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UC", "UI"})
NUMBERS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}

# SpecificCharacterSet values a single Python codec decodes (PS3.3 C.12.1.1.2, no
# code extensions).  Anything else goes the pydicom way.
CODECS = {
    "": "latin-1",
    "ISO_IR 6": "latin-1",
    "ISO_IR 100": "latin-1",
    "ISO_IR 101": "iso8859_2",
    "ISO_IR 109": "iso8859_3",
    "ISO_IR 110": "iso8859_4",
    "ISO_IR 144": "iso8859_5",
    "ISO_IR 127": "iso8859_6",
    "ISO_IR 126": "iso8859_7",
    "ISO_IR 138": "iso8859_8",
    "ISO_IR 148": "iso8859_9",
    "ISO_IR 203": "iso8859_15",
    "ISO_IR 166": "tis_620",
    "ISO_IR 192": "utf-8",
    "GB18030": "gb18030",
    "GBK": "gbk",
    "ISO_IR 13": "shift_jis",
}
CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})


class Unsupported(Exception):
    """This encoding is not for the fast path; use pydicom."""


class Truncated(Unsupported):
    """The data ends inside an element: no parser can read what is not there (pydicom
    would return the elements before it and drop the rest, a half instance)."""


class Parsed:
    """Result of a fast parse: JSON of the elements before pixel data, and where it is."""

    __slots__ = ("json", "pixel_tag", "pixel_vr", "pixel_offset", "pixel_length")

    def __init__(self) -> None:
        self.json: dict[str, Any] = {}
        self.pixel_tag: int | None = None
        self.pixel_vr: str | None = None
        self.pixel_offset: int | None = None
        self.pixel_length: int | None = None


class _Parser:
    def __init__(
        self, data: bytes | memoryview, implicit: bool, threshold: int, bulk_prefix: str
    ) -> None:
        self.data = data
        self.implicit = implicit
        self.threshold = threshold
        self.bulk_prefix = bulk_prefix
        self.codec = "latin-1"
        self.pixel_rep = 0

    def parse_top(self, out: Parsed) -> None:
        pos = self.parse_items(0, len(self.data), out.json, top=True, parsed=out)
        if pos < 0:
            raise Unsupported("truncated dataset")

    def parse_items(
        self,
        pos: int,
        end: int,
        target: dict[str, Any],
        top: bool = False,
        parsed: Parsed | None = None,
    ) -> int:
        """Parse elements into `target` until `end` or an item delimiter; returns new pos."""
        data = self.data
        unpack = struct.unpack_from
        while pos < end:
            if end - pos < 8:
                if end == len(data) and any(bytes(data[pos:end])):
                    raise Truncated(f"the data ends inside an element header at byte {pos}")
                raise Unsupported("trailing bytes")
            group, elem = unpack("<HH", data, pos)
            tag = (group << 16) | elem
            if tag == ITEM_END:
                return pos + 8
            if self.implicit:
                length = unpack("<I", data, pos + 4)[0]
                vr = self.implicit_vr(tag, length)
                pos += 8
            else:
                vr = bytes(data[pos + 4 : pos + 6]).decode("ascii", "replace")
                if vr in LONG_VRS:
                    length = unpack("<I", data, pos + 8)[0]
                    pos += 12
                elif vr.isalpha() and vr.isupper():
                    length = unpack("<H", data, pos + 6)[0]
                    pos += 8
                else:
                    raise Unsupported(f"bad VR {vr!r}")
            if top and tag in PIXEL_TAGS and parsed is not None:
                self.pixels(parsed, tag, vr, pos, length)
                return len(data)
            if length == UNDEFINED:
                if vr not in ("SQ", "UN"):
                    raise Unsupported("undefined length outside a sequence")
                items, pos = self.sequence(pos, None)
                self.emit(target, tag, "SQ", items)
                continue
            if pos + length > len(data):
                raise Truncated(
                    f"element ({group:04X},{elem:04X}) of {length} bytes ends beyond the data"
                )
            if vr == "UN" and not group & 1:
                vr = self.known_vr(tag)  # PS3.5 6.2.2: UN of a known tag, value as implicit
            if vr == "SQ":
                items, _ = self.sequence(pos, pos + length)
                self.emit(target, tag, "SQ", items)
            elif elem != 0 or group == 0xFFFE:  # group lengths are not in the JSON model
                self.element(target, tag, vr, pos, length, top)
            pos += length
        return pos

    def implicit_vr(self, tag: int, length: int) -> str:
        if tag >> 16 == 0xFFFE:
            return "NONE"
        group, elem = tag >> 16, tag & 0xFFFF
        if group & 1:
            return "LO" if 0x0010 <= elem <= 0x00FF else ("SQ" if length == UNDEFINED else "UN")
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return "SQ" if length == UNDEFINED else "UN"
        if " or " in vr:
            if vr == "US or SS":
                return "SS" if self.pixel_rep else "US"
            return "OW"
        return vr

    def known_vr(self, tag: int) -> str:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return "UN"
        if vr == "SQ" and not self.implicit:
            raise Unsupported("UN sequence in explicit VR")
        if " or " in vr:
            return "UN"
        return vr

    def sequence(self, pos: int, end: int | None) -> tuple[list[dict[str, Any]], int]:
        """Items of a sequence of defined (`end`) or undefined length (PS3.5 7.5)."""
        data = self.data
        items: list[dict[str, Any]] = []
        limit = len(data) if end is None else end
        while pos < limit:
            if limit - pos < 8:
                if end is None:
                    raise Truncated("the data ends inside a sequence")
                raise Unsupported("truncated sequence")
            tag = (struct.unpack_from("<H", data, pos)[0] << 16) | struct.unpack_from(
                "<H", data, pos + 2
            )[0]
            length = struct.unpack_from("<I", data, pos + 4)[0]
            pos += 8
            if tag == SEQUENCE_END:
                return items, pos
            if tag != ITEM:
                raise Unsupported("expected a sequence item")
            item: dict[str, Any] = {}
            if length == UNDEFINED:
                pos = self.parse_items(pos, limit, item)
            else:
                self.parse_items(pos, pos + length, item)
                pos += length
            if "00080005" in item:
                raise Unsupported("character set inside a sequence item")
            items.append(dict(sorted(item.items())))
        if end is None:
            raise Unsupported("sequence without delimiter")
        return items, pos

    def pixels(self, parsed: Parsed, tag: int, vr: str, pos: int, length: int) -> None:
        parsed.pixel_tag = tag
        if vr in ("OB", "OW", "OF", "OD"):
            parsed.pixel_vr = vr
        else:
            parsed.pixel_vr = {0x7FE00008: "OF", 0x7FE00009: "OD"}.get(tag, "OW")
        if length == UNDEFINED:
            parsed.pixel_vr = "OB"
        parsed.pixel_offset = pos
        parsed.pixel_length = length
        if length != UNDEFINED and pos + length > len(self.data):
            raise ValueError("pixel data is truncated")

    def emit(self, target: dict[str, Any], tag: int, vr: str, value: Any) -> None:
        entry: dict[str, Any] = {"vr": vr}
        if value:
            entry["Value"] = value
        elif vr == "SQ":
            entry["Value"] = []
        target[f"{tag:08X}"] = entry

    def element(
        self, target: dict[str, Any], tag: int, vr: str, pos: int, length: int, top: bool
    ) -> None:
        key = f"{tag:08X}"
        if length == 0:
            target[key] = {"vr": vr}
            return
        raw = self.data[pos : pos + length]
        if vr in BINARY_VRS:
            if top and length > self.threshold:
                target[key] = {"vr": vr, "BulkDataURI": self.bulk_prefix + key}
            else:
                target[key] = {"vr": vr, "InlineBinary": base64.b64encode(raw).decode("ascii")}
            return
        if vr in NUMBERS:
            fmt = NUMBERS[vr]
            size = struct.calcsize(fmt)
            if length % size:
                raise Unsupported("odd numeric length")
            values = list(struct.unpack(f"<{length // size}{fmt}", raw))
            if tag == PIXEL_REPRESENTATION and values:
                self.pixel_rep = values[0]
            target[key] = {"vr": vr, "Value": values}
            return
        if vr == "AT":
            pairs = struct.unpack(f"<{length // 2}H", raw)
            target[key] = {
                "vr": vr,
                "Value": [f"{pairs[i]:04X}{pairs[i + 1]:04X}" for i in range(0, len(pairs) - 1, 2)],
            }
            return
        text = bytes(raw).decode(self.codec if vr in CHARSET_VRS else "latin-1")
        if tag == SPECIFIC_CHARACTER_SET:
            self.set_charset(text)
        values = _text_values(vr, text)
        if any(v is not None and v != "" for v in values):
            target[key] = {"vr": vr, "Value": values}
        else:
            target[key] = {"vr": vr}

    def set_charset(self, text: str) -> None:
        terms = [t.strip() for t in text.split("\\")]
        if len(terms) > 1 and any(terms[1:]):
            raise Unsupported("character set with code extensions")
        codec = CODECS.get(terms[0])
        if codec is None:
            raise Unsupported(f"character set {terms[0]!r}")
        self.codec = codec


def _text_values(vr: str, text: str) -> list[Any]:
    """Split and trim a text value per VR (PS3.5 6.2; PS3.18 F.2.3)."""
    if vr in TEXT_SINGLE:
        return [text.rstrip(" \x00")] if vr != "UR" else [text.strip(" ")]
    parts = text.split("\\")
    if vr == "PN":
        return [_person_name(p.rstrip(" \x00")) for p in parts]
    values: list[Any] = [p.strip(" \x00") or None for p in parts]
    if vr == "IS":
        return [_number(v, int) for v in values]
    if vr == "DS":
        return [_number(v, float) for v in values]
    return values


def _number(value: str | None, kind: type) -> Any:
    if value is None:
        return None
    try:
        if kind is int:
            return int(value)
        return float(value)
    except ValueError:
        if kind is int:
            try:
                return int(float(value))
            except ValueError:
                pass
        raise Unsupported(f"not a number: {value!r}") from None


def _person_name(value: str) -> Any:
    if not value:
        return None
    groups = value.split("=")
    names = {}
    for name, group in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False):
        names[name] = group
    return names


def parse(
    data: bytes | memoryview, implicit: bool, bulk_prefix: str, threshold: int = 1024
) -> Parsed:
    """DICOM JSON of a Little Endian dataset up to pixel data; raises Unsupported."""
    parser = _Parser(data, implicit, threshold, bulk_prefix)
    out = Parsed()
    try:
        parser.parse_top(out)
    except struct.error as exc:  # a read beyond the end of the data
        raise Truncated(str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise Unsupported(str(exc)) from exc
    out.json = dict(sorted(out.json.items()))
    if out.pixel_tag is not None:
        key = f"{out.pixel_tag:08X}"
        out.json[key] = {"vr": out.pixel_vr, "BulkDataURI": bulk_prefix + key}
    return out
