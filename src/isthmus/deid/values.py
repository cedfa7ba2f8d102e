"""Replacement values by VR: dummies (action D), shifted dates (Modified Dates, E.3.6),
and free text with the instance's identifiers taken out (action C on text, E.3.5)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from typing import Any

from pydicom.valuerep import PersonName

# A non-zero length value of each VR (PS3.5 6.2) for action D; UI is never a dummy (U).
DUMMY: dict[str, Any] = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "AT": 0,
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "FD": 0.0,
    "FL": 0.0,
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "SL": 0,
    "SS": 0,
    "ST": "ANONYMIZED",
    "SV": 0,
    "TM": "000000",
    "UC": "ANONYMIZED",
    "UL": 0,
    "UR": "urn:oid:2.25.0",
    "US": 0,
    "UT": "ANONYMIZED",
    "UV": 0,
}
BINARY = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
TEXT = {"LO", "LT", "PN", "SH", "ST", "UC", "UT"}
# Maximum value lengths in characters (PS3.5 Table 6.2-1) of the VRs that have one.
MAX_LENGTH = {"AE": 16, "CS": 16, "LO": 64, "PN": 64, "SH": 16, "ST": 1024, "LT": 10240}
REDACTED = "***"


def dummy(vr: str) -> Any:
    """A non-zero length value of the VR."""
    if vr in BINARY:
        return bytes(8)  # a multiple of every binary VR's unit
    return DUMMY.get(vr, "ANONYMIZED")


def values_of(value: Any) -> list[Any]:
    """An element's value as a list (pydicom gives one value or a MultiValue; a
    PersonName is one value, though it iterates over its characters)."""
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes | PersonName) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def shift_date(value: str, days: int) -> str:
    """A DA value (YYYYMMDD, or a YYYYMMDD-YYYYMMDD range) `days` earlier; a value that
    is not a full date becomes empty (it cannot be shifted, so it cannot be kept)."""
    parts = value.split("-")
    out = []
    for part in parts:
        part = part.strip()
        if not part:
            out.append("")
            continue
        try:
            day = date(int(part[:4]), int(part[4:6]), int(part[6:8]))
        except ValueError:
            return ""
        if len(part) != 8:
            return ""
        out.append((day - timedelta(days=days)).strftime("%Y%m%d"))
    return "-".join(out)


def shift_datetime(value: str, days: int) -> str:
    """A DT value with its date part shifted; time and offset kept (the shift is whole
    days, so the time of day stays true)."""
    if len(value) < 8:
        return ""
    day = shift_date(value[:8], days)
    return day + value[8:] if day else ""


def scrubber(identifiers: Iterable[str]) -> re.Pattern[str] | None:
    """A pattern matching any of the identifiers (case-insensitive), longest first;
    identifiers shorter than 3 characters are ignored (they would match anywhere)."""
    words = sorted({w for w in identifiers if len(w) >= 3}, key=len, reverse=True)
    if not words:
        return None
    return re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)


def written_names(person_name: str) -> Iterator[str]:
    """Each component group of a PN value as text writes it: its components together,
    without a space and with one.  A Japanese, Korean or Chinese name's components
    are one or two characters (PS3.5 6.2.1.2, Annexes H-K), too short for `scrubber`
    alone; 山田^太郎 is written 山田太郎 or 山田 太郎."""
    for group in person_name.split("="):
        parts = [p for p in group.split("^") if p.strip()]
        if len(parts) > 1:
            yield "".join(parts)
            yield " ".join(parts)


def scrub(text: str, pattern: re.Pattern[str] | None, vr: str) -> str:
    """The text with every identifier replaced by ***, cut to the VR's length."""
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    limit = MAX_LENGTH.get(vr)
    return text[:limit] if limit else text
