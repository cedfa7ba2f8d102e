"""PDV fragmentation and reassembly (isthmus.dicom.ul.pdata, PS3.8 9.3.5, Annex E)."""

from __future__ import annotations

import struct

import pytest

from isthmus.dicom.ul import errors, pdata, pdu
from isthmus.dicom.ul.errors import PDUError


def pdus_of(context_id: int, payload: bytes, is_command: bool, max_length: int) -> list[bytes]:
    parts = list(pdata.fragment(context_id, payload, is_command, max_length))
    return [bytes(parts[i]) + bytes(parts[i + 1]) for i in range(0, len(parts), 2)]


@pytest.mark.parametrize("max_length", [8, 9, 100, 16384, 0])
def test_fragments_fit_the_receivers_maximum_length_and_are_even(max_length: int) -> None:
    payload = bytes(range(256)) * 20
    pdus = pdus_of(1, payload, False, max_length)
    joined = b""
    for n, data in enumerate(pdus):
        decoded = pdu.PDataTF.decode(data)
        (pdv,) = decoded.pdvs
        assert max_length == 0 or len(data) - 6 <= max_length
        assert len(pdv.data) % 2 == 0
        assert (pdv.context_id, pdv.is_command, pdv.is_last) == (1, False, n == len(pdus) - 1)
        joined += pdv.data
    assert joined == payload


def test_an_empty_payload_is_one_last_fragment() -> None:
    (data,) = pdus_of(3, b"", True, 16384)
    assert pdu.PDataTF.decode(data).pdvs == (pdu.PDV(3, 3, b""),)


def test_a_maximum_length_no_pdv_fits_in_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot carry a PDV"):
        list(pdata.fragment(1, b"abcd", True, 7))


def test_split_pdvs_returns_views_into_the_pdu_body() -> None:
    body = bytearray(struct.pack(">IBB", 4, 1, 3) + b"ab" + struct.pack(">IBB", 4, 1, 2) + b"cd")
    fragments = pdata.split_pdvs(memoryview(body), accepted={1})
    assert [(cid, control, bytes(v)) for cid, control, v in fragments] == [
        (1, 3, b"ab"),
        (1, 2, b"cd"),
    ]
    body[-1:] = b"X"
    assert bytes(fragments[1][2]) == b"cX"  # no copy was made


def test_split_pdvs_refuses_a_context_that_was_not_accepted() -> None:
    body = memoryview(struct.pack(">IBB", 4, 5, 3) + b"ab")
    with pytest.raises(PDUError, match=r"context \[5\] that was not accepted"):
        pdata.split_pdvs(body, accepted={1, 3})


def feed(assembler: pdata.Assembler, *fragments: tuple[int, int, bytes]) -> list[bytes]:
    done = []
    for cid, control, data in fragments:
        out = assembler.add(cid, control, memoryview(data))
        if out is not None:
            done.append(bytes(out))
            if assembler.in_command:
                assembler.expect_dataset()
            else:
                assembler.reset()
    return done


def test_the_assembler_joins_command_then_data_set_fragments() -> None:
    assembler = pdata.Assembler()
    done = feed(assembler, (1, 1, b"co"), (1, 3, b"mm"), (1, 0, b"da"), (1, 0, b"t"), (1, 2, b"a"))
    assert done == [b"comm", b"data"]
    assert assembler.context_id is None


def test_a_single_fragment_is_handed_on_without_a_copy() -> None:
    buf = bytearray(b"whole")
    view = memoryview(buf)
    assert pdata.Assembler().add(1, 3, view) is view


@pytest.mark.parametrize(
    "fragments, message",
    [
        ([(1, 0, b"data")], "dataset before command"),
        ([(1, 1, b"co"), (3, 3, b"mm")], "context changed mid-message"),
        ([(1, 1, b"co"), (1, 2, b"da")], "command and dataset interleaved"),
        ([(1, 3, b"comm"), (1, 3, b"again")], "command and dataset interleaved"),
    ],
    ids=["data-set-first", "context-change", "data-in-command", "command-in-data-set"],
)
def test_out_of_order_fragments_are_an_unexpected_parameter(
    fragments: list[tuple[int, int, bytes]], message: str
) -> None:
    with pytest.raises(PDUError, match=message) as caught:
        feed(pdata.Assembler(), *fragments)
    assert caught.value.reason == errors.UNEXPECTED_PARAMETER
