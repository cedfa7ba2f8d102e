"""UPS event reports to subscribed DICOM AEs: N-EVENT-REPORT of the UPS Event SOP Class
(PS3.4 CC.2.4), on associations the archive requests.

The work item store logs each event for each subscriber AE and publishes it on
`archive.events` (topic ``ups.<uid>``; archive/workitems.py).  This sender listens
there; for a subscriber that is a known peer (`AccessControl.destination`: the
address is the peer list's) it opens an association (SCP role of UPS Event, PS3.7
D.3.3.4), sends every event of that AE still undelivered, in order, each with the
UPS Push SOP Class as Affected SOP Class (CC.2.4.2), and marks each delivered once
answered.  A peer that cannot be reached keeps its events in the log: they go first
the next time an event for it happens, or at the next retry (`retry_interval`), for
as long as the store keeps them (`WorkItems.event_retention`).  Subscribers that are
not DICOM peers get their events from the UPS-RS Open Event Channel instead.
"""

from __future__ import annotations

import logging
import queue
import threading

from isthmus.archive import UPS_PUSH_SOP_CLASS as UPS_PUSH
from isthmus.archive import Archive, Event, WorkItemEvent
from isthmus.config import Settings
from isthmus.dimse.nmodel import to_dataset, unicode_model
from isthmus.dimse.notify import EventReporter, ReportFailed, reporting_context
from isthmus.node.access import AccessControl

log = logging.getLogger(__name__)

UPS_EVENT = "1.2.840.10008.5.1.4.34.6.4"


class UpsEventSender:
    """One thread delivering logged UPS events to subscriber peers."""

    def __init__(
        self,
        archive: Archive,
        settings: Settings,
        access: AccessControl,
        retry_interval: float = 60.0,
    ) -> None:
        self.workitems = archive.workitems
        self.settings = settings
        self.access = access
        self.retry_interval = retry_interval
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="isthmus-ups-events", daemon=True)
        self._thread.start()
        self._unsubscribe = archive.events.subscribe("ups.", self._heard)
        for peer in settings.peers:  # what was left undelivered before a restart
            self._queue.put(peer.aet)

    def _heard(self, event: Event) -> None:
        aet = str(event.payload.get("aet", ""))
        if aet and self.access.destination(aet) is not None:
            self._queue.put(aet)

    def _run(self) -> None:
        while True:
            aet = self._queue.get()
            if aet is None or self._stop.is_set():
                return
            try:
                if not self.deliver(aet):
                    self._retry_later(aet)
            except Exception:  # a bug must not stop deliveries to the other peers
                log.exception("UPS events for %s", aet)

    def deliver(self, aet: str) -> bool:
        """Send the undelivered events of `aet`; False if some could not be delivered."""
        pending = self.workitems.pending_events(aet)
        peer = self.access.destination(aet)
        if not pending or peer is None:
            return True
        try:
            with EventReporter(
                peer,
                self.settings.aet,
                UPS_EVENT,
                self.settings.network_timeout,
                reporting_context(self.settings, peer),
            ) as reporter:
                for event in pending:
                    self._send(reporter, event)
                    self.workitems.mark_delivered(aet, [event.id])
        except ReportFailed as exc:
            log.warning("UPS events for %s not delivered (kept for later): %s", aet, exc)
            return False
        return True

    @staticmethod
    def _send(reporter: EventReporter, event: WorkItemEvent) -> None:
        status = reporter.send(
            UPS_PUSH,
            event.workitem_uid,
            int(event.event_type),
            to_dataset(unicode_model(event.info)),
        )
        if status != 0x0000:
            log.info("UPS event %d to %s answered 0x%04X", event.id, event.aet, status)

    def _retry_later(self, aet: str) -> None:
        timer = threading.Timer(self.retry_interval, self._queue.put, args=(aet,))
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        self._unsubscribe()
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=10)
