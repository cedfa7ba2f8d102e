"""Associations for an AE title another process of the archive holds, passed on as bytes.

A browser registers its AE title with the WebSocket gateway of one process; the
archive's route table (archive/routes.py) says at which DICOM port (host:port).  An
association for that title that a load balancer sent to another process is passed
on to that port unchanged: the A-ASSOCIATE-RQ was only peeked at (PS3.8 9.3.2), so
it is still in the socket and a plain TCP pipe both ways carries the whole
association.  The holder's router then treats it as one of its own callers.

No PDU is parsed here: the holder (its router, the gateway's validator) checks them.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading

from isthmus.node.sockets import set_nodelay

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024  # bytes per recv: P-DATA-TF PDUs are often 16 KB to 1 MB


def is_listening_address(listening: tuple[str, int], host: str, port: int) -> bool:
    """Is host:port the address a socket listening at `listening` accepts on?

    Passing an association on to ourselves would peek at it, look the title up and
    pass it on again, without end.  A wildcard bind (0.0.0.0, ::) accepts on every
    local address: a host is local when a socket can be bound to it.
    """
    bound, bound_port = listening[0], listening[1]
    if port != bound_port:
        return False
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return False
    wildcard = bound in ("", "0.0.0.0", "::")
    for family, _, _, _, sockaddr in infos:
        address = str(sockaddr[0])
        if wildcard and _is_local(family, address):
            return True
        if not wildcard and _same_ip(address, bound):
            return True
    return False


def _same_ip(a: str, b: str) -> bool:
    """The same IP address, an IPv4 one also when written as IPv4-mapped IPv6."""
    try:
        return _unmapped(a) == _unmapped(b)
    except ValueError:  # a bound host name: compare as written
        return a == b


def _unmapped(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_local(family: int, address: str) -> bool:
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:  # EADDRNOTAVAIL: not an address of this machine
            return False
    return True


def connect(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to the holder, within `timeout` seconds (OSError if not)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(None)
    set_nodelay(sock)
    return sock


def pipe(caller: socket.socket, holder: socket.socket, linger: float, name: str) -> None:
    """Copy bytes both ways until both sides are done; then close both.

    A side that closes (or fails) ends its direction and the other side gets the end
    of stream (shutdown for writing) after the last bytes, as TCP carries a close.
    The other direction then has `linger` seconds (the ARTIM timer, PS3.8 9.1.5) to
    end too before both sockets are shut down, so a peer that never closes holds the
    thread no longer than that.
    """
    caller.settimeout(None)
    lock = threading.Lock()
    timers: list[threading.Timer] = []

    def end_of(destination: socket.socket) -> None:
        _shutdown(destination, socket.SHUT_WR)
        with lock:
            if not timers:
                timer = threading.Timer(linger, _shutdown_both, (caller, holder))
                timer.daemon = True
                timer.start()
                timers.append(timer)

    def copy(source: socket.socket, destination: socket.socket) -> None:
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        try:
            while count := source.recv_into(buffer):
                destination.sendall(view[:count])
        except OSError as exc:  # a reset, or shut down by the timer
            log.debug("%s: %s", name, exc)
        finally:
            end_of(destination)

    back = threading.Thread(target=copy, args=(holder, caller), name=f"{name} back", daemon=True)
    back.start()
    try:
        copy(caller, holder)
        back.join()
    finally:
        for timer in timers:
            timer.cancel()
        caller.close()
        holder.close()


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError:  # not connected any more
        pass


def _shutdown_both(first: socket.socket, second: socket.socket) -> None:
    _shutdown(first, socket.SHUT_RDWR)
    _shutdown(second, socket.SHUT_RDWR)
