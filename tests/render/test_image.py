"""Rendered images and thumbnails (PS3.18 8.3.5; isthmus.render.image)."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut
from tests.render.conftest import bundled, decodable_files, make_image, part10, pixel_array, read

from isthmus.render import FrameNotFound, NoPixelData, RenderError, render, thumbnail
from isthmus.render.image import fit_size


def image_of(data: bytes) -> Image.Image:
    return Image.open(BytesIO(data))


def png(data: bytes, **options) -> np.ndarray:
    return np.asarray(image_of(render(data, media_type="image/png", **options)))


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 written out independently, to 0..255 rounded."""
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    out = np.empty(values.shape)
    out[values <= low] = 0
    out[values > high] = 255
    inside = (values > low) & (values <= high)
    out[inside] = ((values[inside] - (center - 0.5)) / (width - 1) + 0.5) * 255
    return np.rint(out).astype(np.uint8)


def test_ct_window_40_400_is_rendered_exactly(ct_small: bytes) -> None:
    ds = read(ct_small)
    hounsfield = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    got = png(ct_small, window=(40, 400))
    assert got.shape == (ds.Rows, ds.Columns)
    np.testing.assert_array_equal(got, linear_window(hounsfield, 40, 400))
    assert 0 < got.mean() < 255


def test_the_file_window_is_used_when_none_is_asked() -> None:
    data = bundled("MR_small.dcm")  # Window 600/1600, no rescale
    expected = linear_window(pixel_array(data).astype(float), 600, 1600)
    np.testing.assert_array_equal(png(data), expected)


def test_without_any_window_the_value_range_fills_the_display(ct_small: bytes) -> None:
    ds = read(ct_small)
    values = ds.pixel_array.astype(float) - 1024
    expected = np.rint((values - values.min()) * 255 / (values.max() - values.min()))
    np.testing.assert_array_equal(png(ct_small), expected.astype(np.uint8))


def test_the_voi_lut_function_of_the_file_applies() -> None:
    values = np.arange(-512, 512, dtype=np.int16).reshape(32, 32)
    data = part10(
        make_image(values, signed=True, WindowCenter=0, WindowWidth=200, VOILUTFunction="SIGMOID")
    )
    expected = np.rint(255 / (1 + np.exp(-4 * values.astype(float) / 200))).astype(np.uint8)
    np.testing.assert_array_equal(png(data), expected)


def test_a_window_with_a_function_can_be_asked(ct_small: bytes) -> None:
    hounsfield = pixel_array(ct_small).astype(float) - 1024
    expected = np.clip((hounsfield - 40) / 400 + 0.5, 0, 1) * 255
    got = png(ct_small, window=(40, 400, "LINEAR_EXACT"))
    np.testing.assert_array_equal(got, np.rint(expected).astype(np.uint8))


def test_signed_pixels_with_fewer_bits_stored_are_sign_extended() -> None:
    values = np.array([[-2048, -1, 0, 2047]], dtype=np.int16)
    raw = (values.astype(np.int32) & 0x0FFF).astype(np.uint16) | 0xA000  # garbage above bit 11
    ds = make_image(values, signed=True, bits_stored=12)
    ds.PixelData = raw.tobytes()
    got = png(part10(ds), window=(0, 4096))
    np.testing.assert_array_equal(got, linear_window(values.astype(float), 0, 4096))


def test_monochrome1_is_rendered_inverted() -> None:
    values = np.arange(64, dtype=np.uint16).reshape(8, 8) * 16
    m2 = png(part10(make_image(values, "MONOCHROME2")))
    m1 = png(part10(make_image(values, "MONOCHROME1")))
    np.testing.assert_array_equal(m1, 255 - m2)
    assert m1[0, 0] == 255 and m2[0, 0] == 0


def test_invert_flips_the_rendered_image(ct_small: bytes) -> None:
    np.testing.assert_array_equal(png(ct_small, invert=True), 255 - png(ct_small))


def test_palette_color_goes_through_its_lookup_tables() -> None:
    data = bundled("examples_palette.dcm")
    ds = read(data)
    rgb16 = apply_color_lut(ds.pixel_array, ds).astype(float)  # 16-bit LUT entries
    expected = np.rint(rgb16 * 255 / 65535).astype(np.uint8)
    got = png(data)
    assert got.shape == (ds.Rows, ds.Columns, 3)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "name",
    [
        "SC_ybr_full_422_uncompressed.dcm",
        "SC_rgb_dcmtk_+eb+cy+np.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "examples_rgb_color.dcm",
        "examples_jpeg2k.dcm",
        "SC_rgb_rle.dcm",
    ],
)
def test_color_images_are_rendered_as_their_rgb_pixels(name: str) -> None:
    """YBR_FULL, YBR_FULL_422 (native and JPEG) and YBR_RCT show as pydicom's RGB."""
    data = bundled(name)
    np.testing.assert_array_equal(png(data), pixel_array(data))


def test_16_bit_rgb_is_scaled_to_8_bits() -> None:
    data = bundled("SC_rgb_rle_16bit.dcm")
    expected = np.rint(pixel_array(data).astype(float) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(png(data), expected)


def test_each_frame_of_a_multiframe_instance_renders_its_own_pixels() -> None:
    data = bundled("SC_rgb_rle_2frame.dcm")
    frames = pixel_array(data)
    for number in (1, 2):
        np.testing.assert_array_equal(png(data, frame=number), frames[number - 1])


def test_functional_groups_give_each_frame_its_own_window() -> None:
    volume = np.stack([np.arange(256, dtype=np.uint16).reshape(16, 16)] * 2)
    ds = make_image(volume[0])
    ds.NumberOfFrames, ds.PixelData = 2, volume.tobytes()
    ds.PerFrameFunctionalGroupsSequence = [_frame_group(64, 64, 2), _frame_group(200, 100, 1)]
    data = part10(ds)
    np.testing.assert_array_equal(png(data, frame=1), linear_window(volume[0] * 2.0 + 0, 64, 64))
    np.testing.assert_array_equal(png(data, frame=2), linear_window(volume[1] * 1.0, 200, 100))


def _frame_group(center: float, width: float, slope: float) -> Dataset:
    voi, rescale, group = Dataset(), Dataset(), Dataset()
    voi.WindowCenter, voi.WindowWidth = center, width
    rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = slope, 0, "US"
    group.FrameVOILUTSequence, group.PixelValueTransformationSequence = [voi], [rescale]
    return group


@pytest.mark.parametrize("name", decodable_files())
def test_every_decodable_file_renders_as_jpeg_of_its_size(name: str) -> None:
    data = bundled(name)
    ds = read(data)
    image = image_of(render(data))
    assert image.format == "JPEG"
    assert image.size == (ds.Columns, ds.Rows)


@pytest.mark.parametrize(
    "viewport, size", [((128, 128), (32, 128)), ((64, 1000), (16, 64)), ((2048, 2048), (512, 2048))]
)
def test_viewport_keeps_the_aspect_ratio(viewport, size) -> None:
    data = bundled("JPEG2000.dcm")  # 1024 rows x 256 columns
    assert image_of(render(data, viewport=viewport)).size == size


def test_fit_size_scales_to_the_tighter_side() -> None:
    assert fit_size(512, 512, (100, 200)) == (100, 100)
    assert fit_size(300, 484, (256, 256)) == (159, 256)
    with pytest.raises(RenderError):
        fit_size(512, 512, (0, 10))


def test_jpeg_quality_changes_the_encoding_not_the_picture(ct_small: bytes) -> None:
    low, high = render(ct_small, quality=10), render(ct_small, quality=95)
    assert len(low) < len(high)
    reference = png(ct_small).astype(float)
    assert np.abs(np.asarray(image_of(high), float) - reference).mean() < 2


def test_gif_of_a_multiframe_instance_is_animated_when_no_frame_is_named() -> None:
    data = bundled("SC_rgb_rle_2frame.dcm")
    animation = image_of(render(data, frame=None, media_type="image/gif"))
    assert (animation.format, animation.n_frames) == ("GIF", 2)
    single = image_of(render(data, frame=2, media_type="image/gif"))
    assert getattr(single, "n_frames", 1) == 1


def test_annotation_burns_text_into_the_image(ct_small: bytes) -> None:
    plain, annotated = png(ct_small), png(ct_small, annotation="patient,technique")
    assert plain.shape == annotated.shape
    assert (plain[:30, :] != annotated[:30, :]).any()
    np.testing.assert_array_equal(plain[60:, :], annotated[60:, :])


def test_thumbnail_fits_in_its_size() -> None:
    image = image_of(thumbnail(bundled("JPEG2000.dcm"), 64))
    assert (image.format, image.size) == ("JPEG", (16, 64))
    assert image_of(thumbnail(bundled("CT_small.dcm"), 100, "image/png")).size == (100, 100)


@pytest.mark.parametrize(
    "options, error",
    [
        ({"frame": 0}, FrameNotFound),
        ({"frame": 2}, FrameNotFound),
        ({"media_type": "image/tiff"}, RenderError),
        ({"quality": 0}, RenderError),
        ({"quality": 101}, RenderError),
        ({"window": (40, 0)}, RenderError),
        ({"window": ("a", "b")}, RenderError),
        ({"annotation": "everything"}, RenderError),
        ({"viewport": (0, 0)}, RenderError),
    ],
)
def test_bad_requests_raise_clear_errors(ct_small: bytes, options, error) -> None:
    with pytest.raises(error):
        render(ct_small, **options)


def test_an_instance_without_pixels_cannot_be_rendered() -> None:
    with pytest.raises(NoPixelData):
        render(bundled("rtplan.dcm"))
