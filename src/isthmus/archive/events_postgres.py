"""Events between the processes of one archive: PostgreSQL's LISTEN/NOTIFY.

Every process that shares a PostgreSQL index listens on one channel with a connection
of its own (a thread waits for notifications and hands them to the local subscribers);
`publish` delivers to the local subscribers at once, as the in-process bus does, and
queues a ``NOTIFY`` for the others (which skip their own): a thread sends the queue in
order, so a publisher - the index writer, an event loop - never waits for the database.  PostgreSQL delivers a
notification to every listening session when the sending transaction commits (here: at
once, autocommit), in the order sent (PostgreSQL documentation, NOTIFY).

Limits, by design of NOTIFY: the payload (topic and JSON payload together) must be
under 8000 bytes - a larger event is refused with ValueError, so a publisher carries a
reference (a UID, a row's key), never a dataset; an event sent while a listener is
reconnecting (the database restarted) is lost for that process - events say that
something happened, the index says what is.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from isthmus.archive.events import Callback, Event, LocalEventBus

log = logging.getLogger(__name__)

CHANNEL = "isthmus_events"
MAX_NOTIFY = 7999  # bytes; PostgreSQL refuses payloads of 8000 bytes and more
OUTBOX = 10_000  # notifications waiting for the database; more are dropped (logged)
CONNECT_TIMEOUT = 5  # seconds
# Advisory lock every listening process holds shared: who else has the archive open.
PRESENCE = 0x69737468_00000001


class PostgresEventBus:
    """The `EventBus` of processes sharing one PostgreSQL index."""

    def __init__(self, url: URL | str, channel: str = CHANNEL) -> None:
        self.conninfo = _conninfo(url)
        self.channel = channel
        self.origin = secrets.token_hex(8)  # this bus, to skip its own notifications
        self._local = LocalEventBus()
        self._publish_lock = threading.Lock()
        self._publisher: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._backend_pid = 0  # the listener's session, which holds PRESENCE
        self._outbox: queue.Queue[str | None] = queue.Queue(OUTBOX)
        self._sender = threading.Thread(target=self._send, name="isthmus-notify", daemon=True)
        self._sender.start()
        self._thread = threading.Thread(target=self._listen, name="isthmus-events", daemon=True)
        self._thread.start()
        # Subscribers made after this returns hear what other processes publish from now.
        if not self._listening.wait(10):
            log.warning("events: not listening on PostgreSQL yet; retrying in the background")

    def publish(
        self, topic: str, payload: Mapping[str, Any] | None = None, *, local: bool = False
    ) -> None:
        event = Event(topic, dict(payload or {}))
        if local:  # a fact about this process alone (events.py): no NOTIFY
            self._local.deliver(event)
            return
        text = json.dumps(
            {"origin": self.origin, "topic": topic, "payload": event.payload},
            separators=(",", ":"),
        )
        if len(text.encode("utf-8")) > MAX_NOTIFY:
            raise ValueError(
                f"event {topic} is too large to cross processes ({len(text)} bytes, "
                f"at most {MAX_NOTIFY}): publish a reference, not the data"
            )
        self._local.deliver(event)
        try:
            self._outbox.put_nowait(text)
        except queue.Full:
            log.error("events: %s not sent to the other processes (database unreachable)", topic)

    def subscribe(self, prefix: str, callback: Callback) -> Callable[[], None]:
        return self._local.subscribe(prefix, callback)

    def close(self) -> None:
        self._outbox.put(None)  # what is queued goes out first
        self._sender.join(timeout=10)
        self._stop.set()
        if self.listening:  # wake the listener up: it returns at once, not at its timeout
            self._notify(json.dumps({"origin": self.origin, "wake": True}))
        self._thread.join(timeout=5)
        with self._publish_lock:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None
        self._local.close()

    @property
    def listening(self) -> bool:
        """True while the listener's connection is up."""
        return self._listening.is_set()

    def others(self) -> int | None:
        """How many other buses (processes) listen on this database now; None when
        this one is not connected and cannot tell."""
        if not self.listening:
            return None
        query = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s AND objid = %s AND objsubid = 1 AND pid <> %s"
        )
        params = (PRESENCE >> 32, PRESENCE & 0xFFFFFFFF, self._backend_pid)
        with self._publish_lock:
            try:
                conn = self._connected()
                row = conn.execute(query, params).fetchone()
            except psycopg.OperationalError:
                self._publisher = None
                return None
        return int(row[0]) if row else 0

    # -------------------------------------------------------------- inside
    def _connected(self) -> psycopg.Connection[Any]:
        if self._publisher is None or self._publisher.closed:
            self._publisher = psycopg.connect(
                self.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT
            )
        return self._publisher

    def _send(self) -> None:
        while (text := self._outbox.get()) is not None:
            try:
                self._notify(text)
            except Exception:  # keep sending the next ones
                log.exception("events: a notification failed")

    def _notify(self, text: str) -> None:
        """NOTIFY on the publisher's connection, reconnecting once if it broke."""
        with self._publish_lock:
            for attempt in range(2):
                try:
                    self._connected().execute("SELECT pg_notify(%s, %s)", (self.channel, text))
                    return
                except psycopg.OperationalError:
                    self._publisher = None
                    if attempt:
                        log.exception("events: cannot notify the other processes")

    def _listen(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT
                ) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    conn.execute("SELECT pg_advisory_lock_shared(%s)", (PRESENCE,))
                    self._backend_pid = conn.info.backend_pid
                    self._listening.set()
                    delay = 0.2
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=1.0, stop_after=1):
                            self._receive(notify.payload)
                    # Gone from the others' count now, not when the server notices.
                    conn.execute("SELECT pg_advisory_unlock_shared(%s)", (PRESENCE,))
            except psycopg.Error as exc:
                self._listening.clear()
                if self._stop.is_set():
                    return
                log.warning("events: listener lost PostgreSQL (%s); reconnecting", exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        self._listening.clear()

    def _receive(self, text: str) -> None:
        try:
            message = json.loads(text)
            if message.get("origin") == self.origin:
                return
            event = Event(str(message["topic"]), dict(message.get("payload") or {}))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("events: ignored a notification that is not an event")
            return
        self._local.deliver(event)


def _conninfo(url: URL | str) -> str:
    """A libpq URI from an SQLAlchemy URL (``postgresql+psycopg://…``)."""
    text = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    scheme, rest = text.split("://", 1)
    return f"postgresql://{rest}" if scheme.startswith("postgres") else text
