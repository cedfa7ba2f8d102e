"""Frames of native (uncompressed) pixel data, sliced from the stored bytes without decoding.

PS3.5 8.1.1: frames follow one another with no padding between them, so a frame starts at
bit (index × Rows × Columns × Samples × Bits Allocated); with Bits Allocated 1 that may fall
inside a byte.  The result is always little endian (PS3.18 8.7.3.3.2), in the stored Planar
Configuration.  Big endian data (PS3.5 A.3) is swapped: per pixel word for Bits Allocated > 8,
per 16-bit word when 8-bit or 1-bit data was encoded as OW.
"""

from __future__ import annotations

import numpy as np

from isthmus.render.errors import DecodeError
from isthmus.render.pixel_data import PixelData


def native_frame(pixels: PixelData, index: int) -> bytes:
    """The little-endian bytes of frame `index` (0-based), bit-packed if Bits Allocated is 1."""
    bits = pixels.frame_bits
    first_bit, end_bit = index * bits, (index + 1) * bits
    if end_bit > pixels.length * 8:
        raise DecodeError(
            f"pixel data is truncated: frame {index + 1} needs "
            f"{(end_bit + 7) // 8} bytes, the value has {pixels.length}"
        )
    word = _swap_word(pixels)
    start = first_bit // 8 // word * word  # whole words around the frame
    stop = -(-end_bit // (8 * word)) * word
    raw = pixels.read(pixels.offset + start, stop - start)
    if len(raw) < stop - start:
        raise DecodeError("pixel data is truncated: the file ends inside the pixel value")
    if word > 1:
        raw = np.frombuffer(raw, dtype=f">u{word}").astype(f"<u{word}").tobytes()
    shift = first_bit - start * 8
    if shift % 8 == 0 and bits % 8 == 0:
        return bytes(raw[shift // 8 : shift // 8 + bits // 8])
    return _bit_slice(raw, shift, bits)


def _swap_word(pixels: PixelData) -> int:
    """Bytes per word to reverse when the stored data is big endian; 1 = no swap."""
    if pixels.little_endian:
        return 1
    if pixels.bits_allocated > 8:
        return pixels.bits_allocated // 8
    return 2 if pixels.vr == "OW" else 1


def _bit_slice(raw: bytes | memoryview, first_bit: int, count: int) -> bytes:
    """`count` bits from `first_bit` on, repacked from bit 0 (DICOM packs LSB first)."""
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")
    return np.packbits(bits[first_bit : first_bit + count], bitorder="little").tobytes()
