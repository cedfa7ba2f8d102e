"""A lean storage requestor: C-STORE of stored bytes to a peer (PS3.7 9.1.1, PS3.8 9.3).

C-MOVE sub-operations send instances exactly as stored; going through pynetdicom
would decode and re-encode every dataset.  This opens an association, negotiates
the presentation contexts the caller asks for, and sends each dataset's bytes in
P-DATA fragments sized to the peer's maximum PDU length.
"""

from __future__ import annotations

import logging
import socket
import struct
from dataclasses import dataclass, field

from isthmus import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from isthmus.config import Peer
from isthmus.dicom import pdu
from isthmus.dimse import messages as msg
from isthmus.node.sockets import set_nodelay

log = logging.getLogger(__name__)

OUR_MAX_PDU = 262_144


class AssociationFailed(ConnectionError):
    """The peer could not be reached, rejected the association or aborted it."""


@dataclass
class Requestor:
    """One association to a storage SCP."""

    peer: Peer
    calling_aet: str
    contexts: list[tuple[str, list[str]]]  # (abstract syntax, transfer syntaxes) per context
    timeout: float = 60.0
    sock: socket.socket | None = None
    accepted: dict[tuple[str, str], int] = field(default_factory=dict)  # (class, ts) → id
    max_pdu: int = 0
    _next_id: int = 1

    def open(self) -> Requestor:
        if len(self.contexts) > 128:
            raise ValueError("at most 128 presentation contexts (PS3.8 9.3.2.2)")
        try:
            self.sock = socket.create_connection(
                (self.peer.host, self.peer.port), timeout=self.timeout
            )
        except OSError as exc:
            raise AssociationFailed(f"cannot connect to {self.peer}: {exc}") from exc
        set_nodelay(self.sock)
        try:
            self.sock.sendall(self._associate_rq())
            kind, body = self._read_pdu()
        except OSError as exc:  # AssociationFailed included: the socket is not ours to keep
            self.close()
            raise AssociationFailed(
                f"{self.peer} did not answer the A-ASSOCIATE-RQ: {exc}"
            ) from exc
        if kind == pdu.A_ASSOCIATE_RJ and len(body) >= 4:
            self.close()
            raise AssociationFailed(
                f"{self.peer} rejected the association "
                f"(result {body[1]}, source {body[2]}, reason {body[3]})"
            )
        if kind != pdu.A_ASSOCIATE_AC:
            self.abort()
            raise AssociationFailed(f"{self.peer} answered PDU 0x{kind:02X} to A-ASSOCIATE-RQ")
        self._read_ac(body)
        if 0 < self.max_pdu < pdu.MIN_PEER_MAX_LENGTH:  # no P-DATA-TF would fit (PS3.8 D.1)
            self.abort()
            raise AssociationFailed(f"{self.peer} accepts PDUs of {self.max_pdu} bytes at most")
        return self

    def _associate_rq(self) -> bytes:
        items = [pdu.item(0x10, pdu.APPLICATION_CONTEXT.encode())]
        for index, (abstract, syntaxes) in enumerate(self.contexts):
            sub = pdu.item(0x30, abstract.encode()) + b"".join(
                pdu.item(0x40, ts.encode()) for ts in syntaxes
            )
            items.append(pdu.item(0x20, bytes([2 * index + 1, 0, 0, 0]) + sub))
        user = (
            pdu.item(0x51, struct.pack(">I", OUR_MAX_PDU))
            + pdu.item(0x52, IMPLEMENTATION_CLASS_UID.encode())
            + pdu.item(0x55, IMPLEMENTATION_VERSION_NAME.encode())
        )
        items.append(pdu.item(0x50, user))
        payload = (
            struct.pack(">HH", 1, 0)
            + self.peer.aet.encode().ljust(16)[:16]
            + self.calling_aet.encode().ljust(16)[:16]
            + b"\x00" * 32
            + b"".join(items)
        )
        return struct.pack(">BBI", pdu.A_ASSOCIATE_RQ, 0, len(payload)) + payload

    def _read_ac(self, body: bytes) -> None:
        """Accepted contexts and the peer's maximum PDU length (PS3.8 9.3.3)."""
        proposed = {2 * i + 1: abstract for i, (abstract, _ts) in enumerate(self.contexts)}
        pos = 68
        while pos + 4 <= len(body):
            item_type, length = body[pos], struct.unpack(">H", body[pos + 2 : pos + 4])[0]
            value = body[pos + 4 : pos + 4 + length]
            pos += 4 + length
            if item_type == 0x21 and len(value) >= 8 and value[2] == 0:
                ts = value[8 : 8 + struct.unpack(">H", value[6:8])[0]].decode().strip(" \x00")
                abstract = proposed.get(value[0])
                if abstract:
                    self.accepted.setdefault((abstract, ts), value[0])
            elif item_type == 0x50:
                sub = 0
                while sub + 4 <= len(value):
                    sub_type, sub_len = value[sub], struct.unpack(">H", value[sub + 2 : sub + 4])[0]
                    if sub_type == 0x51 and sub_len == 4:
                        self.max_pdu = struct.unpack(">I", value[sub + 4 : sub + 8])[0]
                    sub += 4 + sub_len

    def context_for(self, sop_class: str, transfer_syntax: str) -> int | None:
        return self.accepted.get((sop_class, transfer_syntax))

    def accepted_syntaxes(self, sop_class: str) -> list[str]:
        return [ts for (abstract, ts) in self.accepted if abstract == sop_class]

    def store(
        self,
        context_id: int,
        sop_class: str,
        sop_instance: str,
        dataset: bytes | memoryview,
        originator: tuple[str, int] | None = None,
    ) -> int:
        """C-STORE one dataset; returns the response status (PS3.4 B.2.3).  Raises
        AssociationFailed when the association is gone (then it stays closed)."""
        if self.sock is None:
            raise AssociationFailed(f"the association with {self.peer} has ended")
        message_id = self._next_id
        self._next_id = self._next_id % 65535 + 1
        command = msg.c_store_rq(message_id, sop_class, sop_instance, originator)
        parts: list[bytes | memoryview] = list(msg.p_data(context_id, command, True, self.max_pdu))
        parts += msg.p_data(context_id, dataset, False, self.max_pdu)
        try:
            msg.send_all(self.sock, parts)
            return self._response(message_id)
        except OSError as exc:  # reset, timeout, A-ABORT: no later C-STORE can succeed
            self.abort()
            if isinstance(exc, AssociationFailed):
                raise
            raise AssociationFailed(f"association with {self.peer} failed: {exc}") from exc

    def _response(self, message_id: int) -> int:
        fragments: list[bytes] = []
        while True:
            kind, body = self._read_pdu()
            if kind == pdu.A_ABORT:
                raise AssociationFailed(f"{self.peer} aborted the association")
            if kind != pdu.P_DATA_TF:
                raise AssociationFailed(f"unexpected PDU 0x{kind:02X} from {self.peer}")
            pos = 0
            while pos + 6 <= len(body):
                length = struct.unpack_from(">I", body, pos)[0]
                control = body[pos + 5]
                if control & 1:  # a command fragment (a response has no data set)
                    fragments.append(bytes(body[pos + 6 : pos + 4 + length]))
                pos += 4 + length
                if control & 3 == 3:
                    try:
                        command = msg.decode_command(b"".join(fragments))
                    except msg.MalformedCommand as exc:
                        raise AssociationFailed(f"{self.peer} sent a bad response: {exc}") from exc
                    fragments = []
                    if msg.us(command, msg.MESSAGE_ID_RESPONDED) == message_id:
                        return msg.us(command, msg.STATUS)

    def release(self) -> None:
        """A-RELEASE (PS3.8 7.2); closes the connection whatever the peer says."""
        if self.sock is None:
            return
        try:
            self.sock.sendall(struct.pack(">BBI", pdu.A_RELEASE_RQ, 0, 4) + b"\x00" * 4)
            self._read_pdu()
        except (OSError, EOFError, AssociationFailed):
            pass
        self.close()

    def abort(self) -> None:
        if self.sock is not None:
            try:
                self.sock.sendall(pdu.abort(0, 0))
            except OSError:
                pass
            self.close()

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def _read_pdu(self) -> tuple[int, bytes]:
        assert self.sock is not None
        try:
            header = msg.recv_exactly(self.sock, 6)
            length = struct.unpack(">I", header[2:6])[0]
            if length > 64 * 1024 * 1024:
                raise AssociationFailed(f"PDU of {length} bytes from {self.peer}")
            return header[0], bytes(msg.recv_exactly(self.sock, length))
        except EOFError as exc:
            raise AssociationFailed(f"{self.peer} closed the connection") from exc
