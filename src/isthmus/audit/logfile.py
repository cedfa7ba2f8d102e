"""The local audit log: an append-only file of audit messages, one JSON object a line.

Each line is a `Record` (message.py): the fields it is searched by and the message's
XML.  The file is opened for appending only and never rewritten by Isthmus; each batch
of lines the trail writes is flushed and fsynced before the batch counts as logged
(the trail batches what arrived while the previous batch was being synced, so a
burst costs one fsync).  A line cut short by a crash is skipped when read.

Searching reads the file from the start and keeps the newest `limit` matches: simple,
and bounded in memory; a log past a few hundred megabytes wants rotation by the
operator's tools (move the file away; Isthmus opens a new one on its next write).
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from isthmus.audit.message import Record


@dataclass(frozen=True)
class Filter:
    """What an administrator asks for: a time range, a user, a patient, a study."""

    start: datetime | None = None  # inclusive
    end: datetime | None = None  # inclusive
    user: str | None = None
    patient: str | None = None  # Patient ID, or a part of the Patient's Name
    study: str | None = None
    event: str | None = None
    limit: int = 100

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.start is not None or self.end is not None:
            when = _parse_time(str(entry.get("time", "")))
            if when is None:
                return False
            if self.start is not None and when < _aware(self.start):
                return False
            if self.end is not None and when > _aware(self.end):
                return False
        if self.user is not None and entry.get("user") != self.user:
            return False
        if self.event is not None and entry.get("event") != self.event:
            return False
        if self.study is not None and self.study not in entry.get("studies", ()):
            return False
        if self.patient is not None:
            wanted = self.patient.upper()
            if not any(
                p.get("id") == self.patient or wanted in str(p.get("name", "")).upper()
                for p in entry.get("patients", ())
            ):
                return False
        return True


class AuditLog:
    """Appends records to the log file; thread-safe."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, records: Iterable[Record]) -> None:
        """Write the records and fsync them (one fsync per call)."""
        data = "".join(
            json.dumps(r.as_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
            for r in records
        ).encode("utf-8")
        if not data:
            return
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)

    def search(self, where: Filter) -> list[dict[str, Any]]:
        return search(self.path, where)


def search(path: str | os.PathLike[str], where: Filter) -> list[dict[str, Any]]:
    """The newest `where.limit` entries of the log matching `where`, newest first."""
    kept: deque[dict[str, Any]] = deque(maxlen=max(where.limit, 0) or None)
    for entry in entries(path):
        if where.matches(entry):
            kept.append(entry)
    return list(reversed(kept))


def entries(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every readable entry, oldest first (a torn last line is skipped)."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, generator
    except FileNotFoundError:
        return
    with fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield entry


def _parse_time(text: str) -> datetime | None:
    try:
        return _aware(datetime.fromisoformat(text))
    except ValueError:
        return None


def _aware(when: datetime) -> datetime:
    from datetime import UTC

    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
