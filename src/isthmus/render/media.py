"""Media types of pixel data and frames, per transfer syntax (PS3.18 8.7.3.3.2, Table 8.7.3-5).

An uncompressed frame is `application/octet-stream` whose transfer syntax is always Explicit
VR Little Endian (PS3.18 8.7.3.3.2: native frames are little endian raw bytes).  A compressed
frame is sent as its bitstream in the media type of its transfer syntax.
"""

from __future__ import annotations

from pydicom import uid

OCTET_STREAM = "application/octet-stream"

# PS3.18 Table 8.7.3-5; the first syntax listed for a media type is its default.
_BY_MEDIA_TYPE: dict[str, tuple[str, ...]] = {
    "image/jpeg": (
        uid.JPEGBaseline8Bit,
        uid.JPEGExtended12Bit,
        uid.JPEGLossless,
        uid.JPEGLosslessSV1,
    ),
    "image/dicom-rle": (uid.RLELossless,),
    "image/jls": (uid.JPEGLSLossless, uid.JPEGLSNearLossless),
    "image/jp2": (uid.JPEG2000Lossless, uid.JPEG2000),
    "image/jpx": (uid.JPEG2000MCLossless, uid.JPEG2000MC),
    "image/jphc": (uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL, uid.HTJ2K),
    "video/mpeg2": (uid.MPEG2MPML, uid.MPEG2MPMLF, uid.MPEG2MPHL, uid.MPEG2MPHLF),
    "video/mp4": (
        uid.MPEG4HP41,
        uid.MPEG4HP41F,
        uid.MPEG4HP41BD,
        uid.MPEG4HP41BDF,
        uid.MPEG4HP422D,
        uid.MPEG4HP422DF,
        uid.MPEG4HP423D,
        uid.MPEG4HP423DF,
        uid.MPEG4HP42STEREO,
        uid.MPEG4HP42STEREOF,
        uid.HEVCMP51,
        uid.HEVCM10P51,
    ),
}

# Older drafts of PS3.18 used experimental names; clients still send them.
ALIASES = {"image/x-dicom-rle": "image/dicom-rle", "image/x-jls": "image/jls"}

_BY_SYNTAX = {str(ts): media for media, syntaxes in _BY_MEDIA_TYPE.items() for ts in syntaxes}


def media_type_for(transfer_syntax: str) -> str:
    """The media type of one frame stored in `transfer_syntax` (octet-stream if native)."""
    return _BY_SYNTAX.get(str(transfer_syntax), OCTET_STREAM)


def transfer_syntaxes_for(media_type: str) -> tuple[str, ...]:
    """Transfer syntaxes a media type may carry, default first (PS3.18 8.7.3.5.2).

    `application/octet-stream` carries only Explicit VR Little Endian.  Unknown → ().
    """
    media_type = ALIASES.get(media_type.lower(), media_type.lower())
    if media_type == OCTET_STREAM:
        return (str(uid.ExplicitVRLittleEndian),)
    return tuple(str(ts) for ts in _BY_MEDIA_TYPE.get(media_type, ()))


def default_transfer_syntax(media_type: str) -> str | None:
    """The transfer syntax used when a request names the media type but no syntax."""
    syntaxes = transfer_syntaxes_for(media_type)
    return syntaxes[0] if syntaxes else None
