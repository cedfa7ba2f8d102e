"""Decoding one frame to a numpy array with pydicom's pixel decoders (and pylibjpeg plugins).

Native frames come from `native.native_frame` (already little endian), compressed ones from
`encapsulation.encapsulated_frame`; either is handed to pydicom's Decoder for its transfer
syntax with the Image Pixel module of the header, so a frame is decoded without parsing or
decoding the rest of the file.  One sample per pixel of native integer data (CT, MR, CR:
what is rendered most) needs no decoder: it is viewed as an array of its type, which took
a fifth of the time pydicom's Decoder does for a 512×512 frame (its set-up and checks).
"""

from __future__ import annotations

import numpy as np
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID, ExplicitVRLittleEndian

from isthmus.render.encapsulation import encapsulated_frame
from isthmus.render.errors import DecodeError
from isthmus.render.native import native_frame
from isthmus.render.pixel_data import PixelData


def can_decode(transfer_syntax: str) -> bool:
    """True when pixel data in this transfer syntax can be decoded here."""
    ts = UID(transfer_syntax)
    if not ts.is_transfer_syntax:
        return False
    if not ts.is_compressed:
        return True
    try:
        return get_decoder(ts).is_available
    except NotImplementedError:
        return False


def stored_frame(pixels: PixelData, index: int) -> bytes:
    """Frame `index` as stored: little-endian native bytes, or the compressed bitstream."""
    if pixels.encapsulated:
        return encapsulated_frame(pixels, index)
    return native_frame(pixels, index)


def decode_frame(
    pixels: PixelData, index: int, as_rgb: bool = True, correct_unused_bits: bool = True
) -> tuple[np.ndarray, str]:
    """Frame `index` (0-based) as an array (rows, columns[, samples]) and its photometric
    interpretation after decoding (e.g. RGB for a YBR_FULL_422 JPEG).

    With `as_rgb` YBR_FULL and YBR_FULL_422 are converted to RGB (PS3.3 C.7.6.3.1.2), as
    pydicom does when it decompresses; Bits Allocated 1 is unpacked to one uint8 per pixel.
    Native values are cut to Bits Stored (sign-extended when Pixel Representation is 1,
    PS3.5 8.1.1) unless `correct_unused_bits` is False: for a caller that reads only
    those bits itself, the unused high bits are then left as stored.
    """
    data = stored_frame(pixels, index)
    if not pixels.encapsulated and _plain_integers(pixels):
        return _native_array(data, pixels, correct_unused_bits), pixels.photometric_interpretation
    ts = UID(pixels.transfer_syntax)
    if pixels.encapsulated:
        if not can_decode(ts):
            raise DecodeError(f"no decoder here for {ts.name} ({ts})")
        source = encapsulate([data], has_bot=False)
    else:
        ts, source = ExplicitVRLittleEndian, data
    try:
        # pydicom annotates **kwargs as DecodeOptions, meaning each value; it means
        # Unpack[DecodeOptions], which decode_options() is.
        array, info = get_decoder(ts).as_array(
            source,
            raw=not as_rgb,
            **pixels.decode_options(),  # type: ignore[arg-type]
        )
    except Exception as exc:  # decoders raise RuntimeError/ValueError with their reasons
        name = UID(pixels.transfer_syntax).name
        raise DecodeError(
            f"frame {index + 1} cannot be decoded ({name}): {_first_line(exc)}"
        ) from exc
    return array, str(info.get("photometric_interpretation", pixels.photometric_interpretation))


def _plain_integers(pixels: PixelData) -> bool:
    """One sample per pixel of whole-byte integers, Bits Stored within Bits Allocated."""
    return (
        pixels.samples_per_pixel == 1
        and pixels.pixel_keyword == "PixelData"
        and pixels.bits_allocated in (8, 16, 32)
        and 1 <= pixels.bits_stored <= pixels.bits_allocated
        and pixels.photometric_interpretation != "YBR_FULL_422"  # 2 samples stored per pixel
    )


def _native_array(data: bytes, pixels: PixelData, correct_unused_bits: bool) -> np.ndarray:
    """The frame's little-endian bytes (native.native_frame) as (rows, columns) integers
    of the stored type; the same values pydicom's native decoder gives."""
    kind = "i" if pixels.pixel_representation == 1 else "u"
    words = np.frombuffer(data, dtype=f"<{kind}{pixels.bits_allocated // 8}")
    array: np.ndarray = words.reshape(pixels.rows, pixels.columns)
    unused = pixels.bits_allocated - pixels.bits_stored
    if unused and correct_unused_bits:  # shifts of the signed type extend the sign
        array = np.right_shift(np.left_shift(array, unused), unused)
    return array


def little_endian_bytes(array: np.ndarray) -> bytes:
    """The array's values as little-endian bytes, samples interleaved (planar configuration 0)."""
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:3])[:300] or type(exc).__name__
