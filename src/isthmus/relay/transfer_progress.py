"""Progress of a transfer, from the destination router to the originator of the retrieve.

The destination router publishes a sealed `Progress` (core NATS, kind "progress") to
the subject the originator named in the transfer's `origin` after every instance and
at the end.  The originator's router listens with a `ProgressListener` and turns the
reports into pending C-MOVE responses with real sub-operation counts and, from the
final one, the final response with its status and Failed SOP Instance UID List (PS3.4
C.4.2.1.5, C.4.2.3.1; PS3.7 9.1.4).  Reports are best effort (core NATS): a report
lost only delays the counts; the listener's bounded wait turns a lost final report
into a failure the caller sees, never a hang.

An empty message with a reply subject on the progress subject is a probe, from a
source router taking up a transfer after its restart (relay/resume.py): the listener
answers PROBE_AWAITED, or PROBE_CANCELLED once the caller cancelled the retrieve; with
no listener left (the caller heard its final response, cancelled and stopped waiting,
or went away) NATS answers "no responders" itself.  A probe carries nothing.
"""

from __future__ import annotations

import logging
import queue
import time
import uuid
from collections.abc import Iterator
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from isthmus.relay.crypto import EnvelopeError, SiteIdentity
from isthmus.relay.directory import Directory
from isthmus.relay.link import Link, LinkDown
from isthmus.relay.transfer_wire import PROGRESS, Progress, TransferError

log = logging.getLogger(__name__)
PROBE_AWAITED, PROBE_CANCELLED = b"awaited", b"cancelled"  # answers to a probe


def progress_subject(site: str, move_id: str | None = None) -> str:
    """A fresh subject for the progress of one retrieve originated at `site`."""
    return f"relay.{site}.progress.{move_id or uuid.uuid4().hex}"


def publish_progress(
    link: Link,
    identity: SiteIdentity,
    directory: Directory,
    origin: dict[str, Any],
    report: Progress,
) -> None:
    """Seal `report` to the originator and publish it (never raises: best effort)."""
    site, subject = str(origin.get("site", "")), str(origin.get("subject", ""))
    keys = directory.keys_of(site)
    if keys is None or not subject:
        log.warning("transfer %s: no progress to %r (unknown site)", report.transfer_id, site)
        return
    header = {"kind": PROGRESS, "transfer": report.transfer_id, "final": report.final}
    sealed = identity.seal(site, keys, header, report.to_bytes())
    try:
        link.call(link.nc.publish(subject, sealed), timeout=5)
    except Exception as exc:  # best effort; the originator's wait is bounded
        log.warning("transfer %s: progress not sent: %s", report.transfer_id, exc)


class ProgressListener:
    """The originator's side: the progress reports of the transfer(s) serving one
    retrieve, from subscription (make it before the retrieve starts) to the final one."""

    def __init__(
        self,
        link: Link,
        identity: SiteIdentity,
        directory: Directory,
        subject: str,
        *,
        from_site: str | None = None,
    ) -> None:
        self.link, self.identity, self.directory = link, identity, directory
        self.subject, self.from_site = subject, from_site
        self._queue: queue.Queue[bytes] = queue.Queue()
        self.cancelled = False  # set when the caller cancelled: what a probe is told
        self._sub: Subscription = link.call(link.nc.subscribe(subject, cb=self._received), 10)

    async def _received(self, msg: Msg) -> None:
        if not msg.data:  # a probe: is this retrieve still awaited?
            if msg.reply:
                await msg.respond(PROBE_CANCELLED if self.cancelled else PROBE_AWAITED)
            return
        self._queue.put(msg.data)

    def next(self, timeout: float) -> Progress:
        """The next valid report; TimeoutError when none comes within `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                data = self._queue.get(timeout=max(left, 0))
            except queue.Empty:
                raise TimeoutError(
                    f"no transfer progress on {self.subject} in {timeout:g} s"
                ) from None
            try:
                opened = self.identity.open(data, self.directory.keys_of)
                if self.from_site is not None and opened.header["from"] != self.from_site:
                    raise EnvelopeError(f"progress from {opened.header['from']!r}")
                return Progress.from_bytes(opened.body)
            except (EnvelopeError, TransferError) as exc:
                log.warning("progress on %s refused: %s", self.subject, exc)

    def reports(self, idle_timeout: float) -> Iterator[Progress]:
        """Every report up to and including the final one; TimeoutError when the
        destination falls silent for `idle_timeout` seconds."""
        while True:
            report = self.next(idle_timeout)
            yield report
            if report.final:
                return

    def close(self) -> None:
        try:
            self.link.call(self._sub.unsubscribe(), timeout=5)
        except (LinkDown, Exception):  # closing: whatever state the link is in
            log.debug("progress unsubscribe failed", exc_info=True)

    def __enter__(self) -> ProgressListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
