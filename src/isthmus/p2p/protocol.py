"""The transfer protocol on the data channel (docs/p2p.md, "Messages").

Control messages are text frames, one JSON object each with a "type"; chunks are binary
frames: b"C", then the instance's position in the manifest and the chunk's number as two
unsigned 32-bit big-endian integers, then at most CHUNK_SIZE bytes of the Part 10 file.

sender → receiver: "manifest" (in parts of at most MANIFEST_PART entries), chunks,
"error"; receiver → sender: "request" (chunks it lacks), "done" (everything stored and
verified), "error"; the sender answers "done" with "bye", and both close.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

VERSION = 1
CHUNK_SIZE = 256 * 1024 - 1024  # a chunk frame (header included) fits max-message-size 256 KiB
MANIFEST_PART = 400  # manifest entries per message (each well under 300 bytes)
_HEADER = struct.Struct(">cII")


class ProtocolError(Exception):
    """The peer sent something this protocol does not allow."""


@dataclass(frozen=True)
class Entry:
    """One instance of the manifest: what the receiver verifies before storing it."""

    position: int  # in the manifest: the order the sender suggests (first images first)
    sop_instance_uid: str
    series_instance_uid: str
    size: int
    sha256: str  # hex of the whole Part 10 file

    @property
    def chunks(self) -> int:
        return max(1, -(-self.size // CHUNK_SIZE))

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "sop": self.sop_instance_uid,
            "series": self.series_instance_uid,
            "size": self.size,
            "sha256": self.sha256,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Entry:
        try:
            entry = cls(
                int(doc["position"]),
                str(doc["sop"]),
                str(doc["series"]),
                int(doc["size"]),
                str(doc["sha256"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"bad manifest entry: {exc}") from None
        if entry.size < 0 or len(entry.sha256) != 64:
            raise ProtocolError(f"bad manifest entry for {entry.sop_instance_uid}")
        return entry


def control(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def parse_control(message: str) -> dict[str, Any]:
    try:
        doc = json.loads(message)
    except ValueError:
        raise ProtocolError("a text frame that is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        raise ProtocolError("a control message without a type")
    return doc


def chunk_frame(position: int, number: int, data: bytes) -> bytes:
    return _HEADER.pack(b"C", position, number) + data


def parse_chunk(frame: bytes) -> tuple[int, int, bytes]:
    if len(frame) < _HEADER.size or frame[:1] != b"C":
        raise ProtocolError("a binary frame that is not a chunk")
    _, position, number = _HEADER.unpack_from(frame)
    return position, number, frame[_HEADER.size :]


def manifest_messages(study_uid: str, entries: list[Entry]) -> list[str]:
    """The manifest in parts; the receiver has it all when it holds `total` entries."""
    parts = [entries[i : i + MANIFEST_PART] for i in range(0, len(entries), MANIFEST_PART)] or [[]]
    return [
        control(
            "manifest",
            version=VERSION,
            study=study_uid,
            total=len(entries),
            chunk_size=CHUNK_SIZE,
            instances=[e.as_json() for e in part],
        )
        for part in parts
    ]


def first_images_first(rows: list[tuple[str, str]]) -> list[int]:
    """Indexes of (series, sop) rows in sending order: the first instance of every
    series, then the rest in series order, so a viewer can show each series at once."""
    firsts: list[int] = []
    seen: set[str] = set()
    for i, (series, _) in enumerate(rows):
        if series not in seen:
            seen.add(series)
            firsts.append(i)
    chosen = set(firsts)
    return firsts + [i for i in range(len(rows)) if i not in chosen]
