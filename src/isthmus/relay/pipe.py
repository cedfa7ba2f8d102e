"""The DICOM side of a relayed association: whole DIMSE messages on a TCP socket.

The relay works at the level of DIMSE messages (PS3.7 6.3): PDVs are reassembled
into a command set and its data set (PS3.8 9.3.5, Annex E) as they come from one
peer, and fragmented again to the other peer's Maximum Length Received (PS3.8 D.1).
PDUs, PDVs and the socket I/O are `isthmus.dicom.ul`'s.
"""

from __future__ import annotations

import collections
import socket
import threading
from dataclasses import dataclass

from isthmus.dicom.ul import errors, pdata, pdu, transport
from isthmus.dicom.ul.errors import PDUError
from isthmus.dimse import messages as msg
from isthmus.relay.wire import Message

# Maximum Length Received (PS3.8 D.1) the relay declares on both of its associations.
MAX_PDU = 262_144


@dataclass(frozen=True)
class Ended:
    """The association's end as one peer signalled it: "release-rq", "release-rp",
    "abort" (A-ABORT received) or "closed" (the connection ended without one)."""

    how: str


class Pipe:
    """One association's socket: read whole messages, write whole messages."""

    def __init__(self, sock: socket.socket, peer_max_pdu: int, pdu_timeout: float) -> None:
        self.sock = sock
        self.peer_max_pdu = peer_max_pdu
        self.pdu_timeout = pdu_timeout
        self.accepted: set[int] = set()  # context ids PDVs may come on
        self._pdvs: collections.deque[pdata.Fragment] = collections.deque()
        self._assembler = pdata.Assembler()
        self._write = threading.Lock()

    def read(self) -> Message | Ended:
        """The next whole message, or how the association ended.  PDUError on a protocol
        error; TimeoutError when the peer was idle past the socket's timeout."""
        assembler = self._assembler
        command: bytes | None = None
        while True:
            if not self._pdvs:
                ended = self._read_pdu()
                if ended is not None:
                    assembler.reset()
                    return ended
                continue
            payload = assembler.add(*self._pdvs.popleft())
            if payload is None:
                continue
            context_id = assembler.context_id
            assert context_id is not None
            if command is not None:
                assembler.reset()
                return Message(context_id, command, bytes(payload))
            command = bytes(payload)
            try:
                decoded = msg.decode_command(command)
            except msg.MalformedCommand as exc:
                raise PDUError(str(exc), errors.INVALID_PARAMETER) from None
            if msg.us(decoded, msg.DATASET_TYPE) == msg.NO_DATASET:
                assembler.reset()
                return Message(context_id, command, None)
            assembler.expect_dataset()

    def _read_pdu(self) -> Ended | None:
        try:
            kind, body = transport.read_pdu(self.sock, MAX_PDU + 64, self.pdu_timeout)
        except (EOFError, ConnectionError):
            return Ended("closed")
        if kind == pdu.P_DATA_TF:
            pdata.split_pdvs(memoryview(body), self.accepted, self._pdvs)
            return None
        if kind == pdu.A_RELEASE_RQ:
            return Ended("release-rq")
        if kind == pdu.A_RELEASE_RP:
            return Ended("release-rp")
        if kind == pdu.A_ABORT:
            return Ended("abort")
        raise PDUError(f"unexpected {pdu.PDU_NAMES[kind]}", errors.UNEXPECTED_PDU)

    def write(self, message: Message) -> None:
        """Send one message, fragmented to the peer's maximum PDU length."""
        parts: list[bytes | memoryview] = list(
            pdata.fragment(message.context_id, message.command, True, self.peer_max_pdu)
        )
        if message.dataset is not None:
            parts += pdata.fragment(message.context_id, message.dataset, False, self.peer_max_pdu)
        with self._write:
            transport.send_all(self.sock, parts)

    def send(self, data: bytes) -> None:
        """One PDU as bytes (A-RELEASE-RQ/RP)."""
        with self._write:
            self.sock.sendall(data)

    def abort(self, source: int = pdu.ABORT_SOURCE_PROVIDER, reason: int = 0) -> None:
        """A-ABORT (PS3.8 9.3.8) and close; quiet if the connection is gone already."""
        try:
            with self._write:
                self.sock.sendall(pdu.abort(source, reason))
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
