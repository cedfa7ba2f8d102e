"""Transcoding Part 10 files between transfer syntaxes (isthmus.render.transcode)."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import uid
from tests.render.conftest import bundled, decodable_files, pixel_array, read

from isthmus.render import PixelDataError, TranscodeError, can_transcode, transcode

NATIVE = [
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.DeflatedExplicitVRLittleEndian,
]
LOSSLESS = [uid.RLELossless, uid.JPEGLSLossless, uid.JPEG2000Lossless]


def assert_same_instance(result: bytes, source: bytes, target: str) -> None:
    out, original = read(result), read(source)
    assert out.file_meta.TransferSyntaxUID == target
    assert out.SOPInstanceUID == original.SOPInstanceUID
    if result != source:  # a new file meta names the instance of the dataset
        assert out.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
    assert result[128:132] == b"DICM"


@pytest.mark.parametrize("name", decodable_files())
def test_every_decodable_file_becomes_explicit_le_with_the_same_pixels(name: str) -> None:
    source = bundled(name)
    result = transcode(source, uid.ExplicitVRLittleEndian)
    assert_same_instance(result, source, uid.ExplicitVRLittleEndian)
    np.testing.assert_array_equal(pixel_array(result), pixel_array(source))


@pytest.mark.parametrize("target", NATIVE)
@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "image_dfl.dcm",
        "rtdose_expb.dcm",
        "liver_expb_1frame.dcm",
        "SC_rgb_small_odd_big_endian.dcm",
        "ExplVR_BigEnd.dcm",
        "examples_palette.dcm",
        "examples_overlay.dcm",
    ],
)
def test_native_syntaxes_convert_into_each_other(name: str, target: str) -> None:
    source = bundled(name)
    result = transcode(source, target)
    assert_same_instance(result, source, target)
    np.testing.assert_array_equal(pixel_array(result), pixel_array(source))
    back = transcode(result, uid.ExplicitVRLittleEndian)
    original, returned = read(transcode(source, uid.ExplicitVRLittleEndian)), read(back)
    assert [e.tag for e in returned] == [e.tag for e in original]
    assert all(returned[e.tag].value == e.value for e in original if e.VR != "SQ")


def test_lookup_table_data_is_byte_swapped_for_big_endian() -> None:
    """Palette LUT Data is OW: in big endian each 16-bit entry is stored high byte first."""
    source = bundled("examples_palette.dcm")
    big, original = read(transcode(source, uid.ExplicitVRBigEndian)), read(source)
    for keyword in ("RedPaletteColorLookupTableData", "BluePaletteColorLookupTableData"):
        np.testing.assert_array_equal(
            np.frombuffer(big[keyword].value, ">u2"), np.frombuffer(original[keyword].value, "<u2")
        )
    assert big[keyword].value != original[keyword].value


@pytest.mark.parametrize("target", LOSSLESS)
@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_bigendian.dcm",
        "SC_rgb_rle_2frame.dcm",
        "examples_palette.dcm",
        "ExplVR_BigEnd.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "JPGExtended.dcm",
        "examples_ybr_color.dcm",
    ],
)
def test_lossless_encoding_keeps_the_decoded_pixels(name: str, target: str) -> None:
    source = bundled(name)
    result = transcode(source, target)
    assert_same_instance(result, source, target)
    out = read(result)
    assert out.file_meta.TransferSyntaxUID.is_encapsulated
    assert int(out.get("NumberOfFrames", 1)) == int(read(source).get("NumberOfFrames", 1))
    np.testing.assert_array_equal(pixel_array(result), pixel_array(source))


def test_the_stored_syntax_returns_the_bytes_unchanged() -> None:
    source = bundled("MR_small_RLE.dcm")
    assert transcode(source, uid.RLELossless) == source


@pytest.mark.parametrize(
    "source, target, possible",
    [
        (uid.JPEGBaseline8Bit, uid.ExplicitVRLittleEndian, True),
        (uid.JPEG2000, uid.ImplicitVRLittleEndian, True),
        (uid.JPEGLSNearLossless, uid.ExplicitVRBigEndian, True),
        (uid.HTJ2KLossless, uid.ExplicitVRLittleEndian, True),
        (uid.ExplicitVRLittleEndian, uid.RLELossless, True),
        (uid.ExplicitVRLittleEndian, uid.JPEG2000Lossless, True),
        (uid.ExplicitVRLittleEndian, uid.JPEGLSLossless, True),
        (uid.JPEGBaseline8Bit, uid.RLELossless, True),
        (uid.ExplicitVRLittleEndian, uid.JPEGBaseline8Bit, False),  # lossy: never
        (uid.ExplicitVRLittleEndian, uid.HTJ2KLossless, False),  # no HTJ2K encoder
        (uid.MPEG2MPML, uid.ExplicitVRLittleEndian, False),  # no video decoder
        (uid.MPEG2MPML, uid.MPEG2MPML, True),
        ("1.2.3", uid.ExplicitVRLittleEndian, False),
    ],
)
def test_can_transcode_answers_from_the_syntaxes(source: str, target: str, possible: bool) -> None:
    assert can_transcode(source, target) is possible


def test_a_lossy_target_is_refused_with_a_reason() -> None:
    with pytest.raises(TranscodeError, match="JPEG Baseline"):
        transcode(bundled("CT_small.dcm"), uid.JPEGBaseline8Bit)


@pytest.mark.parametrize(
    "name, target", [("liver_1frame.dcm", uid.RLELossless), ("rtdose.dcm", uid.JPEGLSLossless)]
)
def test_an_image_an_encoder_cannot_take_is_refused(name: str, target: str) -> None:
    with pytest.raises(TranscodeError, match="cannot encode"):
        transcode(bundled(name), target)


def test_undecodable_pixel_data_is_reported_not_hidden() -> None:
    """JPEG-lossy.dcm is 12-bit lossy JPEG that no installed plugin decodes."""
    with pytest.raises(PixelDataError, match="decompress"):
        transcode(bundled("JPEG-lossy.dcm"), uid.ExplicitVRLittleEndian)


def test_a_file_without_pixel_data_changes_syntax_too() -> None:
    source = bundled("rtplan.dcm")
    result = transcode(source, uid.ExplicitVRBigEndian)
    assert read(result).file_meta.TransferSyntaxUID == uid.ExplicitVRBigEndian
    assert read(result).RTPlanLabel == read(source).RTPlanLabel
