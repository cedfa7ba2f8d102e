"""The acceptor serves what the service table lists, and only that: negotiation and
dispatch both follow the table (PS3.7 9.3, 10.3; PS3.8 9.3.3.2), so a new service is
one more entry.  Here a table of one C-ECHO service with a handler of its own."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from isthmus.config import Settings
from isthmus.dicom import status
from isthmus.dimse import messages as msg
from isthmus.dimse.acceptor import LocalAE
from isthmus.dimse.service import Channel, Message, Service, ServiceTable
from isthmus.node.router import AssociationRouter

VERIFICATION = "1.2.840.10008.1.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    def echo(self, channel: Channel, message: Message) -> None:
        self.seen.append((channel.calling_aet, channel.abstract_syntax(message), message.field))
        channel.respond(message, msg.C_ECHO_RSP, status.SUCCESS)


@pytest.fixture
def echo_only(tmp_path) -> Iterator[tuple[AssociationRouter, Recorder]]:
    recorder = Recorder()
    table = ServiceTable(
        {
            msg.C_ECHO_RQ: Service(
                "C-ECHO",
                frozenset({VERIFICATION}),
                (EXPLICIT_LE, IMPLICIT_LE),
                recorder.echo,
                needs_dataset=False,
            )
        }
    )
    settings = Settings(data=tmp_path, host="127.0.0.1", dicom_port=0)
    router = AssociationRouter(("127.0.0.1", 0), LocalAE(settings, table))
    router.own_aets = {settings.aet}
    thread = threading.Thread(target=router.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield router, recorder
    finally:
        router.shutdown()
        router.server_close()
        thread.join(timeout=10)


def test_the_table_decides_negotiation_and_dispatch(
    echo_only: tuple[AssociationRouter, Recorder],
) -> None:
    router, recorder = echo_only
    ae = AE(ae_title="TABLE_SCU")
    ae.add_requested_context(Verification, [IMPLICIT_LE, EXPLICIT_LE])
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", router.server_address[1], ae_title="ISTHMUS")
    try:
        assert assoc.is_established
        accepted = {str(cx.abstract_syntax): cx for cx in assoc.accepted_contexts}
        # The first proposed transfer syntax the service accepts.
        assert accepted[VERIFICATION].transfer_syntax[0] == IMPLICIT_LE
        # No service serves C-FIND: its context is refused (abstract syntax not supported).
        assert str(StudyRootQueryRetrieveInformationModelFind) not in accepted
        answer = assoc.send_c_echo()
        assert int(answer.Status) == 0x0000
    finally:
        assoc.release()
    assert recorder.seen == [("TABLE_SCU", VERIFICATION, msg.C_ECHO_RQ)]


def request(field: int, dataset: memoryview | None = None) -> Message:
    return Message(1, {msg.COMMAND_FIELD: struct.pack("<H", field)}, dataset)


def test_lookup_by_command_field_sop_class_and_data_set() -> None:
    def handler(channel: Channel, message: Message) -> None:
        pass

    find = Service("C-FIND", frozenset({FIND}), (EXPLICIT_LE,), handler)
    echo = Service("C-ECHO", frozenset({VERIFICATION}), (IMPLICIT_LE,), handler, False)
    table = ServiceTable({msg.C_FIND_RQ: find, msg.C_ECHO_RQ: echo})
    assert table.service_for(request(msg.C_FIND_RQ, memoryview(b"x")), FIND) is find
    assert table.service_for(request(msg.C_FIND_RQ), FIND) is None  # no identifier
    assert table.service_for(request(msg.C_FIND_RQ, memoryview(b"x")), VERIFICATION) is None
    assert table.service_for(request(msg.C_ECHO_RQ), VERIFICATION) is echo
    assert table.service_for(request(msg.C_MOVE_RQ, memoryview(b"x")), FIND) is None
    assert table.transfer_syntaxes(FIND) == (EXPLICIT_LE,)
    assert table.transfer_syntaxes("1.2.3.999") == ()
