"""The UPS event channels open on this process, so that shutdown lets them finish.

When the node stops it reports SCP Status Change "GOING DOWN" to every subscriber
(PS3.4 CC.2.4.2) and then closes the HTTP server.  A channel that is still taking that
event from the log or writing its frame when the server closes loses the race: the
socket closes first (1012) and the subscriber hears nothing until it reconnects.
`drain` waits, bounded, until every open channel has handed its pending events to the
socket.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Protocol


class PendingEvents(Protocol):
    def pending_events(self, aet: str, after: int = 0) -> Sequence[object]: ...


class OpenChannels:
    """Which AEs have an open channel, and how many frames are being sent right now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._aets: Counter[str] = Counter()
        self._sending = 0

    @contextlib.contextmanager
    def opened(self, aet: str) -> Iterator[None]:
        with self._lock:
            self._aets[aet] += 1
        try:
            yield
        finally:
            with self._lock:
                self._aets[aet] -= 1
                if self._aets[aet] <= 0:
                    del self._aets[aet]

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """Around taking one event from the log and writing its frame."""
        with self._lock:
            self._sending += 1
        try:
            yield
        finally:
            with self._lock:
                self._sending -= 1

    def drain(self, events: PendingEvents, timeout: float) -> bool:
        """Wait until no frame is being sent and no open channel's AE has an event left
        in the log; False if `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                aets, sending = list(self._aets), self._sending
            if not sending and not any(events.pending_events(aet) for aet in aets):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
