"""Events between the worker processes of one node on SQLite (`isthmus serve --workers N`).

SQLite has no LISTEN/NOTIFY (events_postgres.py), but the workers of one node share a
machine and a supervisor (workers.py), which holds one end of a ``SOCK_SEQPACKET`` socket
pair with each of them: its control socket.  A worker's bus delivers an event to its own
subscribers at once, as the in-process bus does, and sends it to the supervisor, which
passes it on to every other worker (`EventRelay`).  One message is one event: a
sequenced-packet socket keeps message boundaries, and the order in which one worker
sent them.

The limits are those of the PostgreSQL bus: events carry references (a UID, a key),
never datasets, and one larger than `MAX_EVENT` is refused with ValueError; an event that
finds the supervisor's socket full is dropped and logged, never waited for, so that a
publisher (the index writer, an event loop) never blocks on another process.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any

from isthmus.archive.events import Callback, Event, LocalEventBus

log = logging.getLogger(__name__)

# The first byte of a control message: an event (JSON after it), or the worker's "ready".
EVENT = b"E"
READY = b"R"
MAX_EVENT = 64 * 1024  # bytes of one control message


class WorkerEventBus:
    """The `EventBus` of a worker whose siblings hear its events through the supervisor.

    The worker's watcher of the control socket (workers.py) hands what the supervisor
    sends to `received`."""

    def __init__(self, control: socket.socket, siblings: int) -> None:
        self.control = control
        self.siblings = siblings
        self._local = LocalEventBus()

    def publish(
        self, topic: str, payload: Mapping[str, Any] | None = None, *, local: bool = False
    ) -> None:
        event = Event(topic, dict(payload or {}))
        if local:  # a fact about this process alone (events.py)
            self._local.deliver(event)
            return
        message = EVENT + json.dumps(
            {"topic": topic, "payload": event.payload}, separators=(",", ":")
        ).encode("utf-8")
        if len(message) > MAX_EVENT:
            raise ValueError(
                f"event {topic} is too large to cross processes ({len(message)} bytes, "
                f"at most {MAX_EVENT}): publish a reference, not the data"
            )
        self._local.deliver(event)
        try:
            self.control.send(message, socket.MSG_DONTWAIT)
        except OSError as exc:  # full (the supervisor is behind) or gone (stopping)
            log.error("events: %s not sent to the other workers: %s", topic, exc)

    def received(self, message: bytes) -> None:
        """An event another worker published, as the supervisor passed it on."""
        try:
            body = json.loads(message[len(EVENT) :])
            event = Event(str(body["topic"]), dict(body.get("payload") or {}))
        except (ValueError, KeyError, TypeError):
            log.warning("events: an unreadable message from the supervisor dropped")
            return
        self._local.deliver(event)

    def subscribe(self, prefix: str, callback: Callback) -> Callable[[], None]:
        return self._local.subscribe(prefix, callback)

    def others(self) -> int:
        """The other workers of this node: they have the archive open."""
        return self.siblings

    def close(self) -> None:
        self._local.close()


class EventRelay:
    """The supervisor's part: each event a worker sends goes to every other worker."""

    def __init__(self) -> None:
        self.controls: dict[int, socket.socket] = {}  # worker number → control socket

    def relay(self, sender: int, message: bytes) -> None:
        for number, control in self.controls.items():
            if number == sender:
                continue
            try:
                control.send(message, socket.MSG_DONTWAIT)
            except BlockingIOError:
                log.error("events: worker %d is not reading; an event for it dropped", number)
            except OSError:  # it is exiting: the supervisor restarts it
                pass
