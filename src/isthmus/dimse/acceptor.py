"""A lean association acceptor for the hot path: storage and verification only.

Most associations a PACS sees come from modalities and other archives pushing
images.  pynetdicom's general machinery (a DUL thread, event queues, primitives,
copies of every P-DATA fragment) costs milliseconds per instance; this acceptor
implements the small part of PS3.8 such an association needs - A-ASSOCIATE-AC/RJ,
P-DATA-TF with PDV fragmentation (PS3.8 9.3.5, E.2), A-RELEASE, A-ABORT - and
PS3.7's C-STORE and C-ECHO (9.1.1, 9.1.5), reading each PDU straight into one
buffer and handing the dataset bytes to the archive without another copy.
Associations that propose anything else go to pynetdicom (router.py decides).
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pynetdicom.presentation import AllStoragePresentationContexts

from isthmus import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from isthmus.dicom import uids
from isthmus.dimse import pdu

if TYPE_CHECKING:
    from isthmus.dimse.scp import ArchiveSCP

log = logging.getLogger(__name__)

VERIFICATION = "1.2.840.10008.1.1"
STORAGE_CLASSES = frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)
C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
NO_DATASET = 0x0101
STATUS_UNRECOGNIZED_OPERATION = 0x0211  # PS3.7 C.5.5
HARD_PDU_LIMIT = 64 * 1024 * 1024
RESULT_ACCEPT, RESULT_ABSTRACT_NOT_SUPPORTED, RESULT_TS_NOT_SUPPORTED = 0, 3, 4


def handles(rq: pdu.AssociateRequest) -> bool:
    """True when every proposed context is storage or verification, roles default."""
    if not rq.contexts or any(role.scp_role for role in rq.roles):
        return False
    return all(cx.abstract_syntax in STORAGE_CLASSES or cx.abstract_syntax == VERIFICATION
               for cx in rq.contexts)


class AbortAssociation(Exception):
    """Protocol error: abort with this PS3.8 table 9-26 reason."""

    def __init__(self, reason: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class _Message:
    context_id: int
    command: dict[int, bytes] = field(default_factory=dict)
    fragments: list[memoryview] = field(default_factory=list)


class StorageAcceptor:
    """Serves one association on a connected socket until release, abort or error."""

    active = 0
    _count_lock = threading.Lock()

    def __init__(self, sock: socket.socket, address: Any, rq: pdu.AssociateRequest,
                 scp: "ArchiveSCP") -> None:
        self.sock = sock
        self.address = address[0] if isinstance(address, tuple) else str(address)
        self.rq = rq
        self.scp = scp
        self.settings = scp.settings
        self.syntaxes: dict[int, str] = {}
        self.abstract: dict[int, str] = {}
        self.stored = 0

    # -- association -----------------------------------------------------
    def run(self) -> None:
        with StorageAcceptor._count_lock:
            StorageAcceptor.active += 1
            too_many = StorageAcceptor.active > self.settings.max_associations
        try:
            self.sock.settimeout(self.settings.network_timeout)
            self._read_pdu()  # the A-ASSOCIATE-RQ the router peeked at
            if too_many:
                self._reject(pdu.RESULT_TRANSIENT, pdu.SOURCE_SERVICE_PROVIDER_PRESENTATION,
                             pdu.REASON_LOCAL_LIMIT_EXCEEDED)
                return
            if not self._accept():
                return
            self._serve()
        except AbortAssociation as exc:
            log.warning("A-ABORT to %s (%s): %s", self.rq.calling_aet, self.address, exc)
            self._send_quietly(pdu.abort(2, exc.reason))
        except (EOFError, ConnectionError):
            log.info("association from %s ended without release", self.rq.calling_aet)
        except socket.timeout:
            log.warning("association from %s idle too long: A-ABORT", self.rq.calling_aet)
            self._send_quietly(pdu.abort(2, 0))
        finally:
            with StorageAcceptor._count_lock:
                StorageAcceptor.active -= 1
            _close(self.sock)
            if self.stored:
                log.info("association from %s: %d instance(s) stored", self.rq.calling_aet,
                         self.stored)

    def _accept(self) -> bool:
        """Negotiate (PS3.8 9.3.3 / PS3.7 D.3.2): first proposed syntax we keep as sent."""
        rq = self.rq
        if not rq.protocol_version & 1:
            self._reject(pdu.RESULT_PERMANENT, pdu.SOURCE_SERVICE_PROVIDER_ACSE, 2)
            return False
        if rq.application_context != pdu.APPLICATION_CONTEXT:
            self._reject(pdu.RESULT_PERMANENT, pdu.SOURCE_SERVICE_USER, 2)
            return False
        results = []
        storable = set(uids.STORABLE)
        for cx in rq.contexts:
            choice = next((ts for ts in cx.transfer_syntaxes if ts in storable), None)
            if cx.abstract_syntax == VERIFICATION:
                choice = next((ts for ts in cx.transfer_syntaxes if ts in uids.UNCOMPRESSED), None)
            if choice is None:
                results.append((cx.context_id, RESULT_TS_NOT_SUPPORTED, cx.transfer_syntaxes[0]))
                continue
            self.syntaxes[cx.context_id] = choice
            self.abstract[cx.context_id] = cx.abstract_syntax
            results.append((cx.context_id, RESULT_ACCEPT, choice))
        self.sock.sendall(pdu.associate_ac(rq, results, self.settings.max_pdu,
                                           IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME))
        return True

    def _reject(self, result: int, source: int, reason: int) -> None:
        self._send_quietly(pdu.associate_rj(result, source, reason))

    def _serve(self) -> None:
        message: _Message | None = None
        while True:
            kind, body = self._read_pdu()
            if kind == pdu.P_DATA_TF:
                message = self._p_data(body, message)
            elif kind == pdu.A_RELEASE_RQ:
                self.sock.sendall(pdu.release_rp())
                return
            elif kind == pdu.A_ABORT:
                log.info("association from %s aborted by the peer", self.rq.calling_aet)
                return
            else:
                raise AbortAssociation(pdu.ABORT_UNEXPECTED_PDU, f"unexpected PDU 0x{kind:02X}")

    # -- PDUs ---------------------------------------------------------------
    def _read_pdu(self) -> tuple[int, bytearray]:
        header = self._recv(6)
        kind, length = header[0], struct.unpack(">I", header[2:6])[0]
        if kind not in pdu.PDU_TYPES:
            raise AbortAssociation(pdu.ABORT_UNRECOGNIZED_PDU, f"PDU type 0x{kind:02X}")
        if length > HARD_PDU_LIMIT:
            raise AbortAssociation(pdu.ABORT_INVALID_PARAMETER, f"PDU of {length} bytes")
        return kind, self._recv(length)

    def _recv(self, size: int) -> bytearray:
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            n = self.sock.recv_into(view[got:], size - got)
            if n == 0:
                raise EOFError("connection closed")
            got += n
        return buf

    def _p_data(self, body: bytearray, message: _Message | None) -> _Message | None:
        """PDV items of a P-DATA-TF (PS3.8 9.3.5.1, E.2 message control header)."""
        view = memoryview(body)
        pos = 0
        while pos < len(body):
            if len(body) - pos < 6:
                raise AbortAssociation(pdu.ABORT_INVALID_PARAMETER, "truncated PDV item")
            length = struct.unpack_from(">I", body, pos)[0]
            context_id, control = body[pos + 4], body[pos + 5]
            if length < 2 or pos + 4 + length > len(body):
                raise AbortAssociation(pdu.ABORT_INVALID_PARAMETER, "PDV length overruns PDU")
            if context_id not in self.syntaxes:
                raise AbortAssociation(pdu.ABORT_INVALID_PARAMETER,
                                       f"PDV on unaccepted presentation context {context_id}")
            data = view[pos + 6:pos + 4 + length]
            pos += 4 + length
            message = self._fragment(message, context_id, control, data)
        return message

    def _fragment(self, message: _Message | None, context_id: int, control: int,
                  data: memoryview) -> _Message | None:
        is_command, is_last = bool(control & 1), bool(control & 2)
        if message is None:
            if not is_command:
                raise AbortAssociation(pdu.ABORT_UNEXPECTED_PARAMETER, "dataset before command")
            message = _Message(context_id)
        if context_id != message.context_id:
            raise AbortAssociation(pdu.ABORT_UNEXPECTED_PARAMETER, "context changed mid-message")
        if is_command:
            if message.command:
                raise AbortAssociation(pdu.ABORT_UNEXPECTED_PARAMETER, "second command set")
            message.fragments.append(data)
            if is_last:
                message.command = _decode_command(b"".join(message.fragments))
                message.fragments = []
                if _us(message.command, 0x0800) == NO_DATASET:
                    self._dispatch(message, None)
                    return None
            return message
        if not message.command:
            raise AbortAssociation(pdu.ABORT_UNEXPECTED_PARAMETER, "dataset inside a command")
        message.fragments.append(data)
        if is_last:
            parts = message.fragments
            dataset = parts[0] if len(parts) == 1 else memoryview(b"".join(parts))
            self._dispatch(message, dataset)
            return None
        return message

    # -- DIMSE --------------------------------------------------------------
    def _dispatch(self, message: _Message, dataset: memoryview | None) -> None:
        command = message.command
        field_ = _us(command, 0x0100)
        message_id = _us(command, 0x0110)
        sop_class = _text(command, 0x0002)
        calling = self.rq.calling_aet
        if field_ == C_ECHO_RQ:
            status = self.scp.echo(calling, self.address)
            self._respond(message.context_id, C_ECHO_RSP, message_id, sop_class, status)
        elif field_ == C_STORE_RQ and dataset is not None:
            sop_instance = _text(command, 0x1000)
            status, comment = self.scp.store(
                calling, self.address, dataset, self.syntaxes[message.context_id],
                sop_class, sop_instance)
            if status == 0:
                self.stored += 1
            self._respond(message.context_id, C_STORE_RSP, message_id, sop_class, status,
                          sop_instance, comment)
        else:
            self._respond(message.context_id, field_ | 0x8000, message_id, sop_class,
                          STATUS_UNRECOGNIZED_OPERATION)

    def _respond(self, context_id: int, field_: int, message_id: int, sop_class: str,
                 status: int, sop_instance: str | None = None, comment: str | None = None) -> None:
        elements = [(0x0002, _ui(sop_class)), (0x0100, struct.pack("<H", field_)),
                    (0x0120, struct.pack("<H", message_id)),
                    (0x0800, struct.pack("<H", NO_DATASET)), (0x0900, struct.pack("<H", status))]
        if comment:
            text = comment.encode("ascii", "replace")[:64]
            elements.append((0x0902, text + b" " * (len(text) % 2)))
        if sop_instance:
            elements.append((0x1000, _ui(sop_instance)))
        body = b"".join(struct.pack("<HHI", 0, tag, len(v)) + v for tag, v in elements)
        command = struct.pack("<HHII", 0, 0, 4, len(body)) + body
        pdv = struct.pack(">IBB", len(command) + 2, context_id, 0x03) + command
        self.sock.sendall(struct.pack(">BBI", pdu.P_DATA_TF, 0, len(pdv)) + pdv)

    def _send_quietly(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass


def _decode_command(data: bytes) -> dict[int, bytes]:
    """A command set: Implicit VR Little Endian, group 0000 (PS3.7 6.3.1)."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos + 8 <= len(data):
        group, element, length = struct.unpack_from("<HHI", data, pos)
        if group != 0 or pos + 8 + length > len(data):
            raise AbortAssociation(pdu.ABORT_INVALID_PARAMETER, "malformed command set")
        out[element] = data[pos + 8:pos + 8 + length]
        pos += 8 + length
    if pos != len(data) or 0x0100 not in out:
        raise AbortAssociation(pdu.ABORT_INVALID_PARAMETER, "malformed command set")
    return out


def _us(command: dict[int, bytes], element: int) -> int:
    value = command.get(element, b"")
    return struct.unpack("<H", value[:2])[0] if len(value) >= 2 else 0


def _text(command: dict[int, bytes], element: int) -> str:
    return command.get(element, b"").decode("ascii", "replace").strip(" \x00")


def _ui(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
