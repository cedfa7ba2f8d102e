"""PDUs on a TCP connection (PS3.8 9.1): blocking readers (one PDU at a time, or read
ahead with `PDUReader`), one asyncio reader, and a gathering writer.

A PDU is read as its 6-byte header, then exactly the PDU-length it names (PS3.8
9.3.1), so PDUs are never split nor merged.  Both readers refuse an unknown PDU type
(A-ABORT reason 1) and a length above the caller's limit (reason 6) before reading
the body: a length field is not a reason to allocate gigabytes.  With a `timeout`,
the blocking reader also bounds the time one PDU may take once its first byte has
arrived (PDUTimeout), so a peer trickling bytes cannot hold a thread for ever; the
wait for that first byte is the socket's own timeout (the idle timeout).
"""

from __future__ import annotations

import asyncio
import fcntl
import ssl
import struct
import termios
import time
from collections.abc import Iterable
from typing import Any

from isthmus.dicom.ul.errors import INVALID_PARAMETER, UNRECOGNIZED_PDU, PDUError
from isthmus.dicom.ul.pdu import PDU_HEADER, PDU_NAMES

# What a blocking reader accepts when the caller names no limit.
HARD_PDU_LIMIT = 64 * 1024 * 1024
# How much a PDUReader asks the socket for at once when it reads ahead.
READ_AHEAD = 64 * 1024


def check_header(header: bytes | bytearray | memoryview, limit: int) -> int:
    """PDU-length of a known PDU type within `limit`, from its 6-byte header."""
    kind, length = header[0], struct.unpack_from(">I", header, 2)[0]
    if kind not in PDU_NAMES:
        raise PDUError(f"unknown PDU type 0x{kind:02X}", UNRECOGNIZED_PDU)
    if length > limit:
        raise PDUError(
            f"{PDU_NAMES[kind]} of {length} bytes exceeds the limit of {limit}", INVALID_PARAMETER
        )
    return int(length)


class PDUTimeout(TimeoutError):
    """A PDU that began did not arrive whole within the time allowed."""


def recv_exactly(sock: Any, size: int, deadline: float | None = None) -> bytearray:
    """Read exactly `size` bytes into one buffer with recv_into (EOFError if the peer
    closes first; PDUTimeout past `deadline`, a time.monotonic() value)."""
    buf = bytearray(size)
    _fill(sock, memoryview(buf), 0, deadline)
    return buf


def _fill(sock: Any, view: memoryview, got: int, deadline: float | None) -> None:
    size = len(view)
    while got < size:
        got += _receive_once(sock, view[got:], deadline, f"{got} of {size} bytes")


def _receive_once(sock: Any, view: memoryview, deadline: float | None, so_far: str) -> int:
    """One `recv_into` of up to len(view) bytes, finished by `deadline` (PDUTimeout,
    saying `so_far` arrived) or, without one, by the socket's own timeout once the
    link is idle (`_still_taking`); EOFError if the peer closed."""
    if deadline is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PDUTimeout(f"{so_far} received in the time allowed")
        sock.settimeout(remaining)
    taking: int | None = None
    while True:
        try:
            n: int = sock.recv_into(view, len(view))
            break
        except TimeoutError:
            if deadline is not None:
                raise PDUTimeout(f"{so_far} received in the time allowed") from None
            taking = _still_taking(sock, taking)
            if taking is None:
                raise
    if n == 0:
        raise EOFError("connection closed")
    return n


def unacknowledged(sock: Any) -> int:
    """Bytes sent on `sock` that its peer has not acknowledged yet (SIOCOUTQ, which is
    TIOCOUTQ, on Linux); 0 where that cannot be told."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (AttributeError, OSError, ValueError):
        return 0
    return int(struct.unpack("i", raw)[0])


def _still_taking(sock: Any, before: int | None) -> int | None:
    """After a socket timeout: is the peer still taking our bytes?  The bytes it has not
    acknowledged, to compare after the next timeout, while they fall from one timeout to
    the next (`before`; None at the first, when any bytes still on their way count);
    None once it took nothing for a whole timeout: the link is idle."""
    now = unacknowledged(sock)
    if before is None:
        return now if now > 0 else None
    return now if now < before else None


def read_pdu(
    sock: Any, limit: int = HARD_PDU_LIMIT, timeout: float | None = None
) -> tuple[int, bytearray]:
    """The next PDU from a blocking socket: its type and its body (after the header),
    read into one buffer so that data set bytes can be handed on as views.  With
    `timeout`, the whole PDU must arrive within that many seconds of its first byte."""
    if timeout is None:
        header = recv_exactly(sock, PDU_HEADER)
        length = check_header(header, limit)
        return header[0], recv_exactly(sock, length)
    header = bytearray(PDU_HEADER)
    view = memoryview(header)
    first = _receive_once(sock, view, None, "")  # waits as long as the socket's timeout
    idle = sock.gettimeout()
    deadline = time.monotonic() + timeout
    try:
        _fill(sock, view, first, deadline)
        length = check_header(header, limit)
        return header[0], recv_exactly(sock, length, deadline)
    finally:
        sock.settimeout(idle)


class PDUReader:
    """PDUs from a blocking socket, read ahead: one `recv_into` brings whatever has
    arrived, often several whole PDUs (a small C-STORE's command and data set come
    together), each handed out as a view of the chunk it arrived in; a PDU longer than
    what arrived is completed straight into a buffer of its own size, as `read_pdu`
    does.  Limits and timeouts are `read_pdu`'s.  A small instance then costs one
    receive instead of four, each with its poll and two timeout changes: in a threaded
    server every one of those system calls is a hand-over of the GIL."""

    __slots__ = ("sock", "_chunk", "_pos")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self._chunk = memoryview(b"")  # what was received and not yet handed out: [_pos:]
        self._pos = 0

    def pending(self) -> int:
        """Bytes received and not yet handed out (a select() on the socket misses them)."""
        return len(self._chunk) - self._pos

    def read(
        self, limit: int = HARD_PDU_LIMIT, timeout: float | None = None
    ) -> tuple[int, memoryview | bytearray]:
        """The next PDU: its type and its body (after the header)."""
        if not self.pending():
            self._receive(None)  # the first byte waits as long as the socket's timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        idle = self.sock.gettimeout()
        try:
            while self.pending() < PDU_HEADER:
                self._receive(deadline)
            start = self._pos + PDU_HEADER
            header = self._chunk[self._pos : start]
            end = start + check_header(header, limit)
            if end <= len(self._chunk):
                self._pos = end
                return header[0], self._chunk[start:end]
            body = bytearray(end - start)
            have = len(self._chunk) - start
            body[:have] = self._chunk[start:]
            kind = header[0]
            self._chunk, self._pos = memoryview(b""), 0
            _fill(self.sock, memoryview(body), have, deadline)
            return kind, body
        finally:
            if self.sock.gettimeout() != idle:
                self.sock.settimeout(idle)

    def _receive(self, deadline: float | None) -> None:
        """Receive into a new chunk behind what is left of this one (a chunk is never
        written again: the PDUs handed out are views of it)."""
        left = self._chunk[self._pos :]
        chunk = bytearray(READ_AHEAD + len(left))
        chunk[: len(left)] = left
        view = memoryview(chunk)
        n = _receive_once(self.sock, view[len(left) :], deadline, f"{len(left)} bytes of a PDU")
        self._chunk, self._pos = view[: len(left) + n], 0


def send_all(sock: Any, parts: Iterable[bytes | memoryview]) -> None:
    """Send buffers with as few system calls as the kernel allows (sendmsg gathers).
    A send that times out goes on while the peer still acknowledges our bytes (the
    module's docstring); not over TLS, where a timed-out send may have sent part of
    what it was given without saying how much."""
    pending = [memoryview(p).cast("B") for p in parts if len(p)]
    taking: int | None = None
    while pending:
        try:
            sent = sock.sendmsg(pending[:512])
        except TimeoutError:
            taking = None if isinstance(sock, ssl.SSLSocket) else _still_taking(sock, taking)
            if taking is None:
                raise
            continue
        taking = None
        while pending and sent >= len(pending[0]):
            sent -= len(pending[0])
            pending.pop(0)
        if pending and sent:
            pending[0] = pending[0][sent:]


async def read_pdu_async(reader: asyncio.StreamReader, limit: int) -> bytes | None:
    """One whole PDU (header included) from a stream, or None at a clean end of stream."""
    try:
        header = await reader.readexactly(PDU_HEADER)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise PDUError("connection closed inside a PDU header") from None
        return None
    length = check_header(header, limit)
    try:
        return header + await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise PDUError("connection closed inside a PDU") from None
