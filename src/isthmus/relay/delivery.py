"""The last hop of a transfer: C-STORE of each arrived instance to the destination AE of
the site (PS3.4 B.2), on one association per transfer, reopened with more presentation
contexts when an instance of a new SOP class or transfer syntax comes.

The instance goes as it was sent when the destination accepts its transfer syntax, else
transcoded to one it accepted (dimse/contexts.py, the rule C-MOVE from the archive
uses).  The C-STORE sub-operations carry the Move Originator of the C-MOVE (PS3.7
9.3.1.1) when there is one.  A device with `tls` is called over TLS (PS3.15 B.9), with
the site's client context (node.tls.client_context), never in clear.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from isthmus.archive import Activity
from isthmus.config import ConfigError, Peer
from isthmus.dimse.contexts import (
    MAX_CONTEXTS,
    accepted_syntaxes,
    contexts_for_syntaxes,
    encode_for,
)
from isthmus.dimse.requestor import AssociationFailed, Requestor
from isthmus.relay.tally import TransferTally

log = logging.getLogger(__name__)
OUT_OF_RESOURCES = 0xA700  # C-STORE: refused, out of resources (PS3.4 B.2.3)
PROCESSING_FAILURE = 0x0110  # PS3.7 C.5


class Delivery:
    """C-STOREs to one destination device; `store` is thread-safe, `close` at the end."""

    def __init__(
        self,
        peer: Peer,
        calling_aet: str,
        *,
        originator: tuple[str, int] | None = None,
        timeout: float = 60.0,
        tls: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        self.peer = peer
        self.tls = tls
        self.calling_aet = calling_aet
        self.originator = originator
        self.timeout = timeout
        self._pairs: list[tuple[str, str]] = []
        self._requestor: Requestor | None = None
        self._lock = threading.Lock()

    def store(self, sop_class: str, sop_instance: str, transfer_syntax: str, data: bytes) -> int:
        """C-STORE one Part 10 instance; the destination's status, or 0xA700/0x0110 when
        it cannot be reached or accepts no context for it."""
        with self._lock:
            try:
                requestor = self._association_for(sop_class, transfer_syntax)
                syntaxes = accepted_syntaxes(requestor.accepted, sop_class)
                context_id, dataset = encode_for(data, transfer_syntax, syntaxes)
                return requestor.store(
                    context_id, sop_class, sop_instance, dataset, self.originator
                )
            except (AssociationFailed, ConfigError) as exc:
                log.warning("relay delivery to %s failed: %s", self.peer, exc)
                self._requestor = None
                return OUT_OF_RESOURCES
            except ValueError as exc:  # no accepted syntax, or a codec refused it
                log.warning("relay delivery to %s: %s", self.peer, exc)
                return PROCESSING_FAILURE

    def _association_for(self, sop_class: str, transfer_syntax: str) -> Requestor:
        pair = (sop_class, transfer_syntax)
        if self._requestor is not None and pair in self._pairs:
            return self._requestor
        if pair not in self._pairs:
            self._pairs.append(pair)
        if self._requestor is not None:  # a new class or syntax: propose them all again
            self._requestor.release()
        contexts = contexts_for_syntaxes(self._pairs[-MAX_CONTEXTS // 2 :])
        tls = self.tls() if self.peer.tls and self.tls is not None else None
        self._requestor = Requestor(
            self.peer, self.calling_aet, contexts, timeout=self.timeout, tls=tls
        )
        return self._requestor.open()

    def close(self) -> None:
        with self._lock:
            if self._requestor is not None:
                try:
                    self._requestor.release()
                except OSError:
                    self._requestor.close()
                self._requestor = None


class Deliveries:
    """The destination side's `deliver` (relay/transfer_receive.py): each arrived instance
    to the site's device named by the transfer's destination AE title, one association
    per transfer, released when the transfer ends (`ended`), has been quiet for
    `idle` seconds, or another transfer delivers to the same device."""

    def __init__(
        self,
        local: Callable[[str], Peer | None],
        calling_aet: str,
        activity: Activity | None = None,
        idle: float = 30.0,
        tls: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        self.local = local
        self.tls = tls
        self.calling_aet = calling_aet
        self.activity = activity
        self.idle = idle
        self._open: dict[str, tuple[Delivery, float]] = {}
        self._tallies: dict[str, TransferTally] = {}
        self._lock = threading.Lock()

    def __call__(self, announcement: Any, data: bytes) -> int:
        peer = self.local(announcement.destination_aet)
        if peer is None:
            log.warning("relay: no device %r at this site", announcement.destination_aet)
            return PROCESSING_FAILURE
        delivery = self._delivery(announcement.transfer_id, peer)
        status = delivery.store(
            announcement.sop_class_uid,
            announcement.sop_instance_uid,
            announcement.transfer_syntax,
            data,
        )
        if status == 0 or 0xB000 <= status <= 0xBFFF:  # stored (warnings too)
            with self._lock:
                tally = self._tallies.setdefault(announcement.transfer_id, TransferTally())
            tally.count(announcement.sop_class_uid, announcement.transfer_syntax, data)
        return status

    def ended(self, transfer: Any, status: int) -> None:
        """A transfer ended (TransferReceiver's on_end): close its association, audit it."""
        with self._lock:
            found = self._open.pop(transfer.transfer_id, None)
            tally = self._tallies.pop(transfer.transfer_id, TransferTally())
        if found is not None:
            found[0].close()
        if self.activity is not None:
            tally.tell(
                self.activity,
                direction="received",
                transfer_id=transfer.transfer_id,
                peer_site=transfer.source,
                local_aet=transfer.destination_aet,
                status=status,
            )

    def _delivery(self, transfer_id: str, peer: Peer) -> Delivery:
        """The transfer's delivery; the others to the same device are released first:
        the receiver delivers one instance at a time, so they are idle, and a store
        that serves one association at a time would not accept the new one."""
        now = time.monotonic()
        with self._lock:
            quiet = [
                k
                for k, (d, t) in self._open.items()
                if k != transfer_id and (now - t > self.idle or d.peer == peer)
            ]
            closing = [self._open.pop(k)[0] for k in quiet]
            found = self._open.get(transfer_id)
            delivery = found[0] if found else Delivery(peer, self.calling_aet, tls=self.tls)
            self._open[transfer_id] = (delivery, now)
        for old in closing:
            old.close()
        return delivery

    def close(self) -> None:
        with self._lock:
            open_, self._open = list(self._open.values()), {}
        for delivery, _t in open_:
            delivery.close()
