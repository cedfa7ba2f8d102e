"""De-identification in the archive: each project's pseudonym key, and stored studies
de-identified into new studies (PS3.15 Annex E; the transformation is isthmus.deid).

A project is a name (a research study, a trial, a teaching file): its key is 256
random bits made on first use and kept in the index (table ``deid_project``), so every
process sharing the index gives the same pseudonyms and nobody without the index can
recompute them.  The originals are never touched: the copies are new instances, stored
through `Archive.store` like any other, under new UIDs.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from isthmus.archive import index as idx
from isthmus.archive.activity import Activity
from isthmus.archive.events import EventBus
from isthmus.archive.index import InstanceRow
from isthmus.archive.outcome import StoreOutcome, StoreResult
from isthmus.deid import (
    DeidentificationOptions,
    DeidentificationOptionsError,
    Deidentifier,
    Excluded,
)

log = logging.getLogger(__name__)

PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_project(project: str) -> str:
    """A project name: letters, digits, '.', '_', '-', at most 64 (DeidentificationOptionsError if not)."""
    if not isinstance(project, str) or not PROJECT.fullmatch(project):
        raise DeidentificationOptionsError(
            "a project name is 1 to 64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return project


def project_key(run: Callable[[Callable[[Connection], bytes]], bytes], project: str) -> bytes:
    """The project's key, made on first use (`run` runs a job in the index writer)."""
    check_project(project)
    select = sa.select(idx.deid_project.c.secret).where(idx.deid_project.c.name == project)

    def job(conn: Connection) -> bytes:
        secret = conn.execute(select).scalar()
        if secret is None:  # several processes may race here: the first insert wins
            row = {
                "name": project,
                "secret": secrets.token_hex(32),
                "created_at": datetime.now(UTC),
            }
            idx.insert_ignore(conn, idx.deid_project, row)
            secret = conn.execute(select).scalar_one()
        return bytes.fromhex(secret)

    return run(job)


class _Archive(Protocol):
    """What de-identifying stored studies needs of the Archive (archive.py)."""

    events: EventBus
    activity: Activity

    def deidentifier(
        self, project: str, options: DeidentificationOptions | None = None
    ) -> Deidentifier: ...
    def instances(self, study_uid: str) -> list[InstanceRow]: ...
    def read_instance(self, row: InstanceRow) -> bytes: ...
    def store(self, data: bytes) -> StoreResult: ...


@dataclass
class DeidentifiedStudies:
    """What `Archive.deidentify_studies` did, per study and instance."""

    studies: dict[str, str] = field(default_factory=dict)  # original → new Study UID
    stored: int = 0  # instances stored
    duplicates: int = 0  # instances already there (from an earlier run in the project)
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (SOP UID, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (SOP UID, reason)
    missing: list[str] = field(default_factory=list)  # study UIDs not in the archive


def deidentify_studies(
    archive: _Archive,
    study_uids: Sequence[str],
    project: str,
    options: DeidentificationOptions,
    who: Mapping[str, Any] | None = None,
) -> DeidentifiedStudies:
    """De-identify stored studies into new studies of the archive.

    Retain UIDs is refused: the copy would have the originals' UIDs, and the archive
    keeps one instance per SOP Instance UID (it is an option for exports and files).
    Running again in the same project gives the same UIDs, so it stores nothing twice.
    The copies stored are one "stored" audit event (DICOM Instances Transferred, PS3.15 A.5.3.7) for the caller
    `who` (``user``, ``address``, ``local``: archive/activity.py), as any door's.
    """
    if options.retain_uids:
        raise DeidentificationOptionsError(
            "retain_uids cannot be used inside the archive: the copies would have the "
            "originals' UIDs (use it when de-identifying files or exports)"
        )
    deid = archive.deidentifier(project, options)
    result = DeidentifiedStudies()
    tally = archive.activity.transfer("stored", "deidentify", **dict(who or {}))
    for study_uid in study_uids:
        rows = archive.instances(study_uid)
        if not rows:
            result.missing.append(study_uid)
            continue
        for row in rows:
            try:
                data = deid.part10(archive.read_instance(row))
            except Excluded as exc:
                result.excluded.append((row.sop_instance_uid, str(exc)))
                continue
            except Exception as exc:  # pydicom can refuse what the header parser took
                log.warning(
                    "de-identification of %s failed (%s)", row.sop_instance_uid, type(exc).__name__
                )
                result.failed.append((row.sop_instance_uid, f"{type(exc).__name__}: {exc}"))
                continue
            stored = archive.store(data)
            tally.add(stored.study_instance_uid, stored.sop_class_uid, len(data), stored.ok)
            if not stored.ok:
                result.failed.append((row.sop_instance_uid, stored.reason or str(stored.outcome)))
                continue
            if stored.outcome is StoreOutcome.DUPLICATE:
                result.duplicates += 1
            else:
                result.stored += 1
            assert stored.study_instance_uid is not None
            result.studies[study_uid] = stored.study_instance_uid
        if study_uid in result.studies:
            archive.events.publish(
                "deid.study",
                {"project": project, "source": study_uid, "study": result.studies[study_uid]},
                local=True,
            )
    tally.close()
    log.info(
        "de-identified %d study(ies) for project %s: %d instance(s) stored, %d excluded, %d failed",
        len(result.studies),
        project,
        result.stored,
        len(result.excluded),
        len(result.failed),
    )
    return result
