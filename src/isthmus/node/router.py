"""One DICOM port, routed by called AE title (docs/architecture.md, "One DICOM port, routed by AE title").

The listener reads - without consuming - the A-ASSOCIATE-RQ that opens every
association (PS3.8 9.3.2), looks at the called AE title and hands the connection
to the handler of the node's own AE titles (the DIMSE door's acceptor), to a route
registered by another door (a browser AE through the WebSocket gateway, a site
through the relay), passes it on byte for byte to the process of the archive that
holds the title (`remote`, `node.remote`: a browser registered elsewhere), or answers
A-ASSOCIATE-RJ "called AE title not recognized" (PS3.8 9.3.4).  It imports no service: whoever starts it passes the handlers.

With an SSL context the router is the TLS DICOM port (PS3.15 Annex B; `node.tls`):
each connection's TLS handshake runs in that connection's own thread, bounded by
`peek_timeout`, so a slow or plain-TCP client holds only its own thread; an SSL
socket cannot be peeked at, so the router reads the A-ASSOCIATE-RQ and puts it back
(`TLSConnection.replay`).  Before any handler runs, `admit` (the access control's)
may refuse a calling AE title that must use TLS or a given client certificate.
Routes registered by other doors take plain sockets into their own event loops and
are served on the plain port only; so are titles another process holds.
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from isthmus.archive import Activity
from isthmus.dicom.ul import pdu, validation
from isthmus.dicom.ul.errors import NOT_SPECIFIED, UNEXPECTED_PDU, UNRECOGNIZED_PDU
from isthmus.dicom.ul.transport import recv_exactly
from isthmus.node.remote import connect as connect_holder
from isthmus.node.remote import is_listening_address, pipe
from isthmus.node.sockets import set_nodelay
from isthmus.node.tls import PeerIdentity, TLSConnection, identity

log = logging.getLogger(__name__)

# handler(socket, client address, parsed request): owns the socket from then on.  For
# the own AE titles the request may hold the AE titles only (see _peek_associate).
RouteHandler = Callable[[socket.socket, Any, pdu.AAssociateRQ], None]
# On a shared port, the most associations a process defers accepting for (1 ms each).
ACCEPT_DELAY_CAP = 8
# admit(calling AE title, over TLS?, verified client certificate): why not, or None.
Admission = Callable[[str, bool, PeerIdentity | None], str | None]
# remote(called AE title): host and port of the DICOM port of the process holding it.
RemoteLookup = Callable[[str], tuple[str, int] | None]


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
    # Where another process of the archive holds a called AE title (host, port of its
    # DICOM port) or None: start_scp asks the archive's route table.  Associations for
    # such a title are passed on there (node.remote).
    remote: RemoteLookup | None = None
    forward_timeout: float = 60.0  # seconds to connect to the holder (settings.network_timeout)

    def __init__(
        self,
        address: tuple[str, int],
        own: RouteHandler,
        tls: ssl.SSLContext | None = None,
        listening: socket.socket | None = None,
    ) -> None:
        """Listen on `address`; `own` serves the called AE titles in `own_aets` (and any
        title not routed elsewhere when `accept_any` is set).  With `tls`, every
        connection is TLS (node.tls.server_context).  With `listening`, accept on that
        socket instead, bound and listening already and shared with other processes
        (workers.py): it must be non-blocking, since another process may take the
        connection this one was woken for."""
        try:
            if ipaddress.ip_address(address[0]).version == 6:
                self.address_family = socket.AF_INET6
        except ValueError:
            pass
        # What the doors started along with the port (e.g. the UPS event sender): closed
        # with it, newest first.  Set before binding: a failed bind calls server_close,
        # and the caller must see the OSError (EADDRINUSE: fetch.py's port in use).
        self.on_close: list[Callable[[], None]] = []
        super().__init__(address, _Handler, bind_and_activate=listening is None)
        self.shared_port = listening is not None
        if listening is not None:
            self.socket.close()
            self.socket = listening
            self.server_address = listening.getsockname()
        self.own = own
        self.tls = tls
        self.admit: Admission | None = None
        self.own_aets = set()
        self.accept_any = False
        self._routes: dict[str, RouteHandler] = {}
        self.activity = Activity()  # start_scp gives the archive's (audit trail, metrics)
        self._handed: set[int] = set()
        self._lock = threading.Lock()

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

    def routes(self) -> list[str]:
        """The called AE titles routed elsewhere (browser AEs, relay sites), sorted."""
        with self._lock:
            return sorted(self._routes)

    def route_for(self, called_aet: str) -> RouteHandler | None:
        if self.tls is not None:  # routes take plain sockets (see the module's docstring)
            return None
        with self._lock:
            return self._routes.get(called_aet)

    def share_routes(self, other: AssociationRouter) -> None:
        """Use `other`'s routing table (the TLS port next to the plain one)."""
        self._routes = other._routes
        self._lock = other._lock

    # -- socketserver hooks ----------------------------------------------
    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection.  On a port shared by several processes each waits a
        millisecond per association it serves first, so that a new one goes to the
        least busy process (nginx's accept_mutex_delay in spirit): the kernel would
        otherwise hand a burst of associations to whichever process wakes first."""
        if self.shared_port:
            busy = int(getattr(self.own, "associations", 0))
            if busy:
                time.sleep(min(busy, ACCEPT_DELAY_CAP) * 0.001)
        return self.socket.accept()

    def finish_request(self, request: Any, client_address: Any) -> None:
        set_nodelay(request)
        if self.tls is None:
            if self._route(request, client_address):
                with self._lock:
                    self._handed.add(id(request))  # the handler closes it, not shutdown_request
            return
        # The raw socket is detached once wrapped: shutdown_request only closes it when
        # wrapping failed.  The TLS connection is closed here unless handed on.
        conn = self._handshake(request, client_address)
        if conn is not None and not self._route(conn, client_address):
            _close(conn)

    def _handshake(self, raw: socket.socket, client_address: Any) -> TLSConnection | None:
        """The TLS handshake (PS3.15 B.9), within peek_timeout; None when it failed."""
        assert self.tls is not None
        try:
            conn = self.tls.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        except OSError as exc:
            log.warning("TLS connection from %s dropped: %s", client_address[0], exc)
            return None
        assert isinstance(conn, TLSConnection)  # node.tls contexts make these
        try:
            conn.settimeout(self.peek_timeout)
            conn.do_handshake()
        except (OSError, ValueError) as exc:  # ssl.SSLError, timeout, reset
            log.warning("TLS handshake with %s failed: %s", client_address[0], exc)
            if _refused_handshake(exc):  # a Security Alert (docs/operations.md)
                self.activity.node_authentication_failed(
                    client_address[0], f"TLS handshake failed: {exc}"
                )
            _close(conn)
            return None
        return conn

    def _route(self, request: socket.socket, client_address: Any) -> bool:
        """Read the A-ASSOCIATE-RQ and hand the connection on; True if handed."""
        try:
            rq = self._peek_associate(request)
        except (pdu.PDUError, OSError, EOFError) as exc:
            # A connection that sends nothing is a port probe (a load balancer's health
            # check every few seconds, docs/scaling.md): not worth a warning.
            level = logging.DEBUG if isinstance(exc, _NothingSent) else logging.WARNING
            log.log(level, "connection from %s dropped before association: %s", client_address, exc)
            reason = exc.reason if isinstance(exc, pdu.PDUError) else 0
            send_last_pdu(request, pdu.abort(pdu.ABORT_SOURCE_PROVIDER, reason))
            if isinstance(exc, pdu.PDUError) and not isinstance(exc, _NothingSent):
                # a protocol error: audited as an association refused (docs/operations.md)
                self.activity.association(False, "", "", client_address[0], f"A-ABORT: {exc}")
            return False
        peer_identity = identity(request)
        refusal = (
            self.admit(rq.calling_aet, self.tls is not None, peer_identity) if self.admit else None
        )
        if refusal is not None:
            log.warning(
                "A-ASSOCIATE-RJ to %r at %s: %s", rq.calling_aet, client_address[0], refusal
            )
            send_last_pdu(
                request,
                pdu.associate_rj(
                    pdu.RESULT_PERMANENT,
                    pdu.SOURCE_SERVICE_USER,
                    pdu.REASON_CALLING_AE_NOT_RECOGNIZED,
                ),
            )
            self.activity.association(
                False, rq.calling_aet, rq.called_aet, client_address[0], refusal
            )
            return False
        if peer_identity is not None:
            log.info("association from %r over TLS as %s", rq.calling_aet, peer_identity)
        handler = self.route_for(rq.called_aet)
        if handler is not None:
            handler(request, client_address, rq)
            return True
        if rq.called_aet in self.own_aets:
            self.own(request, client_address, rq)
            return True
        holder = self._holder(rq.called_aet)
        if holder is not None:
            return self._pass_on(request, client_address, rq, holder)
        if self.accept_any:
            self.own(request, client_address, rq)
            return True
        log.warning(
            "A-ASSOCIATE-RJ to %r at %s: called AE title %r not recognized",
            rq.calling_aet,
            client_address[0],
            rq.called_aet,
        )
        send_last_pdu(
            request,
            pdu.associate_rj(
                pdu.RESULT_PERMANENT, pdu.SOURCE_SERVICE_USER, pdu.REASON_CALLED_AE_NOT_RECOGNIZED
            ),
        )
        self.activity.association(
            False,
            rq.calling_aet,
            rq.called_aet,
            client_address[0],
            "called AE title not recognized",
        )
        return False

    def _holder(self, called_aet: str) -> tuple[str, int] | None:
        """The DICOM port of the process that holds `called_aet` (`remote`, the
        archive's route table), unless that is this port: a route left pointing here
        would pass the association on to itself without end.  Not on the TLS port: it
        serves no routes (the module's docstring), and passing on would carry a TLS
        association in the clear to the holder's plain port."""
        if self.remote is None or self.tls is not None:
            return None
        try:
            holder = self.remote(called_aet)
        except Exception:  # the index is unreachable: the title is unknown here
            log.exception("cannot look up which process holds AE title %r", called_aet)
            return None
        if holder is not None and is_listening_address(self.socket.getsockname(), *holder):
            log.warning(
                "AE title %r is routed to this port %s:%d: not passed on", called_aet, *holder
            )
            return None
        return holder

    def _pass_on(
        self,
        request: socket.socket,
        client_address: Any,
        rq: pdu.AAssociateRQ,
        holder: tuple[str, int],
    ) -> bool:
        """Pipe the connection to the holder's port, A-ASSOCIATE-RQ (still unread) and
        all; True once passed on.  An unreachable holder is A-ASSOCIATE-RJ, transient
        (PS3.8 9.3.4): the browser may register again, as when it does not take an
        association (docs/dicom-websocket.md)."""
        host, port = holder
        try:
            onward = connect_holder(host, port, self.forward_timeout)
        except OSError as exc:
            why = f"AE title {rq.called_aet!r} is held at {host}:{port}, unreachable: {exc}"
            log.warning("A-ASSOCIATE-RJ to %r at %s: %s", rq.calling_aet, client_address[0], why)
            send_last_pdu(
                request,
                pdu.associate_rj(
                    pdu.RESULT_TRANSIENT, pdu.SOURCE_SERVICE_USER, pdu.REASON_NO_REASON
                ),
            )
            self.activity.association(False, rq.calling_aet, rq.called_aet, client_address[0], why)
            return False
        log.info(
            "association from %r at %s for %r passed on to %s:%d",
            rq.calling_aet,
            client_address[0],
            rq.called_aet,
            host,
            port,
        )
        pipe(request, onward, ARTIM, f"{rq.called_aet} via {host}:{port}")
        return True

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            handed = id(request) in self._handed
            self._handed.discard(id(request))
        if not handed:
            super().shutdown_request(request)

    def _peek_associate(self, sock: socket.socket) -> pdu.AAssociateRQ:
        """Read the A-ASSOCIATE-RQ with MSG_PEEK so the SCP still receives it (over TLS:
        read it and put back what was read).

        Only its AE titles when no route claims the called AE title: the acceptor reads
        and parses the request itself, which may be larger than a socket's receive
        buffer lets one peek at (128 presentation contexts of 38 syntaxes: 150 KB).
        """
        deadline = time.monotonic() + self.peek_timeout
        if isinstance(sock, TLSConnection):
            reader = _Reader(sock, deadline)
            try:
                return self._look_at_associate(reader.look)
            finally:
                sock.replay(bytes(reader.data))
                sock.settimeout(None)
        return self._look_at_associate(lambda size: _peek(sock, size, deadline))

    def _look_at_associate(self, look: Callable[[int], bytes]) -> pdu.AAssociateRQ:
        """The A-ASSOCIATE-RQ from `look(n)`, which gives its first n bytes."""
        header = look(pdu.PDU_HEADER)
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
        titles = pdu.parse_titles(look(pdu.TITLES_END))
        if self.route_for(titles.called_aet) is None:
            return titles
        return validation.parse_associate_rq(look(length))


class _Reader:
    """The first bytes of a TLS connection, read as far as asked, within a deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.data = bytearray()

    def look(self, size: int) -> bytes:
        if len(self.data) < size:
            try:
                self.data += recv_exactly(self.sock, size - len(self.data), self.deadline)
            except TimeoutError:
                raise pdu.PDUError("timed out waiting for A-ASSOCIATE-RQ", NOT_SPECIFIED) from None
            except EOFError:
                raise pdu.PDUError("connection closed in the middle of A-ASSOCIATE-RQ") from None
        return bytes(self.data[:size])


class _NothingSent(pdu.PDUError):
    """The peer connected and closed without sending a byte."""


def _peek(sock: socket.socket, size: int, deadline: float) -> bytes:
    previous = sock.gettimeout()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise pdu.PDUError("timed out waiting for A-ASSOCIATE-RQ", NOT_SPECIFIED)
            sock.settimeout(remaining)
            data = sock.recv(size, socket.MSG_PEEK | socket.MSG_WAITALL)
            if not data:  # closed with nothing to read: nothing was sent at all
                raise _NothingSent("connection closed before A-ASSOCIATE-RQ")
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


def _refused_handshake(exc: BaseException) -> bool:
    """Did the TLS layer refuse the caller (its certificate, protocol version or suites:
    a failed credential, PS3.15 B.9), rather than the caller going away mid-handshake
    (a port probe, a reset, a timeout), which is only logged?"""
    return isinstance(exc, ssl.SSLError) and not isinstance(
        exc, ssl.SSLEOFError | ssl.SSLZeroReturnError
    )


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


# Seconds to wait for the peer to close after our last PDU (PS3.8 9.1.5, the ARTIM timer).
ARTIM = 2.0


def send_last_pdu(sock: socket.socket, data: bytes) -> None:
    """Send a last PDU (A-ASSOCIATE-RJ, A-ABORT), then wait for the peer to close the
    connection, reading and dropping what it still sends (PS3.8 Sta13, bounded by the
    ARTIM timer): closing with its bytes unread - the A-ASSOCIATE-RQ we only peeked at -
    would reset the connection and could destroy our PDU before the peer reads it."""
    try:
        sock.sendall(data)
        sock.settimeout(ARTIM)
        deadline = time.monotonic() + ARTIM
        while time.monotonic() < deadline and sock.recv(65536):
            pass
    except (OSError, ValueError):
        pass
