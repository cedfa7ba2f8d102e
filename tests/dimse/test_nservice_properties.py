"""Properties of the DIMSE-N services (MPPS, UPS, Storage Commitment) against generated and
damaged requests.

Each request is an N-CREATE, N-SET, N-GET or N-ACTION on one of the workflow SOP classes,
with any Action Type, on a known or unknown instance, with a data set built element by
element (the attributes these services read, with any value, in any VR, maybe damaged).
The answer must be the response of that command with a status the standard defines for
it (success, a 0xB3xx warning, or a failure of the 0x01xx, 0x02xx, 0xA9xx, 0xC0xx or 0xC3xx
families); the association goes on serving; every work item keeps a state of the UPS
state machine.  Budget: the Hypothesis profile (tests/conftest.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from isthmus.server import Node

from .support import dicom_node
from .test_acceptor_protocol import (
    EXPLICIT_LE,
    IMPLICIT_LE,
    VERIFICATION,
    RawAssociation,
    command,
    p_data,
    pdv,
)
from .test_scp_properties import A_RELEASE_RP, echo_still_answered, element, padded, send_message

MPPS = "1.2.840.10008.3.1.2.3.3"
UPS_PUSH, UPS_WATCH, UPS_PULL = (f"1.2.840.10008.5.1.4.34.6.{n}" for n in (1, 2, 3))
COMMITMENT = "1.2.840.10008.1.20.1"
CLASSES = [MPPS, UPS_PUSH, UPS_WATCH, UPS_PULL, COMMITMENT]
CONTEXTS = [(1, VERIFICATION, [IMPLICIT_LE])]
CONTEXTS += [(3 + 2 * i, sop_class, [EXPLICIT_LE]) for i, sop_class in enumerate(CLASSES)]
N_CREATE, N_SET, N_GET, N_ACTION = 0x0140, 0x0120, 0x0110, 0x0130
ROOT = "1.2.826.0.1.3680043.10.1386.16"

# attribute (tag, VR) the services read, and values to try in each
FIELDS = [
    (0x00400252, b"CS", [b"IN PROGRESS", b"COMPLETED", b"DISCONTINUED", b"", b"BOGUS"]),
    (0x00741000, b"CS", [b"SCHEDULED", b"IN PROGRESS", b"COMPLETED", b"CANCELED", b"X"]),
    (0x00081195, b"UI", [f"{ROOT}.7".encode(), b"", b"not a uid"]),
    (0x00741234, b"AE", [b"SOMEONE", b"", b"A" * 20]),
    (0x00741230, b"CS", [b"TRUE", b"FALSE", b"MAYBE"]),
    (0x00404005, b"DT", [b"202601020930", b"tomorrow", b""]),
    (0x00741204, b"LO", [b"label", b""]),
    (0x00741200, b"CS", [b"HIGH", b"URGENT", b""]),
    (0x00404041, b"CS", [b"READY", b""]),
    (0x00400253, b"SH", [b"PPS1", b""]),
    (0x00400241, b"AE", [b"MOD", b""]),
    (0x00400244, b"DA", [b"20260102", b"2026"]),
    (0x00400245, b"TM", [b"0930", b"99"]),
    (0x00080060, b"CS", [b"CT", b""]),
    (0x00100020, b"LO", [b"P1", b""]),
]


@st.composite
def n_dataset(draw: st.DrawFn) -> bytes:
    parts = []
    for tag, vr, values in FIELDS:
        if draw(st.booleans()):
            value = draw(st.one_of(st.sampled_from(values), st.binary(max_size=10)))
            parts.append(element(tag, vr, padded(value, b"\0" if vr == b"UI" else b" "), True))
    if draw(st.booleans()):  # a sequence: Scheduled Step Attributes / Referenced SOP
        tag = draw(st.sampled_from([0x00400270, 0x00081199, 0x0040A370]))
        inner = element(0x0020000D, b"UI", padded(f"{ROOT}.8".encode(), b"\0"), True)
        inner += element(0x00081150, b"UI", padded(b"1.2.840.10008.5.1.4.1.1.2", b"\0"), True)
        inner += element(0x00081155, b"UI", padded(f"{ROOT}.9".encode(), b"\0"), True)
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
        parts.append(element(tag, b"SQ", item, True))
    data = bytearray(b"".join(parts))
    if data and draw(st.integers(0, 3)) == 0:  # damaged
        pos = draw(st.integers(0, len(data) - 1))
        data[pos:] = draw(st.binary(max_size=6))
    return bytes(data)


@pytest.fixture(scope="module")
def n_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with dicom_node(
        tmp_path_factory.mktemp("nprops"), pdu_timeout=5.0, network_timeout=10.0
    ) as node:
        yield node


def _defined(status: int) -> bool:
    return (
        status == 0x0000
        or 0xB300 <= status <= 0xB3FF
        or 0x0100 <= status <= 0x02FF
        or status & 0xFF00 in (0xA900, 0xC000, 0xC300)
    )


@given(
    context=st.integers(0, len(CLASSES) - 1),
    field=st.sampled_from([N_CREATE, N_SET, N_GET, N_ACTION]),
    action=st.integers(0, 6),
    instance=st.sampled_from([f"{ROOT}.1", f"{ROOT}.2", "1.2.840.10008.1.20.1.1", ""]),
    data=n_dataset(),
)
def test_any_n_request_gets_its_response_with_a_defined_status(
    n_node: Node, context: int, field: int, action: int, instance: str, data: bytes
) -> None:
    context_id, sop_class = 3 + 2 * context, CLASSES[context]
    fields: dict[str, object] = {"CommandField": field, "MessageID": 5}
    if field == N_CREATE:
        fields.update(AffectedSOPClassUID=sop_class)
        if instance:
            fields["AffectedSOPInstanceUID"] = instance
    else:
        fields.update(RequestedSOPClassUID=sop_class, RequestedSOPInstanceUID=instance or "1.2")
    if field == N_ACTION:
        fields["ActionTypeID"] = action
    has_data = field != N_GET
    fields["CommandDataSetType"] = 0x0000 if has_data else 0x0101
    assoc = RawAssociation(n_node, CONTEXTS)
    cmd = command(**fields)
    if has_data:
        send_message(assoc, context_id, cmd, data)
    else:
        assoc.sock.sendall(p_data(pdv(context_id, 3, cmd)))
    rsp, _data = assoc.message()
    assert rsp.CommandField == field | 0x8000
    assert rsp.MessageIDBeingRespondedTo == 5
    assert _defined(int(rsp.Status)), hex(int(rsp.Status))
    if sop_class == COMMITMENT and rsp.Status == 0x0000:  # then the result, to answer
        report, _info = assoc.message()
        assert (report.CommandField, report.EventTypeID) in ((0x0100, 1), (0x0100, 2))
        answer = command(
            AffectedSOPClassUID=COMMITMENT,
            CommandField=0x8100,
            MessageIDBeingRespondedTo=report.MessageID,
            CommandDataSetType=0x0101,
            Status=0,
        )
        assoc.sock.sendall(p_data(pdv(context_id, 3, answer)))
    echo_still_answered(assoc)
    assert assoc.release() == A_RELEASE_RP
    for item in n_node.archive.workitems.search({}):
        assert item["00741000"]["Value"][0] in ("SCHEDULED", "IN PROGRESS", "COMPLETED", "CANCELED")
