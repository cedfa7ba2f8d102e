"""Properties of the PS3.8 codec (issue 15): generated PDUs of every type round-trip
through encode and decode, and no byte string - random, truncated, mutated, with its
length field patched to match - makes decoding or validation raise anything but
PDUError (whose reason is an A-ABORT reason of PS3.8 table 9-26).

Budget: the Hypothesis profile (tests/conftest.py); `make fuzz` runs many more examples.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from isthmus.dicom.ul import pdata, pdu, validation
from isthmus.dicom.ul.errors import PDUError
from isthmus.testing.strategies import byte, mutated, pdus

ABORT_REASONS = {0, 1, 2, 4, 5, 6}


def decodes_or_refuses(data: bytes) -> None:
    """Decoding and validating `data` give a PDU or a PDUError with a PS3.8 reason."""
    for parse in (pdu.decode_pdu, validation.parse_pdu):
        try:
            parse(data)
        except PDUError as exc:
            assert exc.reason in ABORT_REASONS
    if data[:1] == b"\x01" and len(data) >= pdu.TITLES_END:
        try:
            pdu.parse_titles(data)
        except PDUError:
            pass


@given(pdus)
def test_every_pdu_round_trips(value: pdu.PDU) -> None:
    data = value.encode()
    assert pdu.pdu_length(data) == len(data) - pdu.PDU_HEADER
    assert pdu.decode_pdu(data) == value
    assert pdu.decode_pdu(memoryview(data)) == value


@given(st.binary(max_size=300))
@example(b"")
@example(b"\x01\x00\x00\x00\x00\x00")
@example(b"\x04\x00\xff\xff\xff\xff")
def test_arbitrary_bytes_decode_or_raise_pdu_error(data: bytes) -> None:
    decodes_or_refuses(data)


@given(st.sampled_from([1, 2, 3, 4, 5, 6, 7]), st.binary(max_size=300))
def test_any_body_under_a_known_header_decodes_or_raises_pdu_error(kind: int, body: bytes) -> None:
    decodes_or_refuses(pdu.header(kind, len(body)) + body)


@given(mutated())
def test_mutated_pdus_decode_or_raise_pdu_error(data: bytes) -> None:
    decodes_or_refuses(data)


@given(st.lists(st.tuples(st.integers(0, 4), byte, st.binary(max_size=12)), max_size=12))
def test_pdv_reassembly_of_any_fragments_raises_only_pdu_error(
    fragments: list[tuple[int, int, bytes]],
) -> None:
    assembler = pdata.Assembler()
    for context_id, control, data in fragments:
        try:
            whole = assembler.add(context_id, control, memoryview(data))
        except PDUError:
            assembler.reset()
            continue
        if whole is not None:
            if assembler.in_command and control & 1:
                assembler.expect_dataset()
            else:
                assembler.reset()


@given(
    st.binary(min_size=0, max_size=2000), st.integers(0, 4096).filter(lambda n: n == 0 or n >= 8)
)
def test_fragments_reassemble_to_the_payload(payload: bytes, max_length: int) -> None:
    parts = list(pdata.fragment(3, payload, False, max_length))
    pdus_ = [bytes(parts[i]) + bytes(parts[i + 1]) for i in range(0, len(parts), 2)]
    assembler = pdata.Assembler()
    assembler.context_id, out = 3, None
    assembler.expect_dataset()
    for data in pdus_:
        if max_length:
            assert len(data) - pdu.PDU_HEADER <= max_length
        for fragment in pdata.split_pdvs(memoryview(data)[pdu.PDU_HEADER :]):
            out = assembler.add(*fragment)
    assert out is not None and bytes(out) == payload
