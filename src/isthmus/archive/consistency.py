"""What `Archive.check` finds and repairs: the leftovers of a crash.

A store writes its blob, then commits its row (archive.py, `store`); a crash in between
leaves a blob no row names (an orphan), a crash before the rename a temporary file, a
power loss after the commit but before the fsync a row whose blob is short or missing.

When several processes share the index and the blob store (docs/scaling.md) the same
states are, for a moment, another process's store in progress: its temporary file, its
blob whose row the next commit brings.  So what is younger than a grace period is left
alone, and each repair is checked again against the index just before it is made.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from isthmus.archive import index as idx
from isthmus.archive.storage import BlobStore
from isthmus.archive.writer import GroupCommitWriter


class ArchiveParts(Protocol):
    """What of the archive (archive.py) the check uses."""

    engine: Engine
    blobs: BlobStore
    writer: GroupCommitWriter

    def parents_changed(self, conn: Connection) -> None: ...


_BATCH = 500


@dataclass
class Survey:
    """The blob keys found inconsistent, and the grace they were judged with."""

    grace: float
    instances: int
    orphans: set[str] = field(default_factory=set)  # blobs no row names
    missing: set[str] = field(default_factory=set)  # rows whose blob is missing or short
    partial: int = 0

    def repair(self, archive: ArchiveParts) -> None:
        """Remove temporary files, orphan blobs and rows without their blob."""
        self.partial = archive.blobs.sweep(older_than=self.grace)
        still = _indexed(archive, self.orphans)
        for key in self.orphans - still:  # a row may have come since the survey
            archive.blobs.delete(key)
        self.orphans -= still
        if not self.missing:
            return
        cutoff = datetime.now(UTC) - timedelta(seconds=self.grace)
        keys = sorted(self.missing)

        def job(conn: Connection) -> None:
            for start in range(0, len(keys), _BATCH):
                conn.execute(
                    idx.instance.delete().where(
                        idx.instance.c.blob_key.in_(keys[start : start + _BATCH]),
                        idx.instance.c.stored_at < cutoff,
                    )
                )
            archive.parents_changed(conn)

        archive.writer.run(job)
        for key in keys:  # a short blob of a removed row
            archive.blobs.delete(key)

    def report(self, repaired: bool) -> dict[str, int]:
        return {
            "partial": self.partial,
            "orphans": len(self.orphans),
            "missing": len(self.missing),
            "instances": self.instances - (len(self.missing) if repaired else 0),
        }


def survey(archive: ArchiveParts, grace: float) -> Survey:
    """Compare the index with the blob store; what is younger than `grace` seconds may
    belong to a store in progress and is not reported."""
    now = time.time()
    cutoff = datetime.now(UTC) - timedelta(seconds=grace)
    i = idx.instance.c
    with archive.engine.connect() as conn:  # rows first: a blob is always older than its row
        rows = {
            key: (size, stored_at)
            for key, size, stored_at in conn.execute(sa.select(i.blob_key, i.size, i.stored_at))
        }
    found = Survey(grace, len(rows))
    stored = dict(archive.blobs.sizes())  # one listing (S3: no request per blob)
    for key in stored.keys() - rows.keys():
        if _age(archive, key, now) >= grace:
            found.orphans.add(key)
    for key, (size, stored_at) in rows.items():
        if _aware(stored_at) >= cutoff:
            continue
        if stored.get(key) != size:
            found.missing.add(key)
    return found


def _age(archive: ArchiveParts, key: str, now: float) -> float:
    try:
        return now - archive.blobs.modified(key)
    except KeyError:  # deleted meanwhile
        return -1.0


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _indexed(archive: ArchiveParts, keys: Iterable[str]) -> set[str]:
    """Which of `keys` a row names now."""
    found: set[str] = set()
    with archive.engine.connect() as conn:
        for chunk in _chunks(sorted(keys)):
            found.update(
                k
                for (k,) in conn.execute(
                    sa.select(idx.instance.c.blob_key).where(idx.instance.c.blob_key.in_(chunk))
                )
            )
    return found


def _chunks(keys: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(keys), _BATCH):
        yield keys[start : start + _BATCH]
