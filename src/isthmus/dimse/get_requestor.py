"""A lean C-GET requestor: instances retrieved as the bytes the peer sends (PS3.4 C.4.3).

The relay's source router retrieves every instance of a transfer from its device with
C-GET.  Through pynetdicom each C-STORE sub-operation's command goes through pydicom
and every association polls its socket in a reactor thread: more CPU than the
transfer's compression and cryptography together.  This extends the storage
`Requestor` (the same PDUs, negotiation and fragments, `isthmus.dicom.ul`): it proposes
the storage classes with role selection, as their SCP (PS3.7 D.3.3.4), sends one
C-GET-RQ at a time (PS3.7 9.1.3), answers each C-STORE-RQ that comes back on the
association with the status `on_store` returns, and ends with the final counts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydicom.dataset import Dataset

from isthmus.config import Peer
from isthmus.dicom import uids
from isthmus.dicom.status import PENDING, PENDING_WARNING
from isthmus.dicom.ul import pdata, pdu, transport
from isthmus.dicom.ul.errors import PDUError
from isthmus.dimse import messages as msg
from isthmus.dimse.requestor import AssociationFailed, Requestor
from isthmus.dimse.scu import RetrieveReport

# on_store(SOP Class UID, SOP Instance UID, Transfer Syntax UID, data set) → status
OnStore = Callable[[str, str, str, memoryview], int]
# progress(remaining, completed, failed, warning) from each pending C-GET-RSP
Progress = Callable[[int, int, int, int], None]
IDENTIFIER_SYNTAXES = [str(uids.EXPLICIT_VR_LITTLE_ENDIAN), str(uids.IMPLICIT_VR_LITTLE_ENDIAN)]
MAX_STORAGE_CLASSES = 63  # two contexts each, and the model's: 127 of 128 (PS3.8 9.3.2.2)


def open_get(
    peer: Peer,
    model: str,
    storage_classes: Iterable[str],
    calling_aet: str,
    *,
    timeout: float = 60.0,
) -> GetRequestor:
    """An association for C-GETs of information model `model` (a SOP Class UID), the
    storage classes offered as SCP, each twice: uncompressed, and any compressed syntax
    as the device holds it.  AssociationFailed when the device will not have it."""
    classes = list(dict.fromkeys(storage_classes))[:MAX_STORAGE_CLASSES]
    compressed = [ts for ts in uids.STORABLE if ts not in uids.UNCOMPRESSED]
    contexts: list[tuple[str, list[str]]] = [(model, IDENTIFIER_SYNTAXES)]
    for sop_class in classes:
        contexts += [(sop_class, [str(ts) for ts in uids.PREFERRED_UNCOMPRESSED])]
        contexts += [(sop_class, compressed)]
    requestor = GetRequestor(
        peer, calling_aet, contexts, timeout=timeout, scp_roles=tuple(classes), model=model
    )
    requestor.open()
    return requestor


@dataclass
class GetRequestor(Requestor):
    """One association with a C-GET SCP (`open_get`)."""

    model: str = ""

    def get(
        self,
        identifier: Dataset,
        on_store: OnStore,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> RetrieveReport:
        """One C-GET; each instance to `on_store` as it comes.  Setting `cancel` aborts
        the association (AssociationFailed), as does anything the peer does wrong."""
        syntaxes = self.accepted_syntaxes(self.model)
        if not syntaxes:
            raise AssociationFailed(f"{self.peer} did not accept C-GET of {self.model}")
        context_id = self.accepted[(self.model, syntaxes[0])]
        message_id = self._next_id
        self._next_id = self._next_id % 65535 + 1
        command = msg.encode_command(
            {
                msg.AFFECTED_SOP_CLASS: self.model,
                msg.COMMAND_FIELD: msg.C_GET_RQ,
                msg.MESSAGE_ID: message_id,
                msg.PRIORITY: 0,
                msg.DATASET_TYPE: msg.HAS_DATASET,
            }
        )
        data = msg.encode_identifier(identifier, syntaxes[0])
        done = threading.Event()
        if cancel is not None:
            threading.Thread(
                target=self._abort_on, args=(cancel, done), name="get-cancel", daemon=True
            ).start()
        try:
            self._send(context_id, command, data)
            return _Exchange(self, on_store, progress).run()
        except OSError as exc:  # reset, timeout, A-ABORT: the association is over
            self.abort()
            if isinstance(exc, AssociationFailed):
                raise
            raise AssociationFailed(f"C-GET from {self.peer} failed: {exc}") from exc
        finally:
            done.set()

    def _send(self, context_id: int, command: bytes, data: bytes | None = None) -> None:
        if self.sock is None:  # aborted (a cancel) or closed
            raise AssociationFailed(f"the association with {self.peer} has ended")
        parts: list[bytes | memoryview] = list(
            pdata.fragment(context_id, command, True, self.max_pdu)
        )
        if data is not None:
            parts += pdata.fragment(context_id, data, False, self.max_pdu)
        transport.send_all(self.sock, parts)

    def _abort_on(self, cancel: threading.Event, done: threading.Event) -> None:
        while not done.is_set():
            if cancel.wait(0.05):
                if not done.is_set():
                    self.abort()
                return


class _Exchange:
    """The messages of one C-GET: C-STORE-RQs answered, C-GET-RSPs until the final."""

    def __init__(self, get: GetRequestor, on_store: OnStore, progress: Progress | None) -> None:
        self.get, self.on_store, self.progress = get, on_store, progress
        self.assembler = pdata.Assembler()
        self.command: msg.Command | None = None  # whose data set is being assembled
        self.report: RetrieveReport | None = None

    def run(self) -> RetrieveReport:
        while True:
            if self.get.sock is None:  # aborted (a cancel)
                raise AssociationFailed(f"the association with {self.get.peer} has ended")
            kind, body = self.get._read_pdu()
            if kind == pdu.A_ABORT:
                raise AssociationFailed(f"{self.get.peer} aborted the association")
            if kind != pdu.P_DATA_TF:
                raise AssociationFailed(f"unexpected PDU 0x{kind:02X} from {self.get.peer}")
            try:
                for fragment in pdata.split_pdvs(memoryview(body)):
                    payload = self.assembler.add(*fragment)
                    if payload is not None and self._message(fragment[0], payload):
                        assert self.report is not None
                        return self.report
            except (PDUError, msg.MalformedCommand, ValueError) as exc:
                raise AssociationFailed(f"{self.get.peer} sent a bad message: {exc}") from exc

    def _message(self, context_id: int, payload: memoryview) -> bool:
        """Handle a whole command or data set; True once the final C-GET-RSP is in."""
        if self.assembler.in_command:
            command = msg.decode_command(payload)
            if msg.us(command, msg.DATASET_TYPE) != msg.NO_DATASET:
                self.command = command
                self.assembler.expect_dataset()
                return False
            self.assembler.reset()
            return self._command(context_id, command, None)
        pending = self.command
        self.command = None
        self.assembler.reset()
        assert pending is not None
        return self._command(context_id, pending, payload)

    def _command(self, context_id: int, command: msg.Command, data: memoryview | None) -> bool:
        field_ = msg.us(command, msg.COMMAND_FIELD)
        if field_ == msg.C_STORE_RQ:
            self._store(context_id, command, data)
            return False
        if field_ != msg.C_GET_RSP:
            raise AssociationFailed(f"unexpected command 0x{field_:04X} during C-GET")
        status = msg.us(command, msg.STATUS)
        completed, failed, warning = (
            msg.us(command, k) for k in (msg.COMPLETED, msg.FAILED, msg.WARNING)
        )
        if status in (PENDING, PENDING_WARNING):
            if self.progress is not None:
                self.progress(msg.us(command, msg.REMAINING), completed, failed, warning)
            return False
        self.report = RetrieveReport(
            completed=completed, failed=failed, warning=warning, status=status
        )
        if data is not None:  # the Failed SOP Instance UID List (PS3.4 C.4.3.1.3.1)
            syntax = self.get.syntax_of.get(context_id, uids.IMPLICIT_VR_LITTLE_ENDIAN)
            self.report.failed_uids = msg.failed_sop_instance_uids(
                msg.decode_identifier(data, syntax, check=False)
            )
        return True

    def _store(self, context_id: int, command: msg.Command, data: memoryview | None) -> None:
        """A C-STORE sub-operation: `on_store`'s status in the C-STORE-RSP (PS3.7 9.3.1.2)."""
        sop_class = msg.text(command, msg.AFFECTED_SOP_CLASS)
        sop_instance = msg.text(command, msg.AFFECTED_SOP_INSTANCE)
        syntax = self.get.syntax_of.get(context_id)
        if data is None or syntax is None:
            status = 0xA900  # Error: data set does not match SOP class (PS3.4 B.2.3)
        else:
            status = self.on_store(sop_class, sop_instance, syntax, data)
        response = msg.encode_command(
            {
                msg.AFFECTED_SOP_CLASS: sop_class,
                msg.COMMAND_FIELD: msg.C_STORE_RSP,
                msg.MESSAGE_ID_RESPONDED: msg.us(command, msg.MESSAGE_ID),
                msg.DATASET_TYPE: msg.NO_DATASET,
                msg.STATUS: status,
                msg.AFFECTED_SOP_INSTANCE: sop_instance,
            }
        )
        self.get._send(context_id, response)
