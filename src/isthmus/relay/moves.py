"""C-MOVE across sites to a destination that is not at the far site (docs/relay.md,
"Transfers"): at the caller's own site, or at a third one.

The caller's router (`TransferMoves`, the association relay's `MoveElsewhere`) does not
relay such a C-MOVE to the far device: it asks the far site's router, on
`relay.<far>.move`, to send the matching instances as a transfer to the destination's
site, and listens for that site's progress reports, which it turns into pending C-MOVE
responses with real sub-operation counts (PS3.4 C.4.2.1.5) and, at the end, the final
status with the Failed SOP Instance UID List.

The far router (`MoveSource`) checks again that the calling site may use the export for
C-MOVE, retrieves the instances from its device with C-GET (relay/collect.py), puts each
into the transfer as it arrives (relay/transfer_send.py), and ends the transfer with the
device's final status and counts.  The destination's router delivers (relay/site.py).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from isthmus.config import Peer
from isthmus.dicom.status import (
    CANCEL,
    NOT_AUTHORIZED,
    OUT_OF_RESOURCES_SUB_OPERATIONS,
    PENDING,
    PROCESSING_FAILURE,
    UNABLE_TO_PROCESS,
)
from isthmus.dimse import messages as msg
from isthmus.relay import collect_parallel
from isthmus.relay.collect import GET_MODEL_OF_MOVE
from isthmus.relay.crypto import EnvelopeError, SiteIdentity
from isthmus.relay.directory import Directory
from isthmus.relay.link import Link, LinkDown
from isthmus.relay.objects import TransferObjects
from isthmus.relay.resume import left_sending, why_not
from isthmus.relay.tally import TransferTally
from isthmus.relay.transfer import (
    ProgressListener,
    TransferError,
    TransferSender,
    progress_subject,
)

if TYPE_CHECKING:
    from isthmus.archive import Archive, RelayTransfer
    from isthmus.relay.caller import CallerSession
    from isthmus.relay.wire import Message

log = logging.getLogger(__name__)
MOVE = "move"  # the envelope kind of a request, and of its answer


def move_subject(site: str) -> str:
    return f"relay.{site}.move"


class TransferMoves:
    """The calling site's side: claims C-MOVEs to destinations outside the far site."""

    def __init__(
        self,
        link: Link,
        identity: SiteIdentity,
        directory: Directory,
        local: Callable[[str], Peer | None],
        timeout: float = 30.0,
    ) -> None:
        """`local(aet)`: the device of this site with that AE title (exports, peers)."""
        self.link, self.identity, self.directory = link, identity, directory
        self.local = local
        self.timeout = timeout

    def destination_site(self, aet: str) -> str | None:
        if self.local(aet) is not None:
            return self.directory.own_site
        export = self.directory.export(aet)
        return export.site if export is not None else None

    def claims(self, destination: str, far_site: str) -> bool:
        site = self.destination_site(destination)
        return site is not None and site != far_site

    def move(self, session: CallerSession, message: Message, cancelled: threading.Event) -> None:
        command = msg.decode_command(message.command)
        destination = msg.text(command, msg.MOVE_DESTINATION)
        site = self.destination_site(destination)
        assert site is not None  # claims() said so
        own = self.directory.own_site
        subject = progress_subject(own, secrets.token_hex(8))
        syntax = session.syntaxes.get(message.context_id, "1.2.840.10008.1.2")
        request = {
            "called_aet": session.called_aet,
            "calling_aet": session.calling_aet,
            "model": msg.sop_class_of(command),
            "syntax": syntax,
            "identifier": base64.b64encode(bytes(message.dataset or b"")).decode(),
            "destination_site": site,
            "destination_aet": destination,
            "origin": {"site": own, "subject": subject},
        }
        try:
            with ProgressListener(
                self.link, self.identity, self.directory, subject, from_site=site
            ) as listener:
                refusal = self._ask(session.peer_site, request)
                if refusal is not None:
                    session.respond(message, refusal[0], refusal[1])
                    return
                self._relay_progress(session, message, listener, syntax, cancelled, request)
        except (LinkDown, TransferError, EnvelopeError) as exc:
            log.warning("relay C-MOVE to %s failed: %s", destination, exc)
            session.respond(message, PROCESSING_FAILURE, f"relay: {exc}"[:64])

    def _ask(self, far_site: str, request: dict[str, Any]) -> tuple[int, str] | None:
        """Send the request to the far router; None when it took it, else the refusal."""
        keys = self.directory.keys_of(far_site)
        if keys is None:
            return NOT_AUTHORIZED, f"site {far_site} is not trusted"
        sealed = self.identity.seal(far_site, keys, {"kind": MOVE}, json.dumps(request).encode())
        reply = self.link.call(
            self.link.nc.request(move_subject(far_site), sealed, timeout=self.timeout),
            timeout=self.timeout + 2,
        )
        answer = json.loads(self.identity.open(reply.data, self.directory.keys_of).body)
        if answer.get("status") is not None:
            return int(answer["status"]), str(answer.get("why", ""))
        return None

    def _relay_progress(
        self,
        session: CallerSession,
        message: Message,
        listener: ProgressListener,
        syntax: str,
        cancelled: threading.Event,
        request: dict[str, Any],
    ) -> None:
        """Pending C-MOVE-RSPs while the destination reports, then the final one.

        On a C-CANCEL the far router is told to stop (it aborts its C-GET and the
        transfer); the destination then reports, as final, what it delivered with
        status Cancel (PS3.4 C.4.2.3.1).  Should that report not come within
        `timeout`, the caller gets Cancel with the last counts heard."""
        counts: dict[int, int | str | bytes] = {}
        quiet_until = time.monotonic() + self.timeout * 4
        told = False
        while True:
            if cancelled.is_set() and not told:
                told = listener.cancelled = True  # a source resuming it hears so too
                self._cancel(session.peer_site, request)
                quiet_until = time.monotonic() + self.timeout
            try:
                report = listener.next(min(0.2, max(quiet_until - time.monotonic(), 0)))
            except TimeoutError:
                gone = self.directory.gone(self.directory.own_site, request["destination_site"])
                if gone is not None:  # no report can come from it, or reach us, any more
                    session.respond(
                        message, UNABLE_TO_PROCESS, f"relay: site {gone} revoked", extra=counts
                    )
                    return
                if time.monotonic() < quiet_until:
                    continue
                if told:
                    session.respond(message, CANCEL, "relay: cancelled", extra=counts)
                else:
                    session.respond(
                        message, UNABLE_TO_PROCESS, "relay: the destination fell silent"
                    )
                return
            quiet_until = time.monotonic() + (self.timeout if told else self.timeout * 4)
            counts = {
                msg.COMPLETED: report.completed,
                msg.FAILED: report.failed,
                msg.WARNING: report.warning,
            }
            if not report.final:
                if report.remaining is not None:
                    counts[msg.REMAINING] = report.remaining
                if not session.done.is_set():
                    session.respond(message, PENDING, extra=counts)
                continue
            dataset = None
            if report.failed_uids:
                failed = Dataset()
                failed.FailedSOPInstanceUIDList = list(report.failed_uids)
                dataset = msg.encode_identifier(failed, syntax)
            status = int(report.status if report.status is not None else UNABLE_TO_PROCESS)
            if not session.done.is_set():
                session.respond(message, status, report.reason, extra=counts, dataset=dataset)
            return

    def _cancel(self, far_site: str, request: dict[str, Any]) -> None:
        """Ask the far router to stop the transfer serving `request` (best effort: the
        wait that follows is bounded either way)."""
        keys = self.directory.keys_of(far_site)
        if keys is None:
            return
        body = json.dumps({"cancel": request["origin"]["subject"]}).encode()
        sealed = self.identity.seal(far_site, keys, {"kind": MOVE}, body)
        try:
            self.link.call(self.link.nc.publish(move_subject(far_site), sealed), timeout=5)
        except Exception as exc:  # NATS down: the transfer ends by itself
            log.warning("relay: C-CANCEL not sent to site %s: %s", far_site, exc)


class MoveSource:
    """The far site's side: answers `relay.<own>.move` for this site's exports."""

    def __init__(
        self,
        link: Link,
        identity: SiteIdentity,
        directory: Directory,
        objects: TransferObjects,
        exports: dict[str, tuple[str, int]],
        archive: Archive,
        timeout: float = 30.0,
    ) -> None:
        self.link, self.identity, self.directory = link, identity, directory
        self.objects, self.exports, self.archive = objects, exports, archive
        self.timeout = timeout
        self._subscription: Any = None
        # (calling site, progress subject) of each transfer running → (the event that
        # cancels it, its destination site)
        self._running: dict[tuple[str, str], tuple[threading.Event, str]] = {}
        self._lock = threading.Lock()
        directory.on_change(self._site_changed)

    def _site_changed(self, _site: str) -> None:
        """Stop the transfers that a revocation concerns: of the calling site, to the
        destination site, or all of them when this site is revoked."""
        with self._lock:
            running = list(self._running.items())
        own = self.identity.name
        for (caller, _subject), (cancelled, destination) in running:
            if self.directory.gone(own, caller, destination) is not None:
                cancelled.set()

    def start(self) -> None:
        """Answer move requests; take up the transfers a process before this one left
        SENDING (relay/resume.py), each on a thread of its own."""
        left = left_sending(self.archive.relay_transfers, self.identity.name)
        self._subscription = self.link.call(
            self.link.nc.subscribe(move_subject(self.identity.name), cb=self._on_request),
            timeout=self.timeout,
        )
        for transfer in left:
            threading.Thread(
                target=self._resume, args=(transfer,), name="relay-move-resume", daemon=True
            ).start()

    def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                self.link.call(subscription.unsubscribe(), timeout=5)
            except Exception:  # NATS gone: the subscription went with it
                log.debug("relay: unsubscribe failed", exc_info=True)

    async def _on_request(self, nats_msg: Any) -> None:
        try:
            opened = self.identity.open(nats_msg.data, self.directory.keys_of)
            request = json.loads(opened.body)
        except (EnvelopeError, ValueError) as exc:
            log.warning("relay: move request dropped: %s", exc)
            return
        caller = str(opened.header["from"])
        if "cancel" in request:
            self._cancel(caller, str(request["cancel"]))
            return
        refusal = self._refusal(caller, request)
        answer: dict[str, Any] = {}
        if refusal is not None:
            answer = {"status": refusal[0], "why": refusal[1]}
        else:
            key = (caller, str(request["origin"]["subject"]))
            cancelled = threading.Event()
            with self._lock:  # before the caller hears the answer: it may cancel at once
                self._running[key] = (cancelled, str(request["destination_site"]))
            threading.Thread(
                target=self._run,
                args=(key, request, cancelled),
                name="relay-move-source",
                daemon=True,
            ).start()
        keys = self.directory.keys_of(caller)
        if keys is not None and nats_msg.reply:
            sealed = self.identity.seal(caller, keys, {"kind": MOVE}, json.dumps(answer).encode())
            await self.link.nc.publish(nats_msg.reply, sealed)

    def _cancel(self, caller: str, subject: str) -> None:
        """A C-CANCEL from the caller's router: stop the C-GET serving its C-MOVE (only
        the calling site's own transfers: the key holds its name)."""
        with self._lock:
            found = self._running.get((caller, subject))
        if found is None:
            log.info("relay: C-CANCEL from site %s for no running transfer", caller)
            return
        found[0].set()

    def _stopped(self, sender: TransferSender, request: dict[str, Any]) -> None:
        """Abort a transfer whose C-GET was stopped: by a C-CANCEL (status Cancel), or
        because a party of it was revoked (a failure)."""
        gone = self.directory.gone(
            self.identity.name, request["origin"]["site"], request["destination_site"]
        )
        why = f"site {gone} revoked" if gone else "C-CANCEL"
        _abort(sender, why, int(UNABLE_TO_PROCESS if gone else CANCEL))

    def _resume(self, transfer: RelayTransfer) -> None:
        """Take up a transfer a process before this one left SENDING, where it was; or
        abort it, saying why not (relay/resume.py): never left SENDING."""
        state, tid = self.archive.relay_transfers, transfer.transfer_id
        request = state.request_of(tid)
        key = (str(transfer.origin.get("site", "")), str(transfer.origin.get("subject", "")))
        cancelled = threading.Event()
        with self._lock:  # before the probe: a C-CANCEL from now on stops it
            self._running[key] = (cancelled, transfer.destination)
        try:
            refusal = why_not(transfer, request, self.link)
            if refusal is None and request is not None:
                denied = self._refusal(key[0], request)
                refusal = None if denied is None else (f"not resumed: {denied[1]}", denied[0])
            try:
                sender = self._sender(
                    transfer.destination, transfer.destination_aet, transfer.origin, resume=tid
                )
            except Exception as exc:  # the destination revoked, NATS down: it ends here
                why = refusal[0] if refusal else "not resumed"
                log.warning("relay: transfer %s %s: %s", tid, why, exc)
                state.finish(tid, state.ABORTED, int(UNABLE_TO_PROCESS), f"{why}: {exc}")
                return
            if refusal is not None or request is None or cancelled.is_set():
                why, status = refusal or ("C-CANCEL", int(CANCEL))
                _abort(sender, why, status)
                return
            log.info("relay: transfer %s resumed (%d instances sent before)", tid, sender.sent)
            self._transfer(sender, request, cancelled, resumed=True)
        finally:
            with self._lock:
                self._running.pop(key, None)

    def _sender(
        self,
        destination_site: str,
        destination_aet: str,
        origin: dict[str, Any],
        *,
        request: dict[str, Any] | None = None,
        resume: str | None = None,
    ) -> TransferSender:
        """A new transfer serving `request` (recorded with it), or the one `resume`."""
        return TransferSender(
            self.link,
            self.identity,
            self.directory,
            self.objects,
            destination_site=destination_site,
            destination_aet=destination_aet,
            origin=origin,
            timeout=self.timeout,
            state=self.archive.relay_transfers,
            transfer_id=resume,
            request=request,
        )

    def _refusal(self, caller: str, request: dict[str, Any]) -> tuple[int, str] | None:
        """The export must be ours, exported to the caller for C-MOVE (checked again
        here: a router cannot trust another site's), and the destination's site known."""
        aet = str(request.get("called_aet", ""))
        own = self.directory.site(self.identity.name)
        export = next((e for e in own.exports if e.aet == aet), None) if own else None
        if aet not in self.exports or export is None or not export.permits(caller, "move"):
            return NOT_AUTHORIZED, f"{aet} is not exported to site {caller} for C-MOVE"
        if request.get("model") not in GET_MODEL_OF_MOVE:
            return UNABLE_TO_PROCESS, "unknown C-MOVE information model"
        if self.directory.keys_of(str(request.get("destination_site"))) is None:
            return OUT_OF_RESOURCES_SUB_OPERATIONS, "destination site unknown"
        return None

    def _run(
        self, key: tuple[str, str], request: dict[str, Any], cancelled: threading.Event
    ) -> None:
        """Retrieve from the device into a transfer, and end it with the device's status
        (or abort it, status Cancel, when the caller cancels)."""
        try:
            sender = self._sender(
                request["destination_site"],
                request["destination_aet"],
                request["origin"],
                request=request,
            )
        except (TransferError, LinkDown) as exc:
            log.warning("relay: cannot begin a transfer: %s", exc)
            return
        try:
            self._transfer(sender, request, cancelled)
        finally:
            with self._lock:
                self._running.pop(key, None)

    def _transfer(
        self,
        sender: TransferSender,
        request: dict[str, Any],
        cancelled: threading.Event,
        *,
        resumed: bool = False,
    ) -> None:
        """The C-GET from the device into `sender`, then its manifest; a transfer
        `resumed` skips what it sent before, and is aborted if the device fails it."""
        host, port = self.exports[request["called_aet"]]
        device = Peer(request["called_aet"], host, port)
        identifier = msg.decode_identifier(
            base64.b64decode(request["identifier"]), request["syntax"]
        )

        def expect(count: int) -> None:
            sender.expected = count

        tally = TransferTally()

        def add(sop_class: str, sop_instance: str, syntax: str, data: bytes) -> None:
            if resumed and sender.already_sent(sop_instance):
                return  # sent before the restart (one C-GET of everything brings it again)
            sender.add(sop_class, sop_instance, syntax, data)
            tally.count(sop_class, syntax, data)

        status, failed, failed_uids = int(UNABLE_TO_PROCESS), 0, []
        try:
            report = collect_parallel.collect(
                device,
                request["calling_aet"],
                identifier,
                GET_MODEL_OF_MOVE[request["model"]],
                add,
                expect,
                cancelled,
                skip=sender.already_sent if resumed else None,
            )
            status, failed, failed_uids = report.status, report.failed, report.failed_uids
        except Exception as exc:  # the device refused or vanished: an honest end
            if cancelled.is_set():
                self._stopped(sender, request)
                return
            log.warning("relay: C-GET from %s failed: %s", device, exc)
            if resumed:
                why = f"resumed, but C-GET from {device.aet} failed: {exc}"
                _abort(sender, why, int(UNABLE_TO_PROCESS))
                return
        try:
            sender.finish(status, failed=failed, failed_uids=failed_uids)
        except Exception as exc:  # NATS or S3 gone: the destination's wait is bounded
            log.warning("relay: transfer %s not finished: %s", sender.transfer_id, exc)
        tally.tell(
            self.archive.activity,
            direction="sent",
            transfer_id=sender.transfer_id,
            peer_site=request["destination_site"],
            local_aet=request["called_aet"],
            status=status,
        )


def _abort(sender: TransferSender, why: str, status: int) -> None:
    """End a transfer early, with `why` for the destination (and the record)."""
    log.info("relay: transfer %s stopped: %s", sender.transfer_id, why)
    try:
        sender.abort(why, status=status)
    except Exception as exc:  # the destination revoked, NATS down: nothing to tell
        log.warning("relay: transfer %s: abort not sent: %s", sender.transfer_id, exc)
