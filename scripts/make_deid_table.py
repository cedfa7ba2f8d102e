#!/usr/bin/env python3
"""Write src/isthmus/deid/table_e1_1.csv: PS3.15 Table E.1-1 as data.

Input: the JSON rendering of Table E.1-1 ("Application Level Confidentiality Profile
Attributes") that innolitics/dicom-standard extracts from the standard's part15.html
(``standard/confidentiality_profile_attributes.json``, updated for DICOM 2024b in commit
8670abdd9ad16c61af5146ef857899699bdd9c5f and unchanged through commit
7f4749d09ed3ef2fa70637d376d423a4b13523cd, the last one read).  Only the standard's facts
are kept (tag, attribute name, the action codes of the Basic Profile and of each option
column); nothing is read at test or run time but the CSV this writes.

    python scripts/make_deid_table.py confidentiality_profile_attributes.json

The CSV keeps one row per table row, sorted by tag; its first lines (``#``) say where it
came from.  Columns are the table's, in its order (PS3.15 E.1-1): Basic Profile, Retain
Safe Private, Retain UIDs, Retain Device Identity, Retain Institution Identity, Retain
Patient Characteristics, Retain Long. Full Dates, Retain Long. Modified Dates, Clean
Descriptors, Clean Structured Content, Clean Graphics.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "isthmus" / "deid" / "table_e1_1.csv"
EDITION = "DICOM PS3.15 2024b, Table E.1-1"
SOURCE = (
    "innolitics/dicom-standard standard/confidentiality_profile_attributes.json "
    "(commit 8670abdd9ad16c61af5146ef857899699bdd9c5f, extracted from part15.html)"
)
# Our column name -> the key innolitics uses for that column of Table E.1-1.
COLUMNS = {
    "basic": "basicProfile",
    "retain_safe_private": "rtnSafePrivOpt",
    "retain_uids": "rtnUIDsOpt",
    "retain_device_identity": "rtnDevIdOpt",
    "retain_institution_identity": "rtnInstIdOpt",
    "retain_patient_characteristics": "rtnPatCharsOpt",
    "retain_full_dates": "rtnLongFullDatesOpt",
    "retain_modified_dates": "rtnLongModifDatesOpt",
    "clean_descriptors": "cleanDescOpt",
    "clean_structured_content": "cleanStructContOpt",
    "clean_graphics": "cleanGraphOpt",
}
ACTIONS = {"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
TAG = re.compile(r"^\(([0-9A-FX]{4}),([0-9A-FX]{4})\)$")


def tag_of(entry: dict[str, str]) -> str:
    """`(gggg,eeee)` upper case, `x` for a repeating digit; `(GGGG,EEEE)` for private."""
    raw = entry["tag"].strip().upper()
    if raw.startswith("(GGGG,EEEE)"):
        return "(GGGG,EEEE)"  # "where GGGG is odd": every private attribute
    if not TAG.match(raw):
        raise SystemExit(f"unexpected tag {entry['tag']!r} ({entry['name']})")
    return raw.replace("X", "x")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    entries = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    rows = []
    for entry in entries:
        row = [tag_of(entry), " ".join(entry["name"].split())]
        for key in COLUMNS.values():
            action = entry.get(key, "").strip()
            if action and action not in ACTIONS:
                raise SystemExit(f"unexpected action {action!r} for {entry['name']}")
            row.append(action)
        rows.append(row)
    rows.sort(key=lambda r: (r[0] == "(GGGG,EEEE)", r[0].replace("x", "0")))
    with OUT.open("w", encoding="utf-8", newline="") as out:
        out.write(f"# {EDITION}\n# source: {SOURCE}\n# written by scripts/make_deid_table.py\n")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["tag", "name", *COLUMNS])
        writer.writerows(rows)
    print(f"{OUT}: {len(rows)} attributes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
