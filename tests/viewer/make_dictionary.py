"""Write src/isthmus/viewer/js/dictionary.js (tag → keyword) from pydicom's data dictionary.

The viewer's tags panel names each attribute; this is the one place that list comes from.
Run after a pydicom upgrade: `.venv/bin/python tests/viewer/make_dictionary.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydicom.datadict import DicomDictionary

TARGET = Path(__file__).resolve().parents[2] / "src/isthmus/viewer/js/dictionary.js"


def entries() -> dict[str, str]:
    """8-hex-digit tag → keyword, for every keyword pydicom knows (retired ones too)."""
    return {f"{tag:08X}": entry[4] for tag, entry in sorted(DicomDictionary.items()) if entry[4]}


def source() -> str:
    body = "\n".join(f"{tag}{keyword}" for tag, keyword in entries().items())
    return (
        "// DICOM attribute keywords by tag (PS3.6), generated from pydicom's dictionary by\n"
        "// tests/viewer/make_dictionary.py. One line per attribute: 8 hex digits, then the keyword.\n"
        f"const TABLE =\n  {json.dumps(body)};\n\n"
        "let map = null;\n\n"
        '/** The keyword of a tag such as "00100010" (group length and private tags get a description). */\n'
        "export function keyword(tag) {\n"
        '  if (!map) map = new Map(TABLE.split("\\n").map((line) => [line.slice(0, 8), line.slice(8)]));\n'
        "  const known = map.get(tag.toUpperCase());\n"
        "  if (known) return known;\n"
        '  if (tag.slice(4) === "0000") return "GroupLength";\n'
        '  return parseInt(tag.slice(0, 4), 16) % 2 === 1 ? "(private)" : "";\n'
        "}\n"
    )


if __name__ == "__main__":
    TARGET.write_text(source(), encoding="utf-8")
    print(f"wrote {TARGET} ({len(entries())} keywords)")
