"""The far site's side of the association relay: plays an association against the device.

The agent answers `relay.<own site>.open`: it checks again that the calling site may
use the export for the services asked (defence in depth: the caller's router checked
first, but a router cannot trust another site's), opens a TCP association to the
exported device with the original caller's AE title as calling AE title (so the
device sees, and may authorize, who asks), proposes the same presentation contexts
with the same IDs, the same role selections, extended negotiation and user identity
(PS3.7 D.3.3.4-7), and answers with what the device accepted - or with the device's A-ASSOCIATE-RJ, or a transient one when it cannot be
reached.  Then it relays the association's messages (session.py) on
`relay.<own site>.a.<aid>` until release, abort or silence.
"""

from __future__ import annotations

import logging
import secrets
import socket
from typing import TYPE_CHECKING, Any

from isthmus import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from isthmus.dicom.ul import items, pdu, transport, validation
from isthmus.dicom.ul.errors import PDUError
from isthmus.dicom.ul.items import UserIdentityAC, UserInformation
from isthmus.node.sockets import set_nodelay
from isthmus.relay import wire
from isthmus.relay.caller import NOT_PERMITTED, UNKNOWN_AE, UNREACHABLE
from isthmus.relay.crypto import EnvelopeError
from isthmus.relay.pipe import MAX_PDU, Ended, Pipe
from isthmus.relay.services import permitted_contexts
from isthmus.relay.session import Session
from isthmus.relay.wire import OpenAnswer, OpenRequest

if TYPE_CHECKING:
    from isthmus.relay.door import RelayDoor

log = logging.getLogger(__name__)

# Of the timeout the calling router waits for an answer, what connecting to the device
# and its A-ASSOCIATE-AC may take each, so the answer comes before the caller gives up.
OPEN_SHARE = 0.4
# A-ASSOCIATE-RJ when a site holds max_associations here already (PS3.8 9.3.4).
TOO_MANY = (
    pdu.RESULT_TRANSIENT,
    pdu.SOURCE_SERVICE_PROVIDER_PRESENTATION,
    pdu.REASON_LOCAL_LIMIT_EXCEEDED,
)


class AgentSide:
    """Answers open requests from other sites (a NATS callback on the link's loop)."""

    def __init__(self, router: RelayDoor) -> None:
        self.router = router

    async def on_open(self, nats_msg: Any) -> None:
        router = self.router
        try:
            opened = router.identity.open(nats_msg.data, router.directory.keys_of)
            if opened.header.get("kind") != wire.OPEN:
                raise EnvelopeError(f"{opened.header.get('kind')!r} on the open subject")
            request = OpenRequest.decode(opened.body)
        except (EnvelopeError, wire.WireError) as exc:
            log.warning("relay: open request dropped: %s", exc)
            return
        caller_site = str(opened.header["from"])
        # A thread of its own: connecting to the device blocks (up to OPEN_SHARE of the
        # timeout), and the loop's small executor must not queue other sites' opens.
        router.spawn_thread(
            self._open_and_answer, nats_msg, caller_site, request, name="relay-open"
        )

    def _open_and_answer(self, nats_msg: Any, caller_site: str, request: OpenRequest) -> None:
        router = self.router
        answer = self.open(caller_site, request)
        keys = router.directory.keys_of(caller_site)
        if keys is None or not nats_msg.reply:
            return
        header = {"kind": answer.kind, "cid": request.cid, "aid": answer.aid}
        sealed = router.identity.seal(caller_site, keys, header, answer.encode())
        try:
            router.link.call(nats_msg.respond(sealed), timeout=router.timeout)
        except Exception as exc:  # the caller's router times out and refuses: transient
            log.warning("relay: answer to site %s not sent: %s", caller_site, exc)

    def open(self, caller_site: str, request: OpenRequest) -> OpenAnswer:
        """Open the association at the device (blocking: in a thread of its own)."""
        router = self.router
        if router.sessions(caller_site) >= router.max_associations:
            log.warning(
                "relay: site %s has %d associations here: refused",
                caller_site,
                router.max_associations,
            )
            return _reject(TOO_MANY, "too many associations from that site")
        address = router.exports.get(request.called_aet)
        if address is None:
            return _reject(UNKNOWN_AE, f"{request.called_aet!r} is not exported here")
        entry = router.directory.site(router.identity.name)
        export = (
            next((e for e in entry.exports if e.aet == request.called_aet), None) if entry else None
        )
        if export is None:
            return _reject(
                UNKNOWN_AE, f"{request.called_aet!r} is not in this site's directory entry"
            )
        contexts = permitted_contexts(
            request.contexts, request.roles, lambda s: export.permits(caller_site, s)
        )
        if len(contexts) != len(request.contexts):
            log.warning(
                "relay: site %s asked %r for services not exported to it: refused",
                caller_site,
                request.called_aet,
            )
            return _reject(NOT_PERMITTED, f"not exported to site {caller_site!r} for that")
        classes = {cx.abstract_syntax for cx in contexts}
        rq = pdu.AAssociateRQ(
            request.called_aet,
            request.calling_aet,
            user=UserInformation(
                max_length=MAX_PDU,
                implementation_class_uid=IMPLEMENTATION_CLASS_UID,
                implementation_version_name=IMPLEMENTATION_VERSION_NAME,
                roles=request.roles,
                extended=tuple(e for e in request.extended if e.sop_class in classes),
                common_extended=tuple(c for c in request.common_extended if c.sop_class in classes),
                user_identity=request.user_identity,
            ),
            contexts=tuple(contexts),
        )
        budget = router.timeout * OPEN_SHARE
        try:
            sock = socket.create_connection(address, timeout=budget)
        except OSError as exc:
            log.warning("relay: %r at %s:%d unreachable: %s", request.called_aet, *address, exc)
            return _reject(UNREACHABLE, "the device cannot be reached")
        set_nodelay(sock)
        try:
            return self._associate(sock, caller_site, rq, request.cid, budget)
        except (OSError, EOFError, PDUError) as exc:
            log.warning("relay: association with %r failed: %s", request.called_aet, exc)
            _close(sock)
            return _reject(UNREACHABLE, "the device did not accept the association")

    def _associate(
        self,
        sock: socket.socket,
        caller_site: str,
        rq: pdu.AAssociateRQ,
        cid: str,
        budget: float,
    ) -> OpenAnswer:
        """A-ASSOCIATE-RQ to the device and its answer (within `budget` seconds); on AC,
        the session starts."""
        router = self.router
        sock.settimeout(budget)
        sock.sendall(rq.encode())
        kind, body = transport.read_pdu(sock, pdu.MAX_ASSOCIATE_RQ, budget)
        data = pdu.header(kind, len(body)) + bytes(body)
        if kind == pdu.A_ASSOCIATE_RJ:
            rj = validation.validate_associate_rj(pdu.AAssociateRJ.decode(data))
            _close(sock)
            log.info(
                "relay: %r rejected %r (%d/%d/%d)",
                rq.called_aet,
                rq.calling_aet,
                rj.result,
                rj.source,
                rj.reason,
            )
            return _reject((rj.result, rj.source, rj.reason), "the device rejected the association")
        if kind != pdu.A_ASSOCIATE_AC:
            raise PDUError(f"{pdu.PDU_NAMES[kind]} in answer to A-ASSOCIATE-RQ")
        ac = validation.parse_associate_ac(data, {cx.context_id for cx in rq.contexts})
        aid = secrets.token_hex(8)
        session = AgentSession(router, caller_site, rq, aid, cid)
        session.subscribe()
        pipe = Pipe(sock, ac.max_length, router.timeout)
        pipe.accepted = {cx.context_id for cx in ac.contexts if cx.result == items.ACCEPTANCE}
        sock.settimeout(router.timeout)  # a read times out: idle? (Session._idle)
        router.opened(session, rq.calling_aet, rq.called_aet, f"{caller_site} (relay)")
        router.spawn_thread(session.run, pipe, name=f"relay-agent-{aid}")
        return OpenAnswer(
            aid=aid,
            contexts=ac.contexts,
            roles=ac.user.roles if ac.user else (),
            extended=ac.user.extended if ac.user else (),
            server_response=_server_response(ac.user),
        )


class AgentSession(Session):
    """The far site's pump: the device's side of a relayed association."""

    def __init__(
        self, router: RelayDoor, caller_site: str, rq: pdu.AAssociateRQ, aid: str, cid: str
    ) -> None:
        own = router.identity.name
        super().__init__(
            link=router.link,
            identity=router.identity,
            keys_of=router.directory.keys_of,
            peer_site=caller_site,
            inbound=f"relay.{own}.a.{aid}",
            timeout=router.timeout,
            idle=router.idle,
            label=f"{caller_site}:{rq.calling_aet}->{rq.called_aet}",
        )
        self.aid = aid
        self.outbound = f"relay.{caller_site}.r.{cid}"  # the caller's inbox

    def local_ended(self, ended: Ended) -> None:
        """The device answered our A-RELEASE-RQ: tell the caller's router."""
        if ended.how == "release-rp":
            self.end(wire.RELEASED)
            return
        super().local_ended(ended)

    def remote_signal(self, kind: str) -> None:
        """`release`: the caller asked for release (PS3.8 7.2); ask the device."""
        if kind == wire.RELEASE:
            assert self.pipe is not None
            self.pipe.send(pdu.RELEASE_RQ)
            return
        super().remote_signal(kind)


def _server_response(user: UserInformation | None) -> bytes | None:
    """The device's answer to the caller's user identity (PS3.7 D.3.3.7.2), if any."""
    if user is not None and isinstance(user.user_identity, UserIdentityAC):
        return user.user_identity.server_response
    return None


def _reject(rj: tuple[int, int, int], why: str) -> OpenAnswer:
    return OpenAnswer(reject=rj, why=why)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
