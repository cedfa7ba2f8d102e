"""Forwarding rules: what is stored here also goes elsewhere, as persistent jobs.

A rule (``[[forward]]`` in the config file, docs/operations.md "Forwarding and jobs")
matches stored instances on the calling AE title (``from``), the modality and any other
attribute (``match``: keyword → value or values, ``*``/``?`` wildcards as in PS3.4
C.2.2.2.4), and names a destination (``to``: a known peer; later a relay site).  The
scheduling is the core's: `Forwarding` hears ``instance.stored`` on the archive's event
bus and queues one job per (rule, study) that waits until the study has been quiet for
``settle`` seconds, so a study goes out on one association, not one per instance.  The
sending is a door's (the job kind ``forward``, dimse/forward.py).

Retention (``delete_after_days``): a periodic ``retention`` job deletes a study from the
local archive once every one of its instances was confirmed forwarded by the rule
(a ``done`` item of one of its forward jobs) and the newest one was stored more than
that many days ago (by the jobs' clock, which tests set).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydicom.datadict import tag_for_keyword

from isthmus.archive import index as idx
from isthmus.archive.events import Event
from isthmus.archive.jobs import RunningJob, aware

if TYPE_CHECKING:
    from isthmus.archive.archive import Archive

log = logging.getLogger(__name__)

FORWARD = "forward"
RETENTION = "retention"
_RULE_KEYS = {"name", "from", "modality", "match", "to", "settle", "delete_after_days"}


@dataclass(frozen=True)
class ForwardRule:
    """One rule: which stored instances (empty criteria match all), and where to."""

    name: str
    destination: str
    calling_aets: frozenset[str] = frozenset()
    modalities: frozenset[str] = frozenset()
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()  # keyword → accepted values
    settle: float = 5.0
    delete_after_days: float | None = None

    def prefilter(self, stored: Mapping[str, Any]) -> bool:
        """The criteria an ``instance.stored`` payload answers (calling AE, modality)."""
        if self.calling_aets and (stored.get("source_aet") or "") not in self.calling_aets:
            return False
        return not self.modalities or (stored.get("modality") or "") in self.modalities

    def matches(self, stored: Mapping[str, Any], dataset: Callable[[], dict[str, Any]]) -> bool:
        """Does a stored instance match?  `dataset` gives its DICOM JSON, asked for
        only when the rule has attribute criteria."""
        if not self.prefilter(stored):
            return False
        if not self.attributes:
            return True
        found = dataset()
        return all(_attribute_matches(found, k, v) for k, v in self.attributes)


def _attribute_matches(dataset: Mapping[str, Any], keyword: str, wanted: tuple[str, ...]) -> bool:
    tag = tag_for_keyword(keyword)
    element = dataset.get(f"{tag:08X}") if tag is not None else None
    values = (element or {}).get("Value") or []
    texts = [
        str(v.get("Alphabetic", "")) if isinstance(v, dict) else str(v).strip() for v in values
    ]
    return any(fnmatch.fnmatchcase(text, pattern) for text in texts for pattern in wanted)


def _texts(value: Any, what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str | int | float) else value
    if not isinstance(items, list | tuple) or not items:
        raise ValueError(f"{what} must be a text or a list of texts")
    return tuple(str(v).strip() for v in items)


def parse_rules(
    tables: Iterable[Mapping[str, Any]], known_destinations: Iterable[str]
) -> list[ForwardRule]:
    """Rules from the config file's ``[[forward]]`` tables; ValueError names what is wrong."""
    destinations = set(known_destinations)
    rules: list[ForwardRule] = []
    for n, table in enumerate(tables, start=1):
        if not isinstance(table, Mapping):
            raise ValueError(f"forward rule {n} must be a table")
        name = str(table.get("name") or f"rule{n}")
        unknown = set(table) - _RULE_KEYS
        if unknown:
            raise ValueError(f"forward rule {name!r}: unknown keys {sorted(unknown)}")
        destination = str(table.get("to", "")).strip()
        if destination not in destinations:
            raise ValueError(
                f"forward rule {name!r}: destination {destination!r} is not a known peer"
            )
        match = table.get("match", {}) or {}
        if not isinstance(match, Mapping):
            raise ValueError(f"forward rule {name!r}: match must be a table")
        for keyword in match:
            if tag_for_keyword(str(keyword)) is None:
                raise ValueError(f"forward rule {name!r}: {keyword!r} is no DICOM keyword")
        days = table.get("delete_after_days")
        rule = ForwardRule(
            name=name,
            destination=destination,
            calling_aets=frozenset(_texts(table["from"], "from"))
            if "from" in table
            else frozenset(),
            modalities=frozenset(_texts(table["modality"], "modality"))
            if "modality" in table
            else frozenset(),
            attributes=tuple((str(k), _texts(v, str(k))) for k, v in match.items()),
            settle=float(table.get("settle", 5.0)),
            delete_after_days=None if days is None else float(days),
        )
        if rule.settle < 0 or (rule.delete_after_days is not None and rule.delete_after_days < 0):
            raise ValueError(f"forward rule {name!r}: settle and delete_after_days must be >= 0")
        if name in {r.name for r in rules}:
            raise ValueError(f"forward rule {name!r} is named twice")
        rules.append(rule)
    return rules


class Forwarding:
    """Turns stored instances into forward jobs, and schedules retention."""

    def __init__(
        self, archive: Archive, rules: list[ForwardRule], retention_interval: float = 3600.0
    ) -> None:
        self.archive = archive
        self.rules = rules
        self.retention_interval = retention_interval
        self._queue: queue.SimpleQueue[tuple[ForwardRule, dict[str, Any]] | None] = (
            queue.SimpleQueue()
        )
        self._unsubscribe: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Forwarding:
        if not self.rules:
            return self
        self._unsubscribe = self.archive.events.subscribe("instance.stored", self._on_stored)
        self._thread = threading.Thread(target=self._loop, name="isthmus-forwarding", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)
            self._thread = None

    def _on_stored(self, event: Event) -> None:
        """On the storing thread: only the cheap criteria, then hand over."""
        for rule in self.rules:
            if rule.prefilter(event.payload):
                self._queue.put((rule, dict(event.payload)))

    def _loop(self) -> None:
        """Queue jobs for what the stores handed over; a batch that cannot be queued
        (the index is busy or down) is tried again, not dropped."""
        self._catch_up_quietly()
        next_retention = time.monotonic() + min(60.0, self.retention_interval)
        while True:
            batch, stopping = self._take(max(0.0, next_retention - time.monotonic()))
            try:
                if batch:
                    self._schedule(batch)
                if time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + self.retention_interval
                    self.schedule_retention()
            except Exception:
                log.exception("forwarding: cannot queue jobs; trying again")
                if not stopping:
                    for entry in batch:
                        self._queue.put(entry)
                    time.sleep(1.0)
            if stopping:
                return

    def _take(self, timeout: float) -> tuple[list[tuple[ForwardRule, dict[str, Any]]], bool]:
        """Everything waiting (after up to `timeout` seconds for the first), and whether
        stop() was asked for."""
        batch: list[tuple[ForwardRule, dict[str, Any]]] = []
        try:
            entry = self._queue.get(timeout=timeout)
        except queue.Empty:
            return batch, False
        while entry is not None:
            batch.append(entry)
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
        return batch, True

    def _catch_up_quietly(self) -> None:
        try:
            found = self.catch_up()
        except Exception:
            log.exception("forwarding: cannot look for instances left without a job")
            return
        if found:
            log.warning("forwarding: %d instances stored before a restart get their jobs", found)

    def catch_up(self, window: float = 86_400.0) -> int:
        """Instances stored in the last `window` seconds that no forward job of a rule
        they match covers (stored just before a crash, before their job was queued) are
        handed to the scheduler; returns how many (instance, rule) pairs."""
        since = self.archive.jobs.clock() - timedelta(seconds=window)
        i, s, st = idx.instance.c, idx.series.c, idx.study.c
        ji, j = idx.job_item.c, idx.job.c
        found = 0
        for rule in self.rules:
            covered = (
                sa.select(ji.item)
                .select_from(idx.job_item.join(idx.job))
                .where(j.kind == FORWARD, j.label == rule.name, ji.item == i.sop_instance_uid)
            )
            query = (
                sa.select(
                    i.sop_instance_uid,
                    i.sop_class_uid,
                    i.source_aet,
                    s.series_instance_uid,
                    s.modality,
                    st.study_instance_uid,
                )
                .select_from(idx.instance.join(idx.series).join(idx.study))
                .where(i.stored_at >= since, ~sa.exists(covered))
            )
            with self.archive.engine.connect() as conn:
                rows = conn.execute(query).all()
            for row in rows:
                stored = {
                    "study": row.study_instance_uid,
                    "series": row.series_instance_uid,
                    "sop_instance": row.sop_instance_uid,
                    "sop_class": row.sop_class_uid,
                    "modality": row.modality,
                    "source_aet": row.source_aet,
                }
                if rule.prefilter(stored):
                    self._queue.put((rule, stored))
                    found += 1
        return found

    def _schedule(self, batch: list[tuple[ForwardRule, dict[str, Any]]]) -> None:
        grouped: dict[tuple[str, str], tuple[ForwardRule, list[str]]] = {}
        for rule, stored in batch:
            if rule.attributes and not rule.matches(
                stored, partial(_dataset, self.archive, stored)
            ):
                continue
            key = (rule.name, str(stored.get("study") or ""))
            grouped.setdefault(key, (rule, []))[1].append(str(stored.get("sop_instance")))
        for (_name, study), (rule, sops) in grouped.items():
            self.archive.jobs.enqueue(
                FORWARD,
                sops,
                label=rule.name,
                subject=study,
                params={"destination": rule.destination},
                delay=rule.settle,
                merge=True,
            )

    def schedule_retention(self) -> list[int]:
        """Queue a retention job per rule that deletes, unless one is queued or running."""
        queued = []
        for rule in self.rules:
            if rule.delete_after_days is None or self.archive.jobs.active(RETENTION, rule.name):
                continue
            queued.append(
                self.archive.jobs.enqueue(
                    RETENTION, label=rule.name, params={"days": rule.delete_after_days}
                )
            )
        return queued


def _dataset(archive: Archive, stored: Mapping[str, Any]) -> dict[str, Any]:
    for text in archive.metadata(
        str(stored.get("study")), str(stored.get("series")), str(stored.get("sop_instance"))
    ):
        found: dict[str, Any] = json.loads(text)
        return found
    return {}


def retention_kind(archive: Archive) -> Callable[[RunningJob], None]:
    """The job kind ``retention``: delete the studies of a rule that are forwarded and old."""

    def run(job: RunningJob) -> None:
        days = float(job.params.get("days", 0))
        cutoff = archive.jobs.clock() - timedelta(days=days)
        for study in archive.jobs.subjects(FORWARD, job.label):
            if job.cancelled():
                return
            stored = _stored_instances(archive, study)
            if not stored:
                continue
            confirmed = archive.jobs.done_items(FORWARD, job.label, study)
            newest = max(when for when in stored.values())
            if set(stored) <= confirmed and newest <= cutoff:
                deleted = archive.delete(study)
                job.report(study, "done", f"{deleted} instances deleted")
                log.info("retention %s: study deleted (%d instances)", job.label, deleted)

    return run


def _stored_instances(archive: Archive, study: str) -> dict[str, Any]:
    """SOP Instance UID → stored_at (UTC) of a study's instances."""
    i, st = idx.instance.c, idx.study.c
    query = (
        sa.select(i.sop_instance_uid, i.stored_at)
        .select_from(idx.instance.join(idx.series).join(idx.study))
        .where(st.study_instance_uid == study)
    )
    with archive.engine.connect() as conn:
        return {r.sop_instance_uid: aware(r.stored_at) for r in conn.execute(query)}
