"""Reading PDUs from TCP (isthmus.dicom.ul.transport, PS3.8 9.1, 9.3.1)."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from isthmus.dicom.ul import errors, pdu, transport
from isthmus.dicom.ul.errors import PDUError


def test_the_blocking_reader_returns_type_and_body() -> None:
    a, b = socket.socketpair()
    with a, b:
        transport.send_all(a, [pdu.RELEASE_RQ[:3], memoryview(pdu.RELEASE_RQ)[3:]])
        assert transport.read_pdu(b) == (pdu.A_RELEASE_RQ, bytearray(4))


def test_an_absurd_length_is_refused_before_the_body_is_read() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"\x04\x00\xff\xff\xff\xf0")  # 4 GB promised, nothing follows
        with pytest.raises(PDUError, match="exceeds the limit") as caught:
            transport.read_pdu(b, limit=1 << 20)
    assert caught.value.reason == errors.INVALID_PARAMETER


def test_an_unknown_pdu_type_is_unrecognized() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"\x09\x00\x00\x00\x00\x00")
        with pytest.raises(PDUError) as caught:
            transport.read_pdu(b)
    assert caught.value.reason == errors.UNRECOGNIZED_PDU


def test_the_blocking_reader_raises_eof_when_the_peer_closes_mid_pdu() -> None:
    a, b = socket.socketpair()
    with b:
        a.sendall(pdu.RELEASE_RQ[:8])
        a.close()
        with pytest.raises(EOFError):
            transport.read_pdu(b)


def p_data(size: int, fill: int) -> bytes:
    """A P-DATA-TF PDU whose body is `size` bytes of `fill`."""
    return bytes([pdu.P_DATA_TF, 0]) + size.to_bytes(4, "big") + bytes([fill]) * size


def test_the_read_ahead_reader_hands_out_every_pdu_that_arrived_together() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(p_data(100, 1) + p_data(50, 2) + pdu.RELEASE_RQ)
        reader = transport.PDUReader(b)
        first = reader.read()
        assert reader.pending() == 56 + len(pdu.RELEASE_RQ)
        second = reader.read()
        assert reader.read() == (pdu.A_RELEASE_RQ, bytearray(4))
        assert reader.pending() == 0
        # the first PDU's body is still intact after the others were read
        assert first == (pdu.P_DATA_TF, bytes([1]) * 100)
        assert second == (pdu.P_DATA_TF, bytes([2]) * 50)


def test_the_read_ahead_reader_completes_a_pdu_longer_than_what_arrived() -> None:
    a, b = socket.socketpair()
    with a, b:
        big = p_data(3 * transport.READ_AHEAD + 7, 3)
        reader = transport.PDUReader(b)
        a.sendall(big[:10])  # the header and a few bytes, then the rest with the next PDU
        sender = threading.Thread(target=a.sendall, args=(big[10:] + p_data(5, 4),))
        sender.start()
        kind, body = reader.read(timeout=30)
        sender.join()
        assert (kind, bytes(body)) == (pdu.P_DATA_TF, big[6:])
        assert reader.read(timeout=30) == (pdu.P_DATA_TF, bytes([4]) * 5)


def test_the_read_ahead_reader_refuses_and_times_out_as_read_pdu_does() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"\x04\x00\xff\xff\xff\xf0")
        with pytest.raises(PDUError, match="exceeds the limit"):
            transport.PDUReader(b).read(limit=1 << 20)
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(30)
        a.sendall(p_data(100, 1)[:20])  # a PDU begun and never finished
        with pytest.raises(transport.PDUTimeout):
            transport.PDUReader(b).read(timeout=0.2)
        assert b.gettimeout() == 30  # the idle timeout is back
    a, b = socket.socketpair()
    with b:
        a.sendall(p_data(100, 1)[:20])
        a.close()
        with pytest.raises(EOFError):
            transport.PDUReader(b).read()


def read_async(data: bytes, limit: int = 1 << 20) -> bytes | None:
    async def run() -> bytes | None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await transport.read_pdu_async(reader, limit)

    return asyncio.run(run())


def test_the_asyncio_reader_returns_the_whole_pdu_or_none_at_a_clean_end() -> None:
    assert read_async(pdu.RELEASE_RP + pdu.RELEASE_RQ) == pdu.RELEASE_RP
    assert read_async(b"") is None


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x05\x00\x00", "inside a PDU header"),
        (pdu.RELEASE_RQ[:8], "inside a PDU"),
        (b"\x04\x00\x00\x10\x00\x00", "exceeds the limit of 4096"),
        (b"\x0a\x00\x00\x00\x00\x00", "unknown PDU type 0x0A"),
    ],
)
def test_the_asyncio_reader_refuses_what_the_blocking_one_refuses(
    data: bytes, message: str
) -> None:
    with pytest.raises(PDUError, match=message):
        read_async(data, limit=4096)
