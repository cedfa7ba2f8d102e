"""Persistent jobs: work that must outlive an association, a request or the process.

One machinery for forwarding (archive/forwarding.py, sent by the DIMSE door), C-MOVE
sub-operations whose association dropped (dimse/retrieve.py), retention, and later the
relay's transfers.  A job is a row of the index (table ``job``) with its items (table
``job_item``, one per instance: pending, done or failed with the reason), so that:

- it survives a restart: a worker *claims* a due job with a lease (``lease_until``);
  a job whose lease ran out (the process died, or another process sharing the
  PostgreSQL index stopped) is due again and resumes with its pending items.  The claim
  is ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL and a conditional ``UPDATE`` on
  SQLite (only one claimer sees its row count be 1);
- a transient failure (the destination is down) raises `Retry`: the job goes back to
  the queue with exponential backoff, until `RetryPolicy` gives up (attempts or total
  time) and the job fails with the last reason;
- it ends with an honest status: ``completed`` (every item done), ``partial`` (some
  done, some failed), ``failed`` (nothing done, or the whole job failed; the reason is
  kept) or ``cancelled``.

**Job kinds** (the interface every user of the machinery implements): a kind is a
name and a function ``run(job: RunningJob) -> None``, registered with the worker
(`JobWorker.kinds`, job_worker.py).  ``run`` reads ``job.params`` (JSON) and ``job.pending()`` (the
items still to do), reports each item with ``job.done(item)`` / ``job.failed(item,
reason)``, stops early when ``job.cancelled()``, raises `Retry` for "try again later"
and `Fail` for "this job cannot succeed".  Items it never reported count as failed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from isthmus.archive import index as idx
from isthmus.archive.events import EventBus

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
FLUSH_ITEMS = 50  # item outcomes written in one commit at most…
FLUSH_SECONDS = 1.0  # …or this long after the last write
ACTIVE = ("queued", "running")
FINAL = ("completed", "partial", "failed", "cancelled")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Retry(Exception):  # noqa: N818 (an instruction, not an error)
    """Try the job again later (with backoff): the reason is kept as its last error."""


class Fail(Exception):  # noqa: N818
    """The job cannot succeed (unknown destination, bad parameters): fail it now."""


class Stopped(Exception):  # noqa: N818
    """The worker is stopping: the job goes back to the queue as it is."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff (`base` seconds, doubling, at most `cap`), bounded in total:
    at most `max_attempts` attempts and `max_time` seconds after the first one."""

    base: float = 5.0
    cap: float = 600.0
    max_attempts: int = 20
    max_time: float = 86_400.0

    def delay(self, attempts: int) -> float:
        return float(min(self.cap, self.base * 2 ** max(0, attempts - 1)))


@dataclass
class Job:
    """What an administrator sees of a job."""

    id: int
    kind: str
    label: str
    subject: str
    params: dict[str, Any]
    status: str
    attempts: int
    not_before: datetime
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    cancel_requested: bool
    counts: dict[str, int] = field(default_factory=dict)  # total, done, failed, pending
    failures: list[dict[str, str]] = field(default_factory=list)  # item, reason (first few)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: v for k, v in self.__dict__.items()}
        for key in ("not_before", "created_at", "updated_at", "finished_at"):
            value = out[key]
            out[key] = value.isoformat() if value else None
        return out


def aware(value: datetime | None) -> datetime | None:
    """Timestamps as UTC-aware datetimes (SQLite hands them back naive)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class Jobs:
    """The job queue in the index: enqueue, claim, report, cancel, retry, list."""

    def __init__(
        self,
        engine: Engine,
        events: EventBus | None = None,
        clock: Clock = utc_now,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.engine = engine
        self.events = events
        self.clock = clock  # tests set their own: retention and backoff read it
        self.policy = policy or RetryPolicy()
        self.wakeup = threading.Event()  # set when a job may have become due

    # -------------------------------------------------------------- enqueue
    def enqueue(
        self,
        kind: str,
        items: Iterable[str] = (),
        *,
        label: str = "",
        subject: str = "",
        params: Mapping[str, Any] | None = None,
        delay: float = 0.0,
        merge: bool = False,
    ) -> int:
        """Queue a job (due in `delay` seconds) with its items; returns its id.

        With `merge`, items join a job of the same kind, label and subject that is
        still queued, and its start moves to `delay` from now: the batching of
        forwarding, where a study "settles" before it is sent in one association."""
        now = self.clock()
        due = now + timedelta(seconds=delay)
        j = idx.job.c
        with self.engine.begin() as conn:
            pk = None
            if merge:
                pk = conn.execute(
                    sa.select(j.pk)
                    .where(j.kind == kind, j.label == label, j.subject == subject)
                    .where(j.status == "queued", j.cancel_requested.is_(False))
                    .order_by(j.pk.desc())
                    .limit(1)
                ).scalar()
            if pk is None:
                pk = conn.execute(
                    idx.job.insert().values(
                        kind=kind,
                        label=label,
                        subject=subject,
                        params=json.dumps(dict(params or {})),
                        status="queued",
                        attempts=0,
                        not_before=due,
                        cancel_requested=False,
                        created_at=now,
                        updated_at=now,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            else:
                conn.execute(
                    idx.job.update().where(j.pk == pk).values(not_before=due, updated_at=now)
                )
            for item in dict.fromkeys(items):
                idx.insert_ignore(
                    conn,
                    idx.job_item,
                    {"job_pk": pk, "item": item, "status": "pending", "updated_at": now},
                )
        self._changed(int(pk), "queued")
        return int(pk)

    # ---------------------------------------------------------------- claim
    def claim(self, owner: str, kinds: Sequence[str], lease: float) -> RunningJob | None:
        """Take one due job of `kinds` (queued and due, or running with an expired
        lease) for `lease` seconds; None when there is none."""
        now = self.clock()
        j = idx.job.c
        due = sa.or_(
            sa.and_(j.status == "queued", j.not_before <= now),
            sa.and_(j.status == "running", j.lease_until < now),
        )
        with self.engine.begin() as conn:
            query = (
                sa.select(j.pk, j.first_try)
                .where(due, j.kind.in_(list(kinds)))
                .order_by(j.not_before, j.pk)
                .limit(1)
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            row = conn.execute(query).first()
            if row is None:
                return None
            claimed = conn.execute(
                idx.job.update()
                .where(j.pk == row.pk, due)
                .values(
                    status="running",
                    lease_owner=owner,
                    lease_until=now + timedelta(seconds=lease),
                    attempts=j.attempts + 1,
                    first_try=row.first_try or now,
                    updated_at=now,
                )
            )
            if claimed.rowcount != 1:  # another worker (SQLite) took it first
                return None
            info = conn.execute(sa.select(idx.job).where(j.pk == row.pk)).one()
        self._changed(int(info.pk), "running")
        return RunningJob(self, info, owner, lease)

    # --------------------------------------------------------------- finish
    def finish(self, job: RunningJob) -> str:
        """The final status from the items: every pending item left is failed."""
        job.flush()
        now = self.clock()
        i, j = idx.job_item.c, idx.job.c
        with self.engine.begin() as conn:
            cancelled = conn.execute(sa.select(j.cancel_requested).where(j.pk == job.id)).scalar()
            if not cancelled:
                conn.execute(
                    idx.job_item.update()
                    .where(i.job_pk == job.id, i.status == "pending")
                    .values(status="failed", reason="not attempted", updated_at=now)
                )
            counts = _counts(conn, [job.id]).get(job.id, {})
            done, failed = counts.get("done", 0), counts.get("failed", 0)
            if cancelled:
                status = "cancelled"
            elif failed == 0:
                status = "completed"
            elif done == 0:
                status = "failed"
            else:
                status = "partial"
            error = None if status == "completed" else _summary(conn, job.id, done, failed)
            self._final(conn, job.id, status, error, now)
        return status

    def fail(self, job: RunningJob, reason: str) -> None:
        """The whole job failed: its pending items fail with the same reason."""
        job.flush()
        now = self.clock()
        i = idx.job_item.c
        with self.engine.begin() as conn:
            conn.execute(
                idx.job_item.update()
                .where(i.job_pk == job.id, i.status == "pending")
                .values(status="failed", reason=reason, updated_at=now)
            )
            self._final(conn, job.id, "failed", reason, now)

    def retry_later(self, job: RunningJob, reason: str) -> str:
        """Back to the queue with backoff, or failed when the policy gives up."""
        job.flush()
        now = self.clock()
        j = idx.job.c
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(j.attempts, j.first_try).where(j.pk == job.id)).one()
            elapsed = (now - (aware(row.first_try) or now)).total_seconds()
            if row.attempts >= self.policy.max_attempts or elapsed >= self.policy.max_time:
                error = f"gave up after {row.attempts} attempts: {reason}"
                conn.execute(
                    idx.job_item.update()
                    .where(idx.job_item.c.job_pk == job.id, idx.job_item.c.status == "pending")
                    .values(status="failed", reason=reason, updated_at=now)
                )
                self._final(conn, job.id, "failed", error, now)
                return "failed"
            conn.execute(
                idx.job.update()
                .where(j.pk == job.id)
                .values(
                    status="queued",
                    not_before=now + timedelta(seconds=self.policy.delay(row.attempts)),
                    lease_owner=None,
                    lease_until=None,
                    error=reason,
                    updated_at=now,
                )
            )
        self._changed(job.id, "queued")
        return "queued"

    def release(self, job: RunningJob) -> None:
        """Give a job back untouched (the worker stops): due again at once."""
        job.flush()
        j = idx.job.c
        with self.engine.begin() as conn:
            conn.execute(
                idx.job.update()
                .where(j.pk == job.id, j.lease_owner == job.owner)
                .values(
                    status="queued",
                    attempts=j.attempts - 1,
                    lease_owner=None,
                    lease_until=None,
                    not_before=self.clock(),
                )
            )

    def _final(
        self, conn: Connection, pk: int, status: str, error: str | None, now: datetime
    ) -> None:
        conn.execute(
            idx.job.update()
            .where(idx.job.c.pk == pk)
            .values(
                status=status,
                error=error,
                finished_at=now,
                updated_at=now,
                lease_owner=None,
                lease_until=None,
            )
        )
        self._changed(pk, status)

    # ---------------------------------------------------- cancel and retry
    def cancel(self, pk: int) -> Job | None:
        """Cancel a job: at once when queued, at its next item when running."""
        now = self.clock()
        j = idx.job.c
        with self.engine.begin() as conn:
            status = conn.execute(sa.select(j.status).where(j.pk == pk)).scalar()
            if status is None:
                return None
            if status == "queued":
                conn.execute(idx.job.update().where(j.pk == pk).values(cancel_requested=True))
                self._final(conn, pk, "cancelled", None, now)
            elif status == "running":
                conn.execute(
                    idx.job.update().where(j.pk == pk).values(cancel_requested=True, updated_at=now)
                )
        return self.get(pk)

    def retry(self, pk: int) -> Job | None:
        """Run a finished job again: its failed items become pending, attempts start over."""
        now = self.clock()
        i, j = idx.job_item.c, idx.job.c
        with self.engine.begin() as conn:
            status = conn.execute(sa.select(j.status).where(j.pk == pk)).scalar()
            if status is None:
                return None
            if status in FINAL:
                conn.execute(
                    idx.job_item.update()
                    .where(i.job_pk == pk, i.status != "done")
                    .values(status="pending", reason=None, updated_at=now)
                )
                conn.execute(
                    idx.job.update()
                    .where(j.pk == pk)
                    .values(
                        status="queued",
                        attempts=0,
                        first_try=None,
                        not_before=now,
                        cancel_requested=False,
                        error=None,
                        finished_at=None,
                        updated_at=now,
                    )
                )
        if status in FINAL:
            self._changed(pk, "queued")
        return self.get(pk)

    # ----------------------------------------------------------------- read
    def get(self, pk: int) -> Job | None:
        found = self.search(ids=[pk])
        return found[0] if found else None

    def search(
        self,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 100,
        ids: Sequence[int] | None = None,
    ) -> list[Job]:
        """Jobs, newest first, with their item counts and first failures."""
        j = idx.job.c
        query = sa.select(idx.job).order_by(j.pk.desc()).limit(limit)
        if status:
            query = query.where(j.status == status)
        if kind:
            query = query.where(j.kind == kind)
        if ids is not None:
            query = query.where(j.pk.in_(list(ids)))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            counts = _counts(conn, [r.pk for r in rows])
            failures = _failures(conn, [r.pk for r in rows if r.status != "completed"])
        return [_job(r, counts.get(r.pk, {}), failures.get(r.pk, [])) for r in rows]

    def items(self, pk: int, status: str | None = None) -> list[tuple[str, str, str | None]]:
        """(item, status, reason) of a job."""
        i = idx.job_item.c
        query = sa.select(i.item, i.status, i.reason).where(i.job_pk == pk).order_by(i.pk)
        if status:
            query = query.where(i.status == status)
        with self.engine.connect() as conn:
            return [(r.item, r.status, r.reason) for r in conn.execute(query)]

    def done_items(self, kind: str, label: str, subject: str) -> set[str]:
        """Items done by any job of `kind`, `label`, `subject` (e.g. instances of a
        study confirmed forwarded by a rule)."""
        i, j = idx.job_item.c, idx.job.c
        query = (
            sa.select(i.item)
            .select_from(idx.job_item.join(idx.job))
            .where(j.kind == kind, j.label == label, j.subject == subject, i.status == "done")
        )
        with self.engine.connect() as conn:
            return {r.item for r in conn.execute(query)}

    def subjects(self, kind: str, label: str) -> list[str]:
        j = idx.job.c
        query = sa.select(j.subject).where(j.kind == kind, j.label == label).distinct()
        with self.engine.connect() as conn:
            return [r.subject for r in conn.execute(query)]

    def active(self, kind: str, label: str = "", subject: str = "") -> bool:
        j = idx.job.c
        query = sa.select(j.pk).where(
            j.kind == kind, j.label == label, j.subject == subject, j.status.in_(ACTIVE)
        )
        with self.engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def purge(self, keep_days: float) -> int:
        """Delete jobs finished more than `keep_days` ago; returns how many.  A forward
        job whose study is still stored is kept: it is the proof retention needs that
        the study was forwarded."""
        cutoff = self.clock() - timedelta(days=keep_days)
        j = idx.job.c
        still_stored = sa.exists().where(idx.study.c.study_instance_uid == j.subject)
        old = sa.select(j.pk).where(
            j.status.in_(FINAL),
            j.finished_at < cutoff,
            sa.or_(j.kind != "forward", ~still_stored),
        )
        with self.engine.begin() as conn:
            pks = [row.pk for row in conn.execute(old)]
            for start in range(0, len(pks), 500):
                chunk = pks[start : start + 500]
                conn.execute(idx.job_item.delete().where(idx.job_item.c.job_pk.in_(chunk)))
                conn.execute(idx.job.delete().where(j.pk.in_(chunk)))
        return len(pks)

    def _changed(self, pk: int, status: str) -> None:
        self.wakeup.set()
        if self.events is not None:
            self.events.publish(f"job.{status}", {"id": pk, "status": status})


class RunningJob:
    """A claimed job, as its kind's `run` sees it."""

    def __init__(self, jobs: Jobs, row: Any, owner: str, lease: float) -> None:
        self.jobs = jobs
        self.id: int = int(row.pk)
        self.kind: str = row.kind
        self.label: str = row.label
        self.subject: str = row.subject
        self.params: dict[str, Any] = json.loads(row.params or "{}")
        self.attempts: int = int(row.attempts)
        self.owner = owner
        self.lease = lease
        self.stopping = threading.Event()
        self._reports: list[tuple[str, str, str | None]] = []
        self._flushed = time.monotonic()

    def pending(self) -> list[str]:
        return [item for item, _s, _r in self.jobs.items(self.id, "pending")]

    def done(self, item: str) -> None:
        self.report(item, "done", None)

    def failed(self, item: str, reason: str) -> None:
        self.report(item, "failed", reason)

    def report(self, item: str, status: str, reason: str | None) -> None:
        """One item's outcome (an item the job did not have is added).  Outcomes are
        written in batches (`FLUSH_ITEMS`, or `FLUSH_SECONDS` after the last write),
        with a renewed lease: one commit per batch, not per instance.  An outcome not
        yet written when the process dies is lost, and the item done again (at least
        once).  Raises Stopped when the worker stops."""
        self._reports.append((item, status, reason))
        if len(self._reports) >= FLUSH_ITEMS or time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self.flush()
        if self.stopping.is_set():
            self.flush()
            raise Stopped()

    def flush(self) -> None:
        """Write the outcomes reported so far, and renew the lease."""
        reports, self._reports = self._reports, []
        self._flushed = time.monotonic()
        now = self.jobs.clock()
        i, j = idx.job_item.c, idx.job.c
        with self.jobs.engine.begin() as conn:
            for item, status, _reason in reports:
                idx.insert_ignore(
                    conn,
                    idx.job_item,
                    {"job_pk": self.id, "item": item, "status": status, "updated_at": now},
                )
            if reports:
                conn.execute(
                    idx.job_item.update()
                    .where(i.job_pk == self.id, i.item == sa.bindparam("b_item"))
                    .values(status=sa.bindparam("b_status"), reason=sa.bindparam("b_reason")),
                    [{"b_item": it, "b_status": st, "b_reason": rs} for it, st, rs in reports],
                )
            conn.execute(
                idx.job.update()
                .where(j.pk == self.id)
                .values(lease_until=now + timedelta(seconds=self.lease), updated_at=now)
            )

    def cancelled(self) -> bool:
        j = idx.job.c
        with self.jobs.engine.connect() as conn:
            return bool(conn.execute(sa.select(j.cancel_requested).where(j.pk == self.id)).scalar())


JobKind = Callable[[RunningJob], None]


def _counts(conn: Connection, pks: Sequence[int]) -> dict[int, dict[str, int]]:
    if not pks:
        return {}
    i = idx.job_item.c
    query = (
        sa.select(i.job_pk, i.status, sa.func.count())
        .where(i.job_pk.in_(list(pks)))
        .group_by(i.job_pk, i.status)
    )
    out: dict[int, dict[str, int]] = {}
    for pk, status, n in conn.execute(query):
        out.setdefault(pk, {"total": 0, "done": 0, "failed": 0, "pending": 0})
        out[pk][status] = int(n)
        out[pk]["total"] += int(n)
    return out


def _failures(conn: Connection, pks: Sequence[int], per_job: int = 5) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    i = idx.job_item.c
    for pk in pks:
        rows = conn.execute(
            sa.select(i.item, i.reason)
            .where(i.job_pk == pk, i.status == "failed")
            .order_by(i.pk)
            .limit(per_job)
        )
        out[pk] = [{"item": r.item, "reason": r.reason or ""} for r in rows]
    return out


def _summary(conn: Connection, pk: int, done: int, failed: int) -> str:
    reasons = [f["reason"] for f in _failures(conn, [pk], 3).get(pk, [])]
    return f"{done} done, {failed} failed: " + "; ".join(dict.fromkeys(reasons))


def _job(row: Any, counts: dict[str, int], failures: list[Any]) -> Job:
    return Job(
        id=int(row.pk),
        kind=row.kind,
        label=row.label,
        subject=row.subject,
        params=json.loads(row.params or "{}"),
        status=row.status,
        attempts=int(row.attempts),
        not_before=aware(row.not_before) or utc_now(),
        error=row.error,
        created_at=aware(row.created_at) or utc_now(),
        updated_at=aware(row.updated_at) or utc_now(),
        finished_at=aware(row.finished_at),
        cancel_requested=bool(row.cancel_requested),
        counts={"total": 0, "done": 0, "failed": 0, "pending": 0, **counts},
        failures=failures,
    )
