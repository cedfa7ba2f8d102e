"""The calling site's side of the association relay: the route of every remote AE title.

A workstation calls a remote AE title on this site's DICOM port; the node's router
(node/router.py) hands the connection here with the parsed A-ASSOCIATE-RQ.  The
routing table is the access-control list (seed 002): the association is refused with
A-ASSOCIATE-RJ (PS3.8 9.3.4) before anything leaves the site when the called AE title
is unknown, its site revoked, or it is not exported to this site for any service the
proposed contexts ask for; a context for a service not exported is rejected on its
own (PS3.8 9.3.3.2, result 1 "user-rejection").  Otherwise the far site's router is
asked to open the association against the real device and its A-ASSOCIATE-AC, or
A-ASSOCIATE-RJ, is the caller's answer; then the messages are relayed (session.py).
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from isthmus import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from isthmus.dicom.status import MOVE_DESTINATION_UNKNOWN, NOT_AUTHORIZED
from isthmus.dicom.ul import items, pdata, pdu, transport
from isthmus.dicom.ul.items import (
    PresentationContextAC,
    PresentationContextRQ,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from isthmus.dimse import messages as msg
from isthmus.node.router import send_last_pdu
from isthmus.relay import wire
from isthmus.relay.crypto import EnvelopeError, SiteKeys
from isthmus.relay.directory import Export
from isthmus.relay.pipe import MAX_PDU, Ended, Pipe
from isthmus.relay.services import BY_COMMAND, permitted_contexts, service_of
from isthmus.relay.session import Session
from isthmus.relay.wire import Message, OpenAnswer, OpenRequest

if TYPE_CHECKING:
    from isthmus.relay.door import RelayDoor

log = logging.getLogger(__name__)

# A-ASSOCIATE-RJ (PS3.8 9.3.4 table 9-21) of the relay's own refusals.
UNKNOWN_AE = (pdu.RESULT_PERMANENT, pdu.SOURCE_SERVICE_USER, pdu.REASON_CALLED_AE_NOT_RECOGNIZED)
NOT_PERMITTED = (pdu.RESULT_PERMANENT, pdu.SOURCE_SERVICE_USER, pdu.REASON_NO_REASON)
LOCAL_REFUSAL = (
    pdu.RESULT_PERMANENT,
    pdu.SOURCE_SERVICE_USER,
    pdu.REASON_CALLING_AE_NOT_RECOGNIZED,
)
# The far site, NATS or the far device cannot be reached now: "temporary congestion".
UNREACHABLE = (pdu.RESULT_TRANSIENT, pdu.SOURCE_SERVICE_PROVIDER_PRESENTATION, 1)


@dataclass(frozen=True)
class Refusal:
    """Why an association is refused here, and the A-ASSOCIATE-RJ that says so."""

    why: str
    rj: tuple[int, int, int]


@dataclass(frozen=True)
class Route:
    """Where an accepted association goes: the export, its site's keys, the contexts."""

    export: Export
    keys: SiteKeys
    contexts: tuple[PresentationContextRQ, ...]


def _unusable(rq: pdu.AAssociateRQ) -> Refusal | None:
    """What the acceptor refuses too (dimse/acceptor.py): another protocol version or
    application context (PS3.8 9.3.2, 9.3.4), a Maximum Length no P-DATA fits (D.1)."""
    if not rq.protocol_version & 1:
        return Refusal(
            "protocol version not supported",
            (
                pdu.RESULT_PERMANENT,
                pdu.SOURCE_SERVICE_PROVIDER_ACSE,
                pdu.REASON_PROTOCOL_VERSION_NOT_SUPPORTED,
            ),
        )
    if rq.application_context != items.APPLICATION_CONTEXT:
        return Refusal(
            "application context not supported",
            (
                pdu.RESULT_PERMANENT,
                pdu.SOURCE_SERVICE_USER,
                pdu.REASON_APPLICATION_CONTEXT_NOT_SUPPORTED,
            ),
        )
    if 0 < rq.max_length < pdata.MIN_PEER_MAX_LENGTH:
        return Refusal(f"maximum PDU length {rq.max_length}", NOT_PERMITTED)
    return None


class MoveElsewhere(Protocol):
    """Carries out a C-MOVE whose destination is not at the far site (the transfer
    work, relay/transfer.py): at this site or at a third one (docs/relay.md,
    "Transfers").  Passed to RelayRouter as `moves`."""

    def claims(self, destination: str, far_site: str) -> bool:
        """Is `destination` (a Move Destination AE title) one this transfer work serves,
        when the C-MOVE goes to `far_site`?"""
        ...

    def move(self, session: CallerSession, message: Message, cancelled: threading.Event) -> None:
        """Run the C-MOVE `message` (command set, identifier) as a transfer from the
        session's far site (`session.peer_site`, AE `session.called_aet`); answer the
        caller with `session.respond` (pendings with counts, then the final status).
        Called in a thread of its own, so the association's reader goes on reading:
        `cancelled` is set when the caller sends a C-CANCEL-RQ for it (PS3.7 9.3.2.3,
        PS3.4 C.4.2.3.1), or when the association ends."""
        ...


class CallerSide:
    """The route handler of remote AE titles (`RouteHandler` of node/router.py)."""

    def __init__(self, router: RelayDoor) -> None:
        self.router = router

    def __call__(self, sock: socket.socket, address: Any, rq: pdu.AAssociateRQ) -> None:
        host = address[0] if isinstance(address, tuple) else str(address)
        router = self.router
        try:
            sock.settimeout(router.timeout)
            # The router peeked at the request and parsed it; take its bytes off the socket.
            transport.read_pdu(sock, pdu.MAX_ASSOCIATE_RQ, router.timeout)
            self._serve(sock, host, rq)
        except (OSError, EOFError, pdu.PDUError) as exc:
            log.info("relay association from %r ended: %s", rq.calling_aet, exc)
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _serve(self, sock: socket.socket, host: str, rq: pdu.AAssociateRQ) -> None:
        route = self.route(rq, host)
        if isinstance(route, Refusal):
            self._refuse(sock, host, rq, route)
            return
        router = self.router
        site = route.export.site
        session = CallerSession(self, route, rq, secrets.token_hex(8))
        session.subscribe()
        try:
            answer = self._open(session, route, rq)
        except Exception:
            session.finish()
            raise
        if isinstance(answer, Refusal):
            session.finish()
            self._refuse(sock, host, rq, answer)
            return
        session.aid = answer.aid
        session.outbound = f"relay.{site}.a.{answer.aid}"
        ac = self._associate_ac(rq, route, answer)
        pipe = Pipe(sock, rq.max_length, router.timeout)
        pipe.accepted = {cx.context_id for cx in ac.contexts if cx.result == items.ACCEPTANCE}
        session.syntaxes = {
            cx.context_id: cx.transfer_syntax
            for cx in ac.contexts
            if cx.result == items.ACCEPTANCE and cx.transfer_syntax
        }
        try:
            sock.sendall(ac.encode())
        except OSError:  # the caller left while the far site opened: close it there
            session.end(wire.ABORT)
            raise
        sock.settimeout(router.timeout)  # a read times out: idle? (Session._idle)
        session.host = host
        router.opened(session, rq.calling_aet, rq.called_aet, host, f"{route.export.site} (relay)")
        session.run(pipe)

    # -- the access-control list ------------------------------------------------
    def route(self, rq: pdu.AAssociateRQ, host: str | None) -> Route | Refusal:
        """Where `rq` from `host` may go, or why not (nothing has left the site yet):
        the export's rules, then this node's own access rules for the calling AE."""
        unusable = _unusable(rq)
        if unusable is not None:
            return unusable
        directory = self.router.directory
        export = directory.export(rq.called_aet)
        if export is None:
            return Refusal(
                f"no site exports {rq.called_aet!r} (or its site is revoked)", UNKNOWN_AE
            )
        keys = directory.keys_of(export.site)
        if keys is None:
            return Refusal(
                f"site {export.site!r} is revoked or its keys are not trusted", UNKNOWN_AE
            )
        own = directory.own_site
        if not any(export.permits(own, s) for s in export.services):
            return Refusal(f"{rq.called_aet!r} is not exported to site {own!r}", UNKNOWN_AE)
        contexts = permitted_contexts(rq.contexts, rq.roles, lambda s: export.permits(own, s))
        if not contexts:
            asked = sorted({service_of(cx.abstract_syntax) or "other" for cx in rq.contexts})
            return Refusal(
                f"{rq.called_aet!r} is not exported to site {own!r} for {', '.join(asked)}",
                NOT_PERMITTED,
            )
        allowed = self.router.allowed
        if allowed is not None:
            contexts = permitted_contexts(
                contexts, rq.roles, lambda s: allowed(s, rq.calling_aet, host)
            )
            if not contexts:
                return Refusal(
                    f"calling AE {rq.calling_aet!r} may not use {rq.called_aet!r}", LOCAL_REFUSAL
                )
        return Route(export, keys, tuple(contexts))

    def _refuse(self, sock: socket.socket, host: str, rq: pdu.AAssociateRQ, why: Refusal) -> None:
        log.warning(
            "relay: A-ASSOCIATE-RJ to %r at %s calling %r: %s",
            rq.calling_aet,
            host,
            rq.called_aet,
            why.why,
        )
        self.router.audit_association(False, rq.calling_aet, rq.called_aet, host, why.why)
        send_last_pdu(sock, pdu.associate_rj(*why.rj))

    # -- opening at the far site -----------------------------------------------
    def _open(
        self, session: CallerSession, route: Route, rq: pdu.AAssociateRQ
    ) -> OpenAnswer | Refusal:
        """Ask the far router to open the association; its answer, or why it failed."""
        router = self.router
        site = route.export.site
        kept = {cx.abstract_syntax for cx in route.contexts}  # roles for these only
        user = rq.user
        request = OpenRequest(
            rq.calling_aet,
            rq.called_aet,
            route.contexts,
            tuple(r for r in rq.roles if r.sop_class in kept),
            session.cid,
            # PS3.7 D.3.3.5, D.3.3.6: the device answers the caller's options itself.
            tuple(e for e in user.extended if e.sop_class in kept) if user else (),
            tuple(c for c in user.common_extended if c.sop_class in kept) if user else (),
            # PS3.7 D.3.3.7: the device authenticates the user (nothing here does).
            user.user_identity if user and isinstance(user.user_identity, UserIdentityRQ) else None,
        )
        header = {"kind": wire.OPEN, "cid": session.cid}
        sealed = router.identity.seal(site, route.keys, header, request.encode())
        try:
            reply = router.link.call(
                router.link.nc.request(f"relay.{site}.open", sealed, timeout=router.timeout),
                timeout=router.timeout + 2,
            )
        except Exception as exc:  # no responders, timeout, NATS down: all transient
            return Refusal(
                f"site {site!r} did not answer ({type(exc).__name__}: {exc})", UNREACHABLE
            )
        try:
            opened = router.identity.open(reply.data, router.directory.keys_of)
            if opened.header.get("from") != site or opened.header.get("cid") != session.cid:
                raise EnvelopeError("answer from another site or to another request")
            answer = OpenAnswer.decode(opened.body)
        except (EnvelopeError, wire.WireError) as exc:
            log.warning("relay: answer of site %s dropped: %s", site, exc)
            return Refusal(f"site {site!r} gave no valid answer", UNREACHABLE)
        if answer.reject is not None:
            result, source, reason = answer.reject
            if result not in (1, 2) or source not in (1, 2, 3):
                return Refusal(f"site {site!r}: {answer.why}", UNREACHABLE)
            return Refusal(f"refused at site {site!r}: {answer.why}", answer.reject)
        return answer

    def _associate_ac(
        self, rq: pdu.AAssociateRQ, route: Route, answer: OpenAnswer
    ) -> pdu.AAssociateAC:
        """The caller's A-ASSOCIATE-AC: the far device's results for the contexts that
        left, a rejection for the others (PS3.8 9.3.3.2); the device's role selections
        SOP class extended negotiation and user identity answers (PS3.7 D.3.3.4, D.3.3.5,
        D.3.3.7.2)."""
        far = {cx.context_id: cx for cx in answer.contexts}
        sent = {cx.context_id for cx in route.contexts}
        proposed = {cx.abstract_syntax for cx in route.contexts}
        results = []
        for cx in rq.contexts:
            if cx.context_id in far and cx.context_id in sent:
                results.append(far[cx.context_id])
            else:
                reason = (
                    items.ABSTRACT_SYNTAX_NOT_SUPPORTED
                    if service_of(cx.abstract_syntax) is None
                    else items.USER_REJECTION
                )
                results.append(
                    PresentationContextAC(cx.context_id, reason, cx.transfer_syntaxes[0])
                )
        user = UserInformation(
            max_length=MAX_PDU,
            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=IMPLEMENTATION_VERSION_NAME,
            roles=answer.roles,
            extended=tuple(e for e in answer.extended if e.sop_class in proposed),
            user_identity=None
            if answer.server_response is None
            else UserIdentityAC(answer.server_response),
        )
        return pdu.AAssociateAC(rq.called_aet, rq.calling_aet, user=user, contexts=tuple(results))


class CallerSession(Session):
    """The calling site's pump: checks every request against the export before it leaves."""

    def __init__(self, side: CallerSide, route: Route, rq: pdu.AAssociateRQ, cid: str) -> None:
        router = side.router
        super().__init__(
            link=router.link,
            identity=router.identity,
            keys_of=router.directory.keys_of,
            peer_site=route.export.site,
            inbound=f"relay.{router.directory.own_site}.r.{cid}",
            timeout=router.timeout,
            idle=router.idle,
            label=f"{rq.calling_aet}->{rq.called_aet}@{route.export.site}",
        )
        self.router = router
        self.cid = cid
        self.route = route
        self.calling_aet = rq.calling_aet
        self.host: str | None = None  # set by CallerSide when the association starts
        # Accepted context ID → its transfer syntax (the identifiers' encoding).
        self.syntaxes: dict[int, str] = {}
        # Message ID of each C-MOVE running as a transfer → set to cancel it.
        self._transfers: dict[int, threading.Event] = {}
        self._transfers_lock = threading.Lock()
        self._transfer_ended = float("-inf")  # when the last transfer C-MOVE ended
        self._release = "none"  # the caller's A-RELEASE-RQ: "none", "pending", "answered"

    def from_local(self, message: Message) -> None:
        command = msg.decode_command(message.command)
        field = msg.us(command, msg.COMMAND_FIELD)
        if field == msg.C_CANCEL_RQ and self._cancel(msg.us(command, msg.MESSAGE_ID_RESPONDED)):
            return
        service = BY_COMMAND.get(field)
        own = self.router.directory.own_site
        if service is not None and not self._may(service):
            log.warning("relay %s: %s not exported to site %s: refused", self.label, service, own)
            self.respond(message, NOT_AUTHORIZED, f"{service} not permitted")
            return
        if field == msg.C_MOVE_RQ and self._moved_elsewhere(message, command):
            return
        super().from_local(message)

    def _may(self, service: str) -> bool:
        """Does the export, and this node's access rules, let the caller use `service`?"""
        allowed = self.router.allowed
        if not self.route.export.permits(self.router.directory.own_site, service):
            return False
        return allowed is None or allowed(service, self.calling_aet, self.host)

    def _moved_elsewhere(self, message: Message, command: msg.Command) -> bool:
        """A C-MOVE to a destination outside the far site is a transfer (`moves`), not
        the far device's business; without transfers it is refused here (PS3.4
        C.4.2.1.5: 0xA801 move destination unknown).  True when handled here."""
        destination = msg.text(command, msg.MOVE_DESTINATION)
        moves = self.router.moves
        if moves is not None and moves.claims(destination, self.peer_site):
            self._start_transfer(moves, message, msg.us(command, msg.MESSAGE_ID))
            return True
        elsewhere = self.router.directory.export(destination)
        if elsewhere is None or elsewhere.site == self.peer_site:
            return False
        log.warning(
            "relay %s: C-MOVE to %r at site %s needs a transfer: refused",
            self.label,
            destination,
            elsewhere.site,
        )
        self.respond(message, MOVE_DESTINATION_UNKNOWN, "move destination at another site")
        return True

    def _start_transfer(self, moves: MoveElsewhere, message: Message, message_id: int) -> None:
        """Run a transfer C-MOVE beside the reader, which goes on reading (C-CANCEL)."""
        cancelled = threading.Event()
        with self._transfers_lock:
            self._transfers[message_id] = cancelled

        def run() -> None:
            try:
                moves.move(self, message, cancelled)
            except Exception as exc:  # the caller left, NATS down: this C-MOVE only
                log.warning("relay %s: transfer C-MOVE ended: %s", self.label, exc)
            finally:
                with self._transfers_lock:
                    self._transfers.pop(message_id, None)
                    self._transfer_ended = time.monotonic()
                    release = self._release == "pending" and not self._transfers
                if release:  # the caller released on hearing the final response
                    self._answer_release()

        threading.Thread(target=run, name=f"relay-move-{self.cid}", daemon=True).start()

    def _cancel(self, message_id: int) -> bool:
        """A C-CANCEL-RQ for a transfer C-MOVE of this association: tell it (True)."""
        with self._transfers_lock:
            cancelled = self._transfers.get(message_id)
        if cancelled is None:
            return False  # a C-MOVE or C-FIND the far device runs: relayed to it
        log.info("relay %s: C-CANCEL of C-MOVE %d", self.label, message_id)
        cancelled.set()
        return True

    def tick(self, interval: float) -> None:
        """The heartbeat, except that a far router fallen silent does not end the
        association while a transfer C-MOVE of it runs, nor for `timeout` after the
        last one ended (time for the caller to release): a transfer does not depend on
        the far router's association (its progress comes from the destination's
        router, its own wait is bounded) and survives the far router's restart
        (relay/resume.py).  Requests relayed to the far device meanwhile wait for it as
        any would; the heartbeat ends the association once the transfers are done."""
        with self._transfers_lock:
            moving = bool(self._transfers) or (
                time.monotonic() - self._transfer_ended < self.timeout
            )
        if not moving or self.done.is_set():
            super().tick(interval)
        elif self.outbound and time.monotonic() - self.last_sent >= interval:
            self._send_quietly(wire.PING)

    def finish(self) -> None:
        """The association ended: its transfers are cancelled too (nobody to answer)."""
        with self._transfers_lock:
            running = list(self._transfers.values())
        for cancelled in running:
            cancelled.set()
        super().finish()

    @property
    def called_aet(self) -> str:
        return self.route.export.aet

    def respond(
        self,
        message: Message,
        status: int,
        comment: str | None = None,
        extra: dict[int, int | str | bytes] | None = None,
        dataset: bytes | None = None,
    ) -> None:
        """A response from this router to the caller's request `message` (PS3.7 9.3):
        final ones for requests that may not leave the site, a transfer's C-MOVE-RSPs."""
        assert self.pipe is not None
        command = msg.decode_command(message.command)
        fields: dict[int, int | str | bytes] = {
            msg.AFFECTED_SOP_CLASS: msg.sop_class_of(command),
            msg.COMMAND_FIELD: msg.us(command, msg.COMMAND_FIELD) | 0x8000,
            msg.MESSAGE_ID_RESPONDED: msg.us(command, msg.MESSAGE_ID),
            msg.DATASET_TYPE: msg.NO_DATASET if dataset is None else msg.HAS_DATASET,
            msg.STATUS: status,
        }
        if comment:
            fields[msg.ERROR_COMMENT] = comment[:64]
        fields.update(extra or {})
        self.last_traffic = time.monotonic()  # a long transfer's caller is not idle
        self.pipe.write(Message(message.context_id, msg.encode_command(fields), dataset))

    def local_ended(self, ended: Ended) -> None:
        """A-RELEASE-RQ from the caller goes to the far device; anything else aborts it.

        The caller is answered A-RELEASE-RP at once, not after the far device's: it may
        release once it has the responses it waits for (PS3.8 7.2: information in
        transit is delivered first), and the device cannot refuse a release.  That saves the caller a round trip across sites per association
        (docs/relay.md, "Association relay").  The far router still releases the
        device; should a transfer C-MOVE of this association still run, the answer
        waits for the far device's or the C-MOVE's end, whichever comes first."""
        if ended.how != "release-rq":
            super().local_ended(ended)
            return
        self.send(wire.RELEASE)
        with self._transfers_lock:
            running = bool(self._transfers)
            if running:
                self._release = "pending"
        if not running:
            self._answer_release()

    def _answer_release(self) -> None:
        """A-RELEASE-RP to the caller and the end here, once: when it released with no
        transfer C-MOVE running, when the last one ended (a far router restarted
        meanwhile cannot answer for it), or when the far device answered."""
        with self._transfers_lock:
            if self._release == "answered":
                return
            self._release = "answered"
        assert self.pipe is not None
        self.pipe.send(pdu.RELEASE_RP)
        self.end(None)

    def remote_signal(self, kind: str) -> None:
        """`released`: the far device answered A-RELEASE-RP; so do we (PS3.8 7.2)."""
        if kind == wire.RELEASED:
            self._answer_release()
            return
        super().remote_signal(kind)
