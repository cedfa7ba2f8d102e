"""One DICOM port, routed by called AE title (docs/architecture.md, "One DICOM port, routed by AE title").

The listener reads - without consuming - the A-ASSOCIATE-RQ that opens every
association (PS3.8 9.3.2), looks at the called AE title and hands the connection
to the handler of the node's own AE titles (the DIMSE door's acceptor), to a route
registered by another door (a browser AE through the WebSocket gateway, a site
through the relay), or answers A-ASSOCIATE-RJ "called AE title not recognized"
(PS3.8 9.3.4).  It imports no service: whoever starts it passes the handlers.
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from typing import Any

from isthmus.dicom.ul import pdu, validation
from isthmus.dicom.ul.errors import NOT_SPECIFIED, UNEXPECTED_PDU, UNRECOGNIZED_PDU
from isthmus.node.sockets import set_nodelay

log = logging.getLogger(__name__)

# handler(socket, client address, parsed request): owns the socket from then on.  For
# the own AE titles the request may hold the AE titles only (see _peek_associate).
RouteHandler = Callable[[socket.socket, Any, pdu.AAssociateRQ], None]


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:  # the work happens in AssociationRouter.finish_request
        pass


class AssociationRouter(socketserver.ThreadingTCPServer):
    """A threaded TCP listener (one thread per association) routing by called AE title."""

    allow_reuse_address = True
    daemon_threads = True
    own_aets: set[str]
    accept_any: bool
    peek_timeout: float = 30.0  # seconds for the whole A-ASSOCIATE-RQ (settings.pdu_timeout)
    max_associate_rq: int = pdu.MAX_ASSOCIATE_RQ  # bytes, header included

    def __init__(self, address: tuple[str, int], own: RouteHandler) -> None:
        """Listen on `address`; `own` serves the called AE titles in `own_aets` (and any
        title not routed elsewhere when `accept_any` is set)."""
        try:
            if ipaddress.ip_address(address[0]).version == 6:
                self.address_family = socket.AF_INET6
        except ValueError:
            pass
        super().__init__(address, _Handler)
        self.own = own
        self.own_aets = set()
        self.accept_any = False
        self._routes: dict[str, RouteHandler] = {}
        self._handed: set[int] = set()
        self._lock = threading.Lock()
        # What the doors started along with the port (e.g. the UPS event sender): closed
        # with it, newest first.
        self.on_close: list[Callable[[], None]] = []

    def server_close(self) -> None:
        while self.on_close:
            self.on_close.pop()()
        super().server_close()

    # -- routing table ---------------------------------------------------
    def add_route(self, called_aet: str, handler: RouteHandler) -> None:
        """Send associations called `called_aet` to `handler` (before the own AE titles)."""
        with self._lock:
            self._routes[called_aet.strip()] = handler

    def remove_route(self, called_aet: str) -> None:
        with self._lock:
            self._routes.pop(called_aet.strip(), None)

    def route_for(self, called_aet: str) -> RouteHandler | None:
        with self._lock:
            return self._routes.get(called_aet)

    # -- socketserver hooks ----------------------------------------------
    def finish_request(self, request: Any, client_address: Any) -> None:
        set_nodelay(request)
        try:
            rq = self._peek_associate(request)
        except (pdu.PDUError, OSError) as exc:
            log.warning("connection from %s dropped before association: %s", client_address, exc)
            reason = exc.reason if isinstance(exc, pdu.PDUError) else 0
            _send_quietly(request, pdu.abort(pdu.ABORT_SOURCE_PROVIDER, reason))
            return
        handler = self.route_for(rq.called_aet)
        if handler is not None:
            with self._lock:
                self._handed.add(id(request))
            handler(request, client_address, rq)
            return
        if rq.called_aet in self.own_aets or self.accept_any:
            with self._lock:
                self._handed.add(id(request))
            self.own(request, client_address, rq)
            return
        log.warning(
            "A-ASSOCIATE-RJ to %r at %s: called AE title %r not recognized",
            rq.calling_aet,
            client_address[0],
            rq.called_aet,
        )
        _send_quietly(
            request,
            pdu.associate_rj(
                pdu.RESULT_PERMANENT, pdu.SOURCE_SERVICE_USER, pdu.REASON_CALLED_AE_NOT_RECOGNIZED
            ),
        )

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            handed = id(request) in self._handed
            self._handed.discard(id(request))
        if not handed:
            super().shutdown_request(request)

    def _peek_associate(self, sock: socket.socket) -> pdu.AAssociateRQ:
        """Read the A-ASSOCIATE-RQ with MSG_PEEK so the SCP still receives it.

        Only its AE titles when no route claims the called AE title: the acceptor reads
        and parses the request itself, which may be larger than a socket's receive
        buffer lets one peek at (128 presentation contexts of 38 syntaxes: 150 KB).
        """
        deadline = time.monotonic() + self.peek_timeout
        header = _peek(sock, pdu.PDU_HEADER, deadline)
        if header[0] != pdu.A_ASSOCIATE_RQ:
            raise pdu.PDUError(
                f"first PDU is type 0x{header[0]:02X}, not A-ASSOCIATE-RQ",
                UNRECOGNIZED_PDU if header[0] not in pdu.PDU_NAMES else UNEXPECTED_PDU,
            )
        length = pdu.PDU_HEADER + pdu.pdu_length(header)
        if length > self.max_associate_rq:
            raise pdu.PDUError(f"A-ASSOCIATE-RQ of {length} bytes is too large")
        if length < pdu.PDU_HEADER + pdu.FIXED_LENGTH:
            raise pdu.PDUError(f"A-ASSOCIATE-RQ of {length} bytes is too short")
        titles = pdu.parse_titles(_peek(sock, pdu.TITLES_END, deadline))
        if self.route_for(titles.called_aet) is None:
            return titles
        return validation.parse_associate_rq(_peek(sock, length, deadline))


def _peek(sock: socket.socket, size: int, deadline: float) -> bytes:
    previous = sock.gettimeout()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise pdu.PDUError("timed out waiting for A-ASSOCIATE-RQ", NOT_SPECIFIED)
            sock.settimeout(remaining)
            data = sock.recv(size, socket.MSG_PEEK | socket.MSG_WAITALL)
            if not data:
                raise pdu.PDUError("connection closed before A-ASSOCIATE-RQ")
            if len(data) >= size:
                return data
            # Part of it is here.  The socket stays readable while those bytes wait, so
            # wait for the peer to close (POLLRDHUP) a little, then look again.
            if _peer_closed(sock, min(remaining, 0.05)):
                raise pdu.PDUError("connection closed in the middle of A-ASSOCIATE-RQ")
    finally:
        sock.settimeout(previous)


def _peer_closed(sock: socket.socket, timeout: float) -> bool:
    """Has the peer closed its side (or reset) within `timeout` seconds?  Bytes waiting to
    be read do not wake this up, unlike select() on readability."""
    if not hasattr(select, "POLLRDHUP"):  # not Linux: no way to tell, look again later
        time.sleep(timeout)
        return False
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP)  # POLLHUP and POLLERR are always reported
    return bool(poller.poll(timeout * 1000))


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
        time.sleep(0.05)  # let the peer read it before the close
    except OSError:
        pass
