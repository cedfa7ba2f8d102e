"""The source side of a transfer: instances into the object store, announced on JetStream.

The source router receives the C-STOREs of the C-MOVE (or C-GET) it issued to its local
device on behalf of a remote caller and hands each instance to `TransferSender.add`,
which compresses and seals it to the destination site, PUTs it (whole objects of at
most PART_SIZE bytes before compression), then announces it on JetStream with the
identifying data in the sealed body, and returns only when both are durable (S3's 200,
JetStream's PubAck): the C-STORE can then be answered with success (PS3.4 B.2.3 - a
success status means the instance is safe).  Within the bounded time either may take
it raises `TransferUnavailable` instead, and the C-STORE fails with 0xA700.
`finish` sends the manifest; `abort` ends the transfer early.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from nats.errors import Error as NatsError

from isthmus.archive import RelayDelivery, RelayTransfers
from isthmus.relay.crypto import SiteIdentity, compress, compress_if_worth
from isthmus.relay.directory import Directory
from isthmus.relay.link import Link, LinkDown
from isthmus.relay.objects import ObjectsUnavailable, TransferObjects
from isthmus.relay.presign import presign
from isthmus.relay.transfer_status import CANCEL
from isthmus.relay.transfer_wire import (
    ABORT,
    ANNOUNCE,
    INSTANCE,
    MANIFEST,
    MANIFEST_KIND,
    PART_SIZE,
    STREAM,
    Announcement,
    Manifest,
    ManifestEntry,
    TransferError,
    TransferUnavailable,
    ensure_stream,
    new_transfer_id,
    part_count,
    part_name,
    transfer_subject,
    worth_compressing_syntax,
)

log = logging.getLogger(__name__)
ABORTED, COMPLETE = RelayTransfers.ABORTED, RelayTransfers.COMPLETE
SENDING, SENT = RelayTransfers.SENDING, RelayTransfers.SENT
TIMEOUT = 10.0  # seconds JetStream may take to acknowledge one announcement
PRESIGN = 100  # instances whose URLs are asked for at once
RESUME_GAP = 1000  # sequence numbers skipped on resuming (one may be unrecorded)
PUBLISH_ATTEMPT = 3.0  # seconds one publish waits for its PubAck before it is sent again


class TransferSender:
    """One transfer from this site to `destination_site`'s AE `destination_aet`.

    `origin` says where progress goes: ``{"site": …, "subject": …}`` (the router of
    the C-MOVE's caller and the subject its ProgressListener listens on).  With
    `state` (the site's `Archive.relay_transfers`) the transfer and every instance
    sent are recorded, and `transfer_id` resumes a transfer of this site after a
    restart: the instances it recorded are in its manifest and not sent again.
    `request` (what the transfer serves, relay/moves.py) is recorded with a new one, for
    the router that takes it up after a restart (relay/resume.py)."""

    def __init__(
        self,
        link: Link,
        identity: SiteIdentity,
        directory: Directory,
        objects: TransferObjects,
        *,
        destination_site: str,
        destination_aet: str,
        origin: dict[str, Any],
        timeout: float = TIMEOUT,
        state: RelayTransfers | None = None,
        transfer_id: str | None = None,
        request: dict[str, Any] | None = None,
    ) -> None:
        keys = directory.keys_of(destination_site)
        if keys is None:
            raise TransferError(f"site {destination_site!r} is unknown, revoked or not pinned")
        if not {"site", "subject"} <= set(origin):
            raise TransferError(f"origin {origin!r} names no site and subject")
        self.link, self.identity, self.objects = link, identity, objects
        self.destination, self.destination_aet = destination_site, destination_aet
        self.origin, self.timeout, self._keys = dict(origin), timeout, keys
        self.state = state
        self._id = transfer_id or new_transfer_id(identity.name, destination_site)
        self._subject = transfer_subject(destination_site, self._id)
        self._entries: list[ManifestEntry] = []
        self._sent: set[str] = set()  # the SOP Instance UIDs of _entries
        self._next = 0
        # Deduplication ids of this sender's messages: a resumed sender's never collide
        # with those of the process before it (whose last one may not be recorded).
        self._epoch = uuid.uuid4().hex[:8]
        if state is not None:
            self._record_begin(state, transfer_id is not None, request)
        self._signed_until = 0  # instances below this have pre-signed URLs
        self._lock = threading.Lock()
        self._closed = False
        # The number of instances the source device said it will send (from its
        # C-MOVE pending responses), carried in announcements for "remaining".
        self.expected: int | None = None
        self._call(lambda: ensure_stream(link.js), "create the stream " + STREAM)

    def _record_begin(
        self, state: RelayTransfers, resuming: bool, request: dict[str, Any] | None
    ) -> None:
        """Record a new transfer as SENDING, or take up a recorded one where it was."""
        if not resuming:
            state.begin(
                self._id,
                source=self.identity.name,
                destination=self.destination,
                destination_aet=self.destination_aet,
                origin=self.origin,
                status=SENDING,
                request=request,
            )
            return
        row = state.get(self._id)
        if row is None or row.status != SENDING or row.source != self.identity.name:
            raise TransferError(f"no transfer {self._id} of this site in flight to resume")
        recorded = state.deliveries(self._id)
        sent = [d for d in recorded if d.status == SENT]
        self._entries = [ManifestEntry(d.seq, d.sop_instance_uid, d.size, d.sha256) for d in sent]
        self._sent = {e.sop_instance_uid for e in self._entries}
        self._next = max((d.seq for d in recorded), default=-1) + 1 + RESUME_GAP

    @property
    def transfer_id(self) -> str:
        return self._id

    def already_sent(self, sop_instance_uid: str) -> bool:
        """Was this instance sent (and recorded) by this transfer, before a restart?"""
        return sop_instance_uid in self._sent

    @property
    def sent(self) -> int:
        return len(self._entries)

    def add(
        self, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, part10_bytes: bytes
    ) -> None:
        """Store and announce one instance; returns once both are durable, else raises
        TransferUnavailable (NATS or S3 down, bounded) or TransferError (closed)."""
        with self._lock:
            if self._closed:
                raise TransferError(f"transfer {self._id} is finished")
            if self.state is not None and self.already_sent(sop_instance_uid):
                return  # sent before this router restarted: durable already
            seq, self._next = self._next, self._next + 1  # never reused, even on failure
        size, parts = len(part10_bytes), part_count(len(part10_bytes))
        self._presign(seq, parts)
        squeeze = worth_compressing_syntax(transfer_syntax)
        for part in range(parts):
            chunk = part10_bytes[part * PART_SIZE : (part + 1) * PART_SIZE]
            self._put_part(seq, part, parts, chunk, squeeze)
        announcement = Announcement(
            transfer_id=self._id,
            seq=seq,
            source=self.identity.name,
            destination=self.destination,
            destination_aet=self.destination_aet,
            origin=self.origin,
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax=transfer_syntax,
            size=size,
            sha256=hashlib.sha256(part10_bytes).hexdigest(),
            parts=parts,
            expected=self.expected,
        )
        msg_id = f"{self._id}.{seq}.{self._epoch}"
        self._publish(ANNOUNCE, {"seq": seq}, announcement.to_bytes(), msg_id)
        entry = ManifestEntry(seq, sop_instance_uid, size, announcement.sha256)
        if self.state is not None:
            self.state.record(
                RelayDelivery(self._id, seq, sop_instance_uid, entry.sha256, size, SENT, None, None)
            )
        with self._lock:
            self._entries.append(entry)
            self._sent.add(sop_instance_uid)

    def _presign(self, seq: int, parts: int) -> None:
        """URLs for the next PRESIGN instances' objects in one request, when the store
        signs URLs (relay/presign.py); a large instance's parts when it comes."""
        if parts > 1:
            presign(self.objects, "PUT", [(self._id, [part_name(seq, p) for p in range(parts)])])
        elif seq >= self._signed_until:
            self._signed_until = seq + PRESIGN
            names = [part_name(n, 0) for n in range(seq, seq + PRESIGN)]
            presign(self.objects, "PUT", [(self._id, names + [MANIFEST])])

    def _put_part(self, seq: int, part: int, parts: int, chunk: bytes, squeeze: bool) -> None:
        """One part in its object, compressed when that shrinks it (`zstd` says which)."""
        body, zstd = compress_if_worth(chunk) if squeeze else (chunk, False)
        header = {
            "kind": INSTANCE,
            "transfer": self._id,
            "seq": seq,
            "part": part,
            "parts": parts,
            "size": len(chunk),
            "zstd": zstd,
        }
        sealed = self.identity.seal(self.destination, self._keys, header, body)
        try:
            self.objects.put(self._id, part_name(seq, part), sealed)
        except ObjectsUnavailable as exc:
            raise TransferUnavailable(f"object store: {exc}") from exc

    def finish(self, status: int, *, failed: int = 0, failed_uids: Sequence[str] = ()) -> Manifest:
        """Send the manifest: every instance sent, plus what the source device's final
        C-MOVE/C-GET response said: its Status (`status`), its Number of Failed
        Sub-operations (`failed`: those it could not send, including the C-STOREs this
        router refused) and its Failed SOP Instance UID List (`failed_uids`), PS3.4
        C.4.2.1.5.  The destination counts these among the failures it reports."""
        with self._lock:
            self._closed = True
            manifest = Manifest(self._id, tuple(self._entries), failed, status, tuple(failed_uids))
        body = manifest.to_bytes()
        header = {"kind": MANIFEST_KIND, "transfer": self._id, "count": len(manifest.entries)}
        sealed = self.identity.seal(self.destination, self._keys, header, compress(body))
        try:
            self.objects.put(self._id, MANIFEST, sealed)
        except ObjectsUnavailable as exc:
            raise TransferUnavailable(f"object store: {exc}") from exc
        notice = {
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            **self._parties(),
        }
        self._publish(MANIFEST_KIND, header, _json(notice), f"{self._id}.manifest")
        if self.state is not None:
            self.state.finish(self._id, COMPLETE, status)
        return manifest

    def abort(self, reason: str, *, status: int = CANCEL) -> None:
        """End the transfer early (a C-CANCEL, or the source gave up): the destination
        keeps what it delivered, reports `status` as final and deletes the objects."""
        with self._lock:
            self._closed = True
        body = _json({"reason": reason, "status": status, **self._parties()})
        try:
            self._publish(ABORT, {"transfer": self._id}, body, f"{self._id}.abort")
        finally:  # recorded as ended here even when the destination cannot be told
            if self.state is not None:
                self.state.finish(self._id, ABORTED, status, reason)

    def _parties(self) -> dict[str, Any]:
        """What a transfer's first message must say (a transfer may have no instance)."""
        return {"destination_aet": self.destination_aet, "origin": self.origin}

    def _publish(self, kind: str, header: dict[str, Any], body: bytes, msg_id: str) -> None:
        """One sealed message on JetStream; waits for its PubAck.  A publish that gets no
        answer (JetStream busy, or not ready yet after a restart) is sent again within
        `timeout`: the stream keeps one copy of a `msg_id` (Nats-Msg-Id deduplication)."""
        head = dict(header, kind=kind, transfer=self._id)
        sealed = self.identity.seal(self.destination, self._keys, head, body)
        deadline = time.monotonic() + self.timeout
        while True:
            attempt = max(min(PUBLISH_ATTEMPT, deadline - time.monotonic()), 0.1)
            try:
                self._call(
                    functools.partial(
                        self.link.js.publish,
                        self._subject,
                        sealed,
                        timeout=attempt,
                        stream=STREAM,
                        headers={"Nats-Msg-Id": msg_id},
                    ),
                    f"announce on {STREAM}",
                    attempt,
                )
                return
            except TransferUnavailable:
                if time.monotonic() + 0.2 >= deadline or not self.link.connected:
                    raise
                time.sleep(0.2)

    def _call(
        self,
        coroutine: Callable[[], Coroutine[Any, Any, Any]],
        what: str,
        timeout: float | None = None,
    ) -> Any:
        """Run a NATS coroutine on the link, bounded; any failure is TransferUnavailable.

        Nothing is published while the link is down: nats-py would keep the message
        and send it after reconnecting, so an instance whose C-STORE failed would
        still be delivered (a count the originator never hears of)."""
        if not self.link.connected:
            raise TransferUnavailable(f"NATS: cannot {what}: not connected")
        try:
            return self.link.call(coroutine(), timeout=(timeout or self.timeout) + 2)
        except (LinkDown, NatsError, OSError) as exc:
            raise TransferUnavailable(f"NATS: cannot {what}: {exc or type(exc).__name__}") from exc


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()
