"""Media types of frames per transfer syntax (PS3.18 Table 8.7.3-5; isthmus.render.media)."""

from __future__ import annotations

import pytest
from pydicom import uid

from isthmus.render.media import default_transfer_syntax, media_type_for, transfer_syntaxes_for


@pytest.mark.parametrize(
    "ts, media_type",
    [
        (uid.ExplicitVRLittleEndian, "application/octet-stream"),
        (uid.ImplicitVRLittleEndian, "application/octet-stream"),
        (uid.JPEGBaseline8Bit, "image/jpeg"),
        (uid.JPEGLosslessSV1, "image/jpeg"),
        (uid.JPEGLSNearLossless, "image/jls"),
        (uid.JPEG2000, "image/jp2"),
        (uid.JPEG2000MCLossless, "image/jpx"),
        (uid.HTJ2KLossless, "image/jphc"),
        (uid.RLELossless, "image/dicom-rle"),
        (uid.MPEG4HP41, "video/mp4"),
        (uid.MPEG2MPML, "video/mpeg2"),
    ],
)
def test_each_transfer_syntax_has_its_media_type(ts: str, media_type: str) -> None:
    assert media_type_for(ts) == media_type


def test_octet_stream_carries_only_explicit_little_endian() -> None:
    assert transfer_syntaxes_for("application/octet-stream") == (uid.ExplicitVRLittleEndian,)


@pytest.mark.parametrize(
    "media_type, default",
    [
        ("image/jpeg", uid.JPEGBaseline8Bit),
        ("image/jls", uid.JPEGLSLossless),
        ("image/jp2", uid.JPEG2000Lossless),
        ("image/jphc", uid.HTJ2KLossless),
        ("image/dicom-rle", uid.RLELossless),
        ("image/x-dicom-rle", uid.RLELossless),
        ("IMAGE/X-JLS", uid.JPEGLSLossless),
        ("image/tiff", None),
    ],
)
def test_a_media_type_names_its_default_transfer_syntax(media_type: str, default) -> None:
    assert default_transfer_syntax(media_type) == default
