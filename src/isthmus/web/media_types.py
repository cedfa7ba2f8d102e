"""The media types DICOMweb uses and how they pair with transfer syntaxes.

PS3.18 8.7.3 (Tables 8.7.3-2, 8.7.3-4 and 8.7.3-5): instances travel as
`application/dicom` in any transfer syntax; pixel data travels uncompressed as
`application/octet-stream` (Explicit VR Little Endian byte order) or compressed in
the media type of its codec, one frame per part.
"""

from __future__ import annotations

from pydicom import uid

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"
JSON = "application/json"
OCTET_STREAM = "application/octet-stream"
MULTIPART_RELATED = "multipart/related"
WADL = "application/vnd.sun.wadl+xml"
JPEG, PNG, GIF = "image/jpeg", "image/png", "image/gif"

EXPLICIT_VR_LE = str(uid.ExplicitVRLittleEndian)
ANY_SYNTAX = "*"

# Compressed pixel data: transfer syntax → media type (PS3.18 Table 8.7.3-5).
PIXEL_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.4.100": "video/mpeg",
    "1.2.840.10008.1.2.4.101": "video/mpeg",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",
    "1.2.840.10008.1.2.4.107": "video/H265",
    "1.2.840.10008.1.2.4.108": "video/H265",
}

# The default transfer syntax of each compressed media type ("D" in Table 8.7.3-5).
DEFAULT_SYNTAX: dict[str, str] = {
    "image/jpeg": "1.2.840.10008.1.2.4.70",
    "image/dicom-rle": "1.2.840.10008.1.2.5",
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/jpx": "1.2.840.10008.1.2.4.92",
    "image/jphc": "1.2.840.10008.1.2.4.201",
    "video/mpeg": "1.2.840.10008.1.2.4.100",
    "video/mp4": "1.2.840.10008.1.2.4.102",
    "video/H265": "1.2.840.10008.1.2.4.107",
    OCTET_STREAM: EXPLICIT_VR_LE,
}


def pixel_media_type(transfer_syntax: str) -> str:
    """Media type of one frame of pixel data stored in `transfer_syntax`."""
    return PIXEL_MEDIA_TYPES.get(transfer_syntax, OCTET_STREAM)


def syntaxes_of(media_type: str) -> tuple[str, ...]:
    """Transfer syntaxes whose frames travel as `media_type`."""
    if media_type == OCTET_STREAM:
        return (EXPLICIT_VR_LE,)
    return tuple(ts for ts, mt in PIXEL_MEDIA_TYPES.items() if mt.lower() == media_type.lower())


LOSSY_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.93",
        "1.2.840.10008.1.2.4.203",
        *(ts for ts, mt in PIXEL_MEDIA_TYPES.items() if mt.startswith("video/")),
    }
)


def is_lossy(transfer_syntax: str) -> bool:
    """True for syntaxes whose pixels may be lossy: PS3.18 8.7.3 lets them keep their
    encoding when no transfer syntax is asked for (decoding would not restore them)."""
    return transfer_syntax in LOSSY_SYNTAXES
