"""Events: the one way a part of Isthmus tells the others that something happened.

An event is a topic (dotted words, e.g. ``ups.1.2.3.state`` or ``route.browser``) and a
JSON-serializable payload, so that the same event can cross a process boundary: when
several processes share one archive, the bus carries events between them (docs/scaling.md).
The in-process bus below is the default and the interface every implementation keeps.

An event about this process alone - its metrics and audit facts, what its doors stored,
its associations - is published with ``local=True``: the subscribers of this process hear
it and no other process does (each process counts, audits and forwards its own work).

Subscribers name a topic prefix; ``""`` receives everything.  Callbacks run on the
publisher's thread (or the bus's listener thread, for events from other processes) and
must be quick: a door hands the event to its own loop (``loop.call_soon_threadsafe``) or
queue.  A callback that raises is logged and does not stop delivery to the others.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """Something that happened: where (`topic`), what (`payload`, JSON-serializable)."""

    topic: str
    payload: Mapping[str, Any] = field(default_factory=dict)


Callback = Callable[[Event], None]


class EventBus(Protocol):
    """What doors need to tell each other (and other processes) what happened."""

    def publish(
        self, topic: str, payload: Mapping[str, Any] | None = None, *, local: bool = False
    ) -> None:
        """Deliver an event to every subscriber whose prefix starts its topic; with
        `local`, to this process's subscribers only."""

    def subscribe(self, prefix: str, callback: Callback) -> Callable[[], None]:
        """Call `callback` for each event whose topic starts with `prefix`; returns the
        function that unsubscribes."""

    def close(self) -> None: ...


class LocalEventBus:
    """Events within one process: a thread-safe list of (prefix, callback)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[int, tuple[str, Callback]] = {}
        self._ids = itertools.count()

    def publish(
        self, topic: str, payload: Mapping[str, Any] | None = None, *, local: bool = False
    ) -> None:
        self.deliver(Event(topic, dict(payload or {})))

    def deliver(self, event: Event) -> None:
        """Hand one event to the local subscribers (also used by cross-process buses)."""
        with self._lock:
            targets = [
                cb for prefix, cb in self._subscribers.values() if event.topic.startswith(prefix)
            ]
        for callback in targets:
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed on %s", event.topic)

    def subscribe(self, prefix: str, callback: Callback) -> Callable[[], None]:
        with self._lock:
            key = next(self._ids)
            self._subscribers[key] = (prefix, callback)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.pop(key, None)

        return unsubscribe

    def close(self) -> None:
        with self._lock:
            self._subscribers.clear()
