"""The audit trail: ``audit.*`` events (archive/activity.py) to audit messages, logged.

It subscribes to the archive's event bus; the callback only queues the event, so a door
pays for a dictionary and a queue put.  One thread takes what is queued, completes the
studies with their patient as each event arrives (Patient ID and Patient's Name from the
index, for events whose door did not know them), builds the messages (message.py),
appends them to the local log with one fsync per batch (logfile.py) and sends them to
the syslog collector when one is configured (syslog.py).  A batch is what arrives
within `BATCH_SECONDS` of its first event: under a stream of QIDO-RS searches (each one
audited) one fsync per search cost each of them about 0.3 ms, and a batch written every
20 ms still met the next search often enough to slow it by 0.1 ms (building the
messages holds the interpreter; docs/performance.md).  `flush` and `close` end the wait
at once.

HTTP retrievals come in bursts (a viewer asks for every frame of a series): a
"transferred" event of the same user, address and studies within `COALESCE_SECONDS` of
the last one logged is not logged again.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from isthmus.archive import Archive, Event
from isthmus.audit.logfile import AuditLog
from isthmus.audit.message import Record, records
from isthmus.audit.syslog import SyslogSender, frame
from isthmus.config import ConfigError

log = logging.getLogger(__name__)

COALESCE_SECONDS = 60.0
# How long the thread waits after an event before it writes the batch (flush and close
# do not wait).  The events are already asynchronous to the doors; this only groups them.
BATCH_SECONDS = 0.25
HTTP_DOORS = ("dicomweb", "wado-uri")


class AuditTrail:
    """Turns one archive's audit events into logged (and sent) audit messages."""

    def __init__(
        self,
        archive: Archive,
        log_path: str | Path,
        audit_source: str,
        syslog: SyslogSender | None = None,
    ) -> None:
        self.archive = archive
        self.log = AuditLog(log_path)
        self.audit_source = audit_source
        self.syslog = syslog
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._recent: dict[tuple[Any, ...], float] = {}
        self._thread = threading.Thread(target=self._run, name="isthmus-audit", daemon=True)
        self._thread.start()
        self._unsubscribe: Callable[[], None] = archive.events.subscribe("audit.", self._queue.put)

    @classmethod
    def from_settings(cls, archive: Archive, settings: Any) -> AuditTrail:
        path = Path(settings.audit_log) if settings.audit_log else settings.data / "audit.log"
        sender = None
        if settings.audit_syslog:
            try:
                sender = SyslogSender(
                    settings.audit_syslog,
                    settings.audit_syslog_ca,
                    settings.audit_syslog_cert,
                    settings.audit_syslog_key,
                )
            except (ValueError, OSError, ssl.SSLError) as exc:
                raise ConfigError(str(exc)) from exc
        return cls(archive, path, settings.audit_source_id or settings.aet, sender)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every event queued so far is logged (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(Event("flush", {"done": done}))
        done.wait(timeout)

    def close(self) -> None:
        self._unsubscribe()
        self._queue.put(None)
        self._thread.join(timeout=30)
        if self.syslog is not None:
            self.syslog.close()

    def _run(self) -> None:
        while True:
            batch = self._gather()
            stop = None in batch
            events = [e for e in batch if e is not None]
            try:
                self._write([e for e in events if e.topic.startswith("audit.")])
            except Exception:
                log.exception("audit: cannot log %d event(s)", len(events))
            for e in events:
                if e.topic == "flush":
                    e.payload["done"].set()
            if stop:
                return

    def _gather(self) -> list[Event | None]:
        """The next batch: an event and what follows it within `BATCH_SECONDS` (one fsync
        for all the requests of a busy moment, not one each), ended at once by `flush`
        or `close`.  Each event is made ready as it arrives (`_arrived`)."""
        first = self._queue.get()
        batch = [self._arrived(first)]
        if first is None or first.topic == "flush":
            return batch
        deadline = time.monotonic() + BATCH_SECONDS
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            batch.append(self._arrived(event))
            if event is None or event.topic == "flush":
                break
        return batch

    def _arrived(self, event: Event | None) -> Event | None:
        """An event with its studies' patients looked up now, while the index still holds
        them (a study deleted within the batch's wait would have none); a repeated
        retrieval (`_repeated`) becomes a non-audit event, not logged."""
        if event is None or not event.topic.startswith("audit."):
            return event
        kind = event.topic.removeprefix("audit.")
        if self._repeated(kind, event.payload):
            return Event("repeated", {})
        return Event(event.topic, dict(self._with_patients(event.payload)))

    def _write(self, events: list[Event]) -> None:
        written: list[Record] = []
        for event in events:
            written += records(event.topic.removeprefix("audit."), event.payload, self.audit_source)
        if not written:
            return
        try:
            self.log.append(written)
        except OSError:  # a full disk: the collector still gets them
            log.exception("audit: cannot append %d message(s) to %s", len(written), self.log.path)
        if self.syslog is not None:
            self.syslog.send([frame(r.xml, r.time) for r in written])

    def _repeated(self, kind: str, payload: Mapping[str, Any]) -> bool:
        if kind != "transferred" or payload.get("door") not in HTTP_DOORS:
            return False
        key = (
            payload.get("user"),
            payload.get("address"),
            tuple(sorted(str(s.get("uid")) for s in payload.get("studies", ()))),
        )
        now = time.monotonic()
        last = self._recent.get(key)
        if len(self._recent) > 10_000:
            self._recent.clear()
        if last is not None and now - last < COALESCE_SECONDS:
            return True
        self._recent[key] = now
        return False

    def _with_patients(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        studies = list(payload.get("studies") or [])
        unknown = [str(s["uid"]) for s in studies if s.get("patient_id") is None]
        if not unknown:
            return payload
        try:
            found = self.archive.patients_of(unknown)
        except Exception:
            log.exception("audit: cannot look up the patients of %d studies", len(unknown))
            found = {}
        completed = []
        for study in studies:
            patient = found.get(str(study["uid"]))
            if study.get("patient_id") is None and patient is not None:
                study = {**study, "patient_id": patient[0], "patient_name": patient[1]}
            completed.append(study)
        return {**payload, "studies": completed}
