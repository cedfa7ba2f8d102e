"""Decoding one frame to a numpy array with pydicom's pixel decoders (and pylibjpeg plugins).

Native frames come from `native.native_frame` (already little endian), compressed ones from
`encapsulation.encapsulated_frame`; either is handed to pydicom's Decoder for its transfer
syntax with the Image Pixel module of the header, so a frame is decoded without parsing or
decoding the rest of the file.
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


def decode_frame(pixels: PixelData, index: int, as_rgb: bool = True) -> tuple[np.ndarray, str]:
    """Frame `index` (0-based) as an array (rows, columns[, samples]) and its photometric
    interpretation after decoding (e.g. RGB for a YBR_FULL_422 JPEG).

    With `as_rgb` YBR_FULL and YBR_FULL_422 are converted to RGB (PS3.3 C.7.6.3.1.2), as
    pydicom does when it decompresses; Bits Allocated 1 is unpacked to one uint8 per pixel.
    """
    data = stored_frame(pixels, index)
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


def little_endian_bytes(array: np.ndarray) -> bytes:
    """The array's values as little-endian bytes, samples interleaved (planar configuration 0)."""
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:3])[:300] or type(exc).__name__
