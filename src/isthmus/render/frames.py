"""WADO-RS frame retrieval: frames of an instance, as stored or decoded (PS3.18 10.4.1.1.5).

    get_frames(part10, [1, 3])                        # as stored
    get_frames(part10, [1], "1.2.840.10008.1.2.1")    # decoded, raw little-endian bytes
    get_frames_at(file_reader(fh), row.pixel_offset, [1])   # only header + frame are read

As stored (transfer syntax None or "*"): a native frame is its raw bytes, little endian
(`application/octet-stream`, PS3.18 8.7.3.3.2); an encapsulated frame is its compressed
bitstream (fragments joined, PS3.5 A.4) in the media type of PS3.18 Table 8.7.3-5.

Native frames are sliced from the stored bytes, never decoded.  Decoded frames use pydicom's
decoders; YBR_FULL/YBR_FULL_422 come out as RGB, samples interleaved, exactly the pixel data a
transcode to Explicit VR Little Endian would hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import uid

from isthmus.render.decode import decode_frame, little_endian_bytes, stored_frame
from isthmus.render.encode import can_encode, encode_frame
from isthmus.render.errors import FrameNotFound, TranscodeError
from isthmus.render.media import OCTET_STREAM, media_type_for
from isthmus.render.pixel_data import PixelData, Read, open_at, open_part10

__all__ = ["Frame", "FrameNotFound", "get_frames", "get_frames_at", "frames_of"]

EXPLICIT_LE = str(uid.ExplicitVRLittleEndian)
# Requests that mean "raw little-endian bytes": the octet-stream syntax, and its implicit twin
# (identical pixel bytes).
NATIVE_REQUESTS = (EXPLICIT_LE, str(uid.ImplicitVRLittleEndian))


@dataclass
class Frame:
    """One frame as sent in a WADO-RS frames response part."""

    data: bytes
    media_type: str  # application/octet-stream, image/jpeg, image/jls, image/jp2, ...
    transfer_syntax: str  # the transfer-syntax parameter of the part (PS3.18 8.7.3.5.2)


def get_frames(
    part10: bytes | bytearray | memoryview, numbers: list[int], transfer_syntax: str | None = None
) -> list[Frame]:
    """Frames `numbers` (1-based) of a Part 10 file held in memory.

    Raises FrameNotFound for a number outside 1..Number of Frames, NoPixelData, DecodeError,
    TranscodeError when `transfer_syntax` cannot be produced.
    """
    return frames_of(open_part10(part10), numbers, transfer_syntax)


def get_frames_at(
    read: Read, pixel_offset: int, numbers: list[int], transfer_syntax: str | None = None
) -> list[Frame]:
    """Like get_frames, reading only the header and the frames through `read(offset, length)`.

    `pixel_offset` is InstanceRow.pixel_offset (None for deflated files: use get_frames).
    """
    return frames_of(open_at(read, pixel_offset), numbers, transfer_syntax)


def frames_of(
    pixels: PixelData, numbers: list[int], transfer_syntax: str | None = None
) -> list[Frame]:
    """Frames of located pixel data; every number is checked before any work is done."""
    if not numbers:
        raise FrameNotFound("no frame numbers given")
    indices = [pixels.check_frame(number) for number in numbers]
    target = _target(pixels, transfer_syntax)
    return [_frame(pixels, index, target) for index in indices]


def _target(pixels: PixelData, requested: str | None) -> str:
    """The transfer syntax frames will be sent in (PS3.18 8.7.3.5.2: '*' = as stored)."""
    if requested in (None, "*", ""):
        return pixels.transfer_syntax if pixels.encapsulated else EXPLICIT_LE
    if requested in NATIVE_REQUESTS:
        return EXPLICIT_LE
    ts = uid.UID(requested)
    if not ts.is_transfer_syntax or not ts.is_compressed:
        raise TranscodeError(
            f"frames cannot be sent in {requested}: frames are native little "
            f"endian ({EXPLICIT_LE}) or a compressed bitstream"
        )
    if requested == pixels.transfer_syntax:
        return requested
    if not can_encode(requested):
        raise TranscodeError(
            f"frames cannot be encoded in {ts.name} here; ask for "
            f"{EXPLICIT_LE} or '*' (stored as {pixels.transfer_syntax})"
        )
    return requested


def _frame(pixels: PixelData, index: int, target: str) -> Frame:
    if target == EXPLICIT_LE:
        if not pixels.encapsulated:
            return Frame(stored_frame(pixels, index), OCTET_STREAM, EXPLICIT_LE)
        array, _ = decode_frame(pixels, index)
        return Frame(little_endian_bytes(array), OCTET_STREAM, EXPLICIT_LE)
    if target == pixels.transfer_syntax:
        return Frame(stored_frame(pixels, index), media_type_for(target), target)
    array, photometric = decode_frame(pixels, index)
    return Frame(encode_frame(array, pixels, photometric, target), media_type_for(target), target)
