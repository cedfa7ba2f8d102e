"""Transfer syntaxes the archive keeps as sent (PS3.5 Section 10 and Annex A)."""

from __future__ import annotations

import functools
import re

from pydicom import uid

IMPLICIT_VR_LITTLE_ENDIAN = uid.ImplicitVRLittleEndian
EXPLICIT_VR_LITTLE_ENDIAN = uid.ExplicitVRLittleEndian
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = uid.DeflatedExplicitVRLittleEndian
EXPLICIT_VR_BIG_ENDIAN = uid.ExplicitVRBigEndian

UNCOMPRESSED = (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN)

# Everything pydicom knows that is a dataset encoding: uncompressed, deflate, JPEG family,
# JPEG-LS, JPEG 2000, HTJ2K, RLE, MPEG/HEVC video, JPIP.  Stored byte for byte.
STORABLE: tuple[str, ...] = tuple(str(ts) for ts in uid.AllTransferSyntaxes)

# Syntaxes whose instances carry no Pixel Data of their own (PS3.5 Annex A): JPIP
# Referenced (a Pixel Data Provider URL instead) and SMPTE ST 2110 (DICOM-RTV streams);
# whether pixel data is encapsulated is not theirs to say.
WITHOUT_PIXEL_DATA = frozenset(
    {
        "1.2.840.10008.1.2.4.94",
        "1.2.840.10008.1.2.4.95",
        "1.2.840.10008.1.2.4.204",
        "1.2.840.10008.1.2.4.205",
        "1.2.840.10008.1.2.7.1",
        "1.2.840.10008.1.2.7.2",
        "1.2.840.10008.1.2.7.3",
    }
)

# Order in which we propose/accept syntaxes for uncompressed data.
PREFERRED_UNCOMPRESSED = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)


@functools.lru_cache(maxsize=256)  # a handful of syntaxes, asked once per instance
def is_encapsulated(transfer_syntax: str) -> bool:
    """True when pixel data is encapsulated (compressed) in this syntax (PS3.5 A.4)."""
    return uid.UID(transfer_syntax).is_encapsulated


@functools.lru_cache(maxsize=256)
def encoding(transfer_syntax: str) -> tuple[bool, bool, bool]:
    """(implicit VR, little endian, deflated) of a transfer syntax (remembered: building
    pydicom's UID validates it with regular expressions, on every instance received)."""
    ts = uid.UID(transfer_syntax)
    if not ts.is_transfer_syntax:
        raise ValueError(f"{transfer_syntax} is not a known transfer syntax")
    return ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated


_UID_CHARACTERS = re.compile(r"^[0-9.]{1,64}$")


def looks_like_uid(value: str) -> bool:
    """Digits and dots, 1-64 characters (PS3.5 9.1): what a UID may hold at all."""
    return bool(_UID_CHARACTERS.match(value))
