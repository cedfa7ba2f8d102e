"""Encoding decoded frames into a compressed transfer syntax with pydicom's encoders.

Only lossless encodings are offered (PS3.5 8.2): re-encoding must not lose information, and
a lossy result would need a new SOP Instance UID (PS3.3 C.7.6.1.1.5).  pydicom encodes RLE
Lossless natively; JPEG-LS Lossless needs pyjpegls and JPEG 2000 Lossless pylibjpeg-openjpeg.
"""

from __future__ import annotations

import numpy as np
from pydicom import uid
from pydicom.pixels.encoders.base import get_encoder

from isthmus.render.errors import TranscodeError
from isthmus.render.pixel_data import PixelData

LOSSLESS_ENCODINGS = (str(uid.RLELossless), str(uid.JPEGLSLossless), str(uid.JPEG2000Lossless))


def can_encode(transfer_syntax: str) -> bool:
    """True when frames can be encoded losslessly into this transfer syntax here."""
    if str(transfer_syntax) not in LOSSLESS_ENCODINGS:
        return False
    try:
        return get_encoder(transfer_syntax).is_available
    except (NotImplementedError, ValueError):
        return False


def encode_frame(
    array: np.ndarray, pixels: PixelData, photometric: str, transfer_syntax: str
) -> bytes:
    """One frame's compressed bitstream in `transfer_syntax` (samples interleaved), as
    bytes: the JPEG-LS encoder gives a bytearray, which a response cannot send as is."""
    if not can_encode(transfer_syntax):
        raise TranscodeError(f"cannot encode {uid.UID(transfer_syntax).name} here")
    try:
        encoded = get_encoder(transfer_syntax).encode(
            array,
            rows=pixels.rows,
            columns=pixels.columns,
            samples_per_pixel=pixels.samples_per_pixel,
            bits_allocated=pixels.bits_allocated,
            bits_stored=pixels.bits_stored,
            pixel_representation=pixels.pixel_representation,
            photometric_interpretation=photometric,
            planar_configuration=0,
            number_of_frames=1,
        )
    except Exception as exc:  # encoders refuse layouts they cannot handle
        raise TranscodeError(
            f"{uid.UID(transfer_syntax).name} cannot encode this image: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    return bytes(encoded)
