"""The destination side of transfers: a durable JetStream consumer per site, delivering.

`TransferReceiver` pulls this site's announcements (durable consumer ``site-<name>``,
filter ``relay.<name>.transfer.>``) on a thread of its own, in order, and for each
instance not yet recorded in the index (`RelayTransfers`: so a restart never delivers
twice) fetches its objects, opens them (AEAD, signature of the source site, header
bound to this transfer and position), decompresses, checks size and SHA-256 against the
sealed announcement (a mismatch is fetched again a bounded number of times, then
failed), calls `deliver` - the C-STORE to the destination AE, whose status it records -
then acknowledges the message and reports progress to the originator.

The manifest completes a transfer when every entry in it is recorded; entries not yet
recorded (an announcement redelivered after a crash comes after the manifest) are
waited for, bounded (`manifest_wait`, from the first sight of the manifest, kept in
the index), then failed as never arrived.  The final report carries the honest status
(transfer_status.final_status) and the failed UIDs; the transfer's objects are then
deleted.

One window is at-least-once: a process killed between the C-STORE's response and the
index's commit delivers that instance again after its restart (the same SOP Instance
UID; a PACS stores it once).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from isthmus.archive import RelayDelivery, RelayTransfer, RelayTransfers
from isthmus.relay.crypto import EnvelopeError, SiteIdentity, decompress, peek_header
from isthmus.relay.directory import Directory
from isthmus.relay.link import Link, LinkDown
from isthmus.relay.objects import MissingObject, ObjectsUnavailable, TransferObjects
from isthmus.relay.presign import presign
from isthmus.relay.transfer_progress import publish_progress
from isthmus.relay.transfer_status import (
    PROCESSING_FAILURE,
    UNABLE_TO_PERFORM_SUBOPERATIONS,
    final_status,
    store_outcome,
)
from isthmus.relay.transfer_wire import (
    ABORT,
    ANNOUNCE,
    INSTANCE,
    MANIFEST,
    MANIFEST_KIND,
    STREAM,
    Announcement,
    Manifest,
    Progress,
    TransferError,
    consumer_name,
    ensure_stream,
    part_name,
)

log = logging.getLogger(__name__)
ABORTED, COMPLETE, FAILED = RelayTransfers.ABORTED, RelayTransfers.COMPLETE, RelayTransfers.FAILED

Deliver = Callable[[Announcement, bytes], int]
PREFETCH_BYTES = 64 * 1024 * 1024  # instances fetched ahead of delivery, at most
PRESIGN = 100  # instances whose GET URLs are asked for at once
REPORT_EVERY = 0.1  # seconds between a transfer's pending progress reports, at least
URLS_FRESH = 120.0  # seconds pre-signed URLs are counted on (they last 300)
UNKNOWN_SENDER_DELIVERIES = 12  # x 5 s: a minute for the directory to name a sender


class Unverified(ValueError):
    """An object that opened but is not what the announcement promised."""


@dataclass(frozen=True)
class Limits:
    """The bounds of a receiver's waits (seconds, attempts)."""

    batch: int = 16  # announcements fetched at once (prefetched while delivering)
    ack_wait: float = 60.0  # JetStream redelivers what is unacknowledged this long
    fetch_attempts: int = 3  # fetches of an object that fails verification
    unavailable_timeout: float = 60.0  # an object store outage before instances fail
    manifest_wait: float = 120.0  # for manifest entries not yet recorded
    poll: float = 1.0  # one pull request's wait


class TransferReceiver:
    """This site's receiver of transfers; `start()` it, `stop()` it."""

    def __init__(
        self,
        link: Link,
        identity: SiteIdentity,
        directory: Directory,
        objects: TransferObjects,
        *,
        state: RelayTransfers,
        deliver: Deliver,
        limits: Limits | None = None,
        on_end: Callable[[RelayTransfer, int], None] | None = None,
    ) -> None:
        """`on_end(transfer, final status)`: told when a transfer ends, before its final
        report goes out (its delivery released, the audit written)."""
        self.link, self.identity, self.directory = link, identity, directory
        self.objects, self.state, self.deliver = objects, state, deliver
        self.on_end = on_end
        self.limits = limits or Limits()
        self.site = identity.name
        self._stop = threading.Event()
        self._abandon = False
        self._thread: threading.Thread | None = None
        self._sub: Any = None
        self._pool = concurrent.futures.ThreadPoolExecutor(3, thread_name_prefix="relay-fetch")
        self._outages: dict[str, float] = {}  # transfer -> when its manifest first failed
        # transfer -> (instances below have GET URLs, until when they are fresh)
        self._signed: dict[str, tuple[int, float]] = {}
        # transfers begun and not ended → the instance count expected (index rows spared)
        self._running: dict[str, int | None] = {}
        self._reported: dict[str, float] = {}  # transfer → when its last pending report went
        self._revisit = threading.Event()  # a site changed: end transfers it no longer may
        directory.on_change(lambda _site: self._revisit.set())

    # ------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 10.0) -> TransferReceiver:
        """Create the stream and this site's durable consumer if missing, and pull."""
        config = ConsumerConfig(
            durable_name=consumer_name(self.site),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.limits.ack_wait,
            max_deliver=-1,
            max_ack_pending=1000,
        )

        async def subscribe() -> Any:
            await ensure_stream(self.link.js)
            return await self.link.js.pull_subscribe(
                f"relay.{self.site}.transfer.>",
                durable=consumer_name(self.site),
                stream=STREAM,
                config=config,
            )

        self._sub = self.link.call(subscribe(), timeout=timeout)
        self._thread = threading.Thread(
            target=self._run, name=f"relay-receiver-{self.site}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, *, abandon: bool = False, timeout: float = 30.0) -> None:
        """Stop after the message at hand.  The rest of a fetched batch is handed back
        for redelivery at once, or (`abandon`, as a killed process would) left to
        JetStream's ack wait."""
        self._abandon = abandon
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sub is not None:
            try:
                self.link.call(self._sub.unsubscribe(), timeout=5)
            except Exception:  # stopping: the durable consumer stays on the server anyway
                log.debug("pull subscription not closed", exc_info=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msgs = self.link.call(self._pull(), self.limits.poll + 10)
            except (LinkDown, NatsError, OSError) as exc:
                log.warning("relay receiver %s: NATS: %s", self.site, exc)
                self._stop.wait(1.0)
                continue
            try:
                self._end_revoked()
                self._batch(msgs)
            except Exception:  # never let one bad message stop the receiver
                log.exception("relay receiver %s: a batch failed", self.site)

    def _end_revoked(self) -> None:
        """End, as failed, every transfer in flight to this site whose source (or this
        site itself) was revoked (issue 11: "a site revoked mid-transfer → its
        transfers stop").  Its later messages are refused by `_open`; without this the
        transfer would wait for a manifest that can no longer come.  Only after the
        directory changed."""
        if not self._revisit.is_set():
            return
        self._revisit.clear()
        for transfer in self.state.in_flight():
            if transfer.destination != self.site:
                continue
            gone = self.directory.gone(self.site, transfer.source)
            if gone is not None:
                log.warning("transfer %s: site %s revoked", transfer.transfer_id, gone)
                self._end(
                    transfer,
                    ABORTED,
                    f"site {gone} revoked",
                    int(UNABLE_TO_PERFORM_SUBOPERATIONS),
                )

    async def _pull(self) -> list[Msg]:
        """One pull request: up to `batch` messages, none when `poll` s pass first."""
        try:
            return list(await self._sub.fetch(self.limits.batch, timeout=self.limits.poll))
        except NatsTimeout:
            return []

    # -------------------------------------------------------------- messages
    def _batch(self, msgs: list[Msg]) -> None:
        """Open every message, prefetch the objects of the announcements, then handle
        them one by one in order."""
        opened = [self._open(msg) for msg in msgs]
        wanted = {
            i: item[1]
            for i, item in enumerate(opened)
            if item is not None and item[0] == ANNOUNCE and not self._recorded(item[1])
        }
        self._presign(list(wanted.values()))
        fetches: dict[int, concurrent.futures.Future[bytes | str | None]] = {}
        held = 0  # bytes prefetched: a batch of huge instances is fetched in turn instead
        for i, announcement in wanted.items():
            held += announcement.size
            if held > PREFETCH_BYTES and fetches:
                break
            fetches[i] = self._pool.submit(self._fetch_verified, announcement)
        for i, msg in enumerate(msgs):
            if self._stop.is_set():
                self._hand_back(msgs[i:])
                return
            self._end_revoked()  # then a revoked site's transfer's messages are stragglers
            item = opened[i]
            if item is None:
                continue
            kind, payload = item
            if kind == ANNOUNCE:
                self._announcement(msg, payload, fetches.get(i), msgs[i:])
            elif kind == MANIFEST_KIND:
                self._manifest(msg, payload)
            else:
                self._abort(msg, payload)

    def _open(self, msg: Msg) -> tuple[str, Any] | None:
        """(kind, parsed body) of a message for this site; refused ones are terminated
        (unknown or revoked sender, bad signature, not for us, malformed)."""
        try:
            opened = self.identity.open(msg.data, self.directory.keys_of, max_age=None)
            kind = opened.header.get("kind")
            transfer = str(opened.header.get("transfer", ""))
            if transfer.split(".")[:2] != [opened.header["from"], self.site]:
                raise TransferError(f"transfer {transfer!r} is not from its sender to us")
            if kind == ANNOUNCE:
                announcement = Announcement.from_bytes(opened.body)
                if announcement.transfer_id != transfer or announcement.destination != self.site:
                    raise TransferError("announcement does not match its envelope")
                return kind, announcement
            if kind in (MANIFEST_KIND, ABORT):
                return kind, (transfer, _json_body(opened.body))
            raise TransferError(f"unknown kind {kind!r}")
        except (EnvelopeError, TransferError, KeyError, TypeError) as exc:
            if self._not_yet_known(msg):
                log.info("relay receiver %s: sender not in the directory yet: %s", self.site, exc)
                self._nak(msg, delay=5.0)
            else:
                log.warning("relay receiver %s: message refused: %s", self.site, exc)
                self._ack(msg, term=True)
            return None

    def _not_yet_known(self, msg: Msg) -> bool:
        """A message from a site the directory has no entry for (not a revoked or
        un-pinned one), seen fewer than UNKNOWN_SENDER_DELIVERIES times: a router
        that starts pulling before its directory is loaded must not drop transfers."""
        try:
            sender = str(peek_header(msg.data).get("from"))
        except EnvelopeError:
            return False
        deliveries = msg.metadata.num_delivered or 1
        return self.directory.site(sender) is None and deliveries < UNKNOWN_SENDER_DELIVERIES

    def _announcement(
        self,
        msg: Msg,
        announcement: Announcement,
        fetch: concurrent.futures.Future[bytes | str | None] | None,
        pending: list[Msg],
    ) -> None:
        tid = announcement.transfer_id
        if tid not in self._running:
            transfer = self._begin(tid, announcement.destination_aet, announcement.origin)
            if not transfer.finished:
                self._running[tid] = transfer.expected
        if tid not in self._running or self._recorded(announcement):
            self._ack(msg)  # delivered before a restart, or a finished transfer's straggler
            return
        if announcement.expected is not None and announcement.expected != self._running[tid]:
            self.state.expect(tid, announcement.expected)
            self._running[tid] = announcement.expected
        result = self._wait(fetch, pending, announcement)
        if result is None:  # stopping mid-fetch: nothing recorded, the message goes back
            self._hand_back([msg])
            return
        status: int | None
        reason: str | None
        if isinstance(result, str):
            status, outcome, reason = None, FAILED, result
        else:
            status, reason = self._deliver(announcement, result)
            outcome = store_outcome(status) if reason is None else FAILED
        self.state.record(
            RelayDelivery(
                announcement.transfer_id,
                announcement.seq,
                announcement.sop_instance_uid,
                announcement.sha256,
                announcement.size,
                outcome,
                status,
                reason,
            )
        )
        self._ack(msg)
        self._report(announcement.transfer_id)

    def _deliver(self, announcement: Announcement, data: bytes) -> tuple[int, str | None]:
        """The status of the C-STORE to the destination AE (its failure, if it raised)."""
        try:
            return int(self.deliver(announcement, data)), None
        except Exception as exc:  # the destination could not be reached or refused
            log.warning(
                "transfer %s: instance %d not delivered: %s",
                announcement.transfer_id,
                announcement.seq,
                exc,
            )
            return PROCESSING_FAILURE, f"delivery failed: {exc}"

    def _manifest(self, msg: Msg, payload: tuple[str, dict[str, Any]]) -> None:
        """Complete the transfer when every entry is recorded; else wait, bounded."""
        transfer_id, notice = payload
        transfer = self._begin(
            transfer_id, notice.get("destination_aet", ""), notice.get("origin", {})
        )
        if transfer.finished:
            self._ack(msg)
            return
        try:
            manifest = self._fetch_manifest(transfer_id, notice)
        except ObjectsUnavailable as exc:
            first = self._outages.setdefault(transfer_id, time.monotonic())
            if time.monotonic() - first < self.limits.unavailable_timeout:
                log.warning("transfer %s: manifest later: %s", transfer_id, exc)
                self._nak(msg, delay=2.0)  # an outage of the store: try again later
                return
            self._end(transfer, FAILED, f"manifest unreadable: {exc}", source_status=0)
            self._ack(msg)
            return
        except (MissingObject, Unverified, EnvelopeError) as exc:
            self._end(transfer, FAILED, f"manifest unreadable: {exc}", source_status=0)
            self._ack(msg)
            return
        seen = self.state.manifest_seen(
            transfer_id,
            count=len(manifest.entries),
            failed_at_source=manifest.failed_at_source,
            source_status=manifest.source_status,
        )
        recorded = {d.sop_instance_uid for d in self.state.deliveries(transfer_id)}
        missing = [e for e in manifest.entries if e.sop_instance_uid not in recorded]
        waited = (datetime.now(UTC) - seen).total_seconds()
        if missing and waited < self.limits.manifest_wait:
            self._nak(msg, delay=min(2.0, self.limits.manifest_wait - waited))
            return
        for entry in missing:
            self.state.record(
                RelayDelivery(
                    transfer_id,
                    entry.seq,
                    entry.sop_instance_uid,
                    entry.sha256,
                    entry.size,
                    FAILED,
                    None,
                    "announced in the manifest, never arrived",
                )
            )
        transfer = self.state.get(transfer_id) or transfer
        outcome = COMPLETE if transfer.failed == 0 else FAILED
        self._end(transfer, outcome, None, manifest.source_status, manifest.failed_uids)
        self._ack(msg)

    def _abort(self, msg: Msg, payload: tuple[str, dict[str, Any]]) -> None:
        transfer_id, body = payload
        transfer = self._begin(transfer_id, body.get("destination_aet", ""), body.get("origin", {}))
        if not transfer.finished:
            reason = f"aborted by the source: {body.get('reason', '')}"
            self._end(transfer, ABORTED, reason, int(body.get("status", 0xFE00)))
        self._ack(msg)

    def _end(
        self,
        transfer: RelayTransfer,
        outcome: str,
        reason: str | None,
        source_status: int,
        source_failed_uids: tuple[str, ...] = (),
    ) -> None:
        """Record the end, send the final report, delete the transfer's objects."""
        transfer = self.state.get(transfer.transfer_id) or transfer
        failed = transfer.failed + transfer.failed_at_source
        status = final_status(
            transfer.completed, failed, transfer.warning, source_status=source_status
        )
        if outcome == FAILED and reason is not None and status == 0:
            status = int(UNABLE_TO_PERFORM_SUBOPERATIONS)  # an unreadable manifest never succeeds
        self.state.finish(transfer.transfer_id, outcome, status, reason)
        self._signed.pop(transfer.transfer_id, None)
        self._running.pop(transfer.transfer_id, None)
        self._reported.pop(transfer.transfer_id, None)
        if self.on_end is not None:  # its delivery released before the caller hears
            try:
                self.on_end(transfer, status)
            except Exception as exc:  # closing a delivery, the audit: the report matters more
                log.warning("transfer %s: end not told: %s", transfer.transfer_id, exc)
        uids = [
            d.sop_instance_uid
            for d in self.state.deliveries(transfer.transfer_id)
            if d.status == FAILED
        ]
        report = Progress(
            transfer.transfer_id,
            transfer.completed,
            failed,
            transfer.warning,
            0,
            final=True,
            status=status,
            failed_uids=tuple(uids) + tuple(source_failed_uids),
            reason=reason,
        )
        try:
            self.objects.delete_transfer(transfer.transfer_id)
        except Exception as exc:  # left for the bucket's expiry; the report matters more
            log.warning("transfer %s: objects not deleted: %s", transfer.transfer_id, exc)
        publish_progress(self.link, self.identity, self.directory, transfer.origin, report)
        log.info(
            "transfer %s %s: %d delivered, %d warning, %d failed (status 0x%04X)",
            transfer.transfer_id,
            outcome,
            transfer.completed,
            transfer.warning,
            failed,
            status,
        )

    def _report(self, transfer_id: str) -> None:
        """A pending report after an instance: counts so far, remaining if known.  At
        most one per REPORT_EVERY seconds a transfer (PS3.4 C.4.2.3.1: pending
        responses are optional; each costs a query, an envelope and, at the caller, a
        C-MOVE-RSP); the final report always goes."""
        now = time.monotonic()
        if now - self._reported.get(transfer_id, 0.0) < REPORT_EVERY:
            return
        self._reported[transfer_id] = now
        t = self.state.get(transfer_id)
        if t is None:
            return
        total = t.manifest_count if t.manifest_count is not None else t.expected
        done = t.completed + t.failed + t.warning
        remaining = None if total is None else max(total - done, 0)
        report = Progress(transfer_id, t.completed, t.failed, t.warning, remaining)
        publish_progress(self.link, self.identity, self.directory, t.origin, report)

    # --------------------------------------------------------------- objects
    def _presign(self, announcements: list[Announcement]) -> None:
        """GET URLs ahead: objects are named by position, so the next PRESIGN instances'
        (and the manifest's) are asked for in one bridge call, as the source does for
        its PUTs; an instance in several parts gets its own URLs when it comes."""
        wanted: list[tuple[str, list[str]]] = []
        for a in announcements:
            if a.parts > 1:
                wanted.append((a.transfer_id, a.objects()))
            elif a.seq >= self._signed.get(a.transfer_id, (0, 0.0))[0] or (
                time.monotonic() > self._signed[a.transfer_id][1]
            ):
                self._signed[a.transfer_id] = (a.seq + PRESIGN, time.monotonic() + URLS_FRESH)
                names = [part_name(n, 0) for n in range(a.seq, a.seq + PRESIGN)]
                wanted.append((a.transfer_id, names + [MANIFEST]))
        presign(self.objects, "GET", wanted)

    def _fetch_verified(self, announcement: Announcement) -> bytes | str | None:
        """The instance's bytes, verified; or why not (a missing object, one that
        fails verification `fetch_attempts` times, or an outage longer than
        `unavailable_timeout`); None when the receiver stops meanwhile."""
        attempts, reason = 0, ""
        deadline = time.monotonic() + self.limits.unavailable_timeout
        while True:
            try:
                return self._fetch(announcement)
            except MissingObject as exc:
                return f"missing object: {exc}"
            except (Unverified, EnvelopeError) as exc:
                attempts, reason = attempts + 1, f"object failed verification: {exc}"
                log.warning("transfer %s: %s", announcement.transfer_id, reason)
                if attempts >= self.limits.fetch_attempts:
                    return reason
                delay = 0.2 * attempts
            except ObjectsUnavailable as exc:
                reason = f"object store unavailable: {exc}"
                if time.monotonic() > deadline:
                    return reason
                delay = 1.0
            if self._stop.wait(delay):
                return None

    def _fetch(self, announcement: Announcement) -> bytes:
        pieces = []
        for part, name in enumerate(announcement.objects()):
            raw = self.objects.get(announcement.transfer_id, name)
            opened = self.identity.open(raw, self.directory.keys_of, max_age=None)
            expected = {
                "kind": INSTANCE,
                "transfer": announcement.transfer_id,
                "seq": announcement.seq,
                "part": part,
                "from": announcement.source,
            }
            if any(opened.header.get(k) != v for k, v in expected.items()):
                raise Unverified(f"object {name} is not part {part} of this instance")
            size = announcement.part_size(part)
            pieces.append(
                decompress(opened.body, size) if opened.header.get("zstd", True) else opened.body
            )
        data = b"".join(pieces)
        if len(data) != announcement.size:
            raise Unverified(f"{len(data)} bytes, the announcement says {announcement.size}")
        if hashlib.sha256(data).hexdigest() != announcement.sha256:
            raise Unverified("SHA-256 differs from the announcement's")
        return data

    def _fetch_manifest(self, transfer_id: str, notice: dict[str, Any]) -> Manifest:
        last: Exception = Unverified("no attempt")
        for attempt in range(self.limits.fetch_attempts):
            try:
                raw = self.objects.get(transfer_id, MANIFEST)
                opened = self.identity.open(raw, self.directory.keys_of, max_age=None)
                if (
                    opened.header.get("kind") != MANIFEST_KIND
                    or opened.header.get("transfer") != transfer_id
                ):
                    raise Unverified("the manifest object is not this transfer's")
                body = decompress(opened.body, int(notice["size"]))
                if hashlib.sha256(body).hexdigest() != notice["sha256"]:
                    raise Unverified("manifest SHA-256 differs from its notice")
                return Manifest.from_bytes(body)
            except (
                Unverified,
                EnvelopeError,
                TransferError,
                ObjectsUnavailable,
            ) as exc:
                last = exc
                self._stop.wait(0.5 * (attempt + 1))
            except (KeyError, TypeError, ValueError) as exc:  # a notice without size/hash
                raise Unverified(f"manifest notice: {exc}") from None
        raise last

    # --------------------------------------------------------------- helpers
    def _begin(self, transfer_id: str, aet: str, origin: dict[str, Any]) -> RelayTransfer:
        source, destination = transfer_id.split(".")[:2]
        return self.state.begin(
            transfer_id, source=source, destination=destination, destination_aet=aet, origin=origin
        )

    def _recorded(self, announcement: Announcement) -> bool:
        found = self.state.delivery(announcement.transfer_id, announcement.sop_instance_uid)
        return found is not None

    def _wait(
        self,
        fetch: concurrent.futures.Future[bytes | str | None] | None,
        pending: list[Msg],
        announcement: Announcement,
    ) -> bytes | str | None:
        """The prefetch's result (or a fetch now, when there was none), telling
        JetStream meanwhile that the batch is in progress."""
        while fetch is not None:
            try:
                return fetch.result(timeout=self.limits.ack_wait / 3)
            except concurrent.futures.TimeoutError:
                for msg in pending:
                    self._call(msg.in_progress())
            except concurrent.futures.CancelledError:
                break
        return self._fetch_verified(announcement)

    def _hand_back(self, msgs: list[Msg]) -> None:
        if not self._abandon:
            for msg in msgs:
                self._nak(msg)

    def _ack(self, msg: Msg, *, term: bool = False) -> None:
        self._call(msg.term() if term else msg.ack())

    def _nak(self, msg: Msg, delay: float | None = None) -> None:
        self._call(msg.nak(delay=delay))

    def _call(self, coroutine: Any) -> None:
        """Acks and naks are best effort: one lost is redelivered and skipped."""
        try:
            self.link.call(coroutine, timeout=10)
        except Exception as exc:
            log.warning("relay receiver %s: ack not sent: %s", self.site, exc)


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        raise TransferError("a body that is not JSON") from None
    if not isinstance(doc, dict):
        raise TransferError("a body that is not a JSON object")
    return doc
