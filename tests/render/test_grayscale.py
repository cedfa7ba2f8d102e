"""The grayscale pipeline's rules (PS3.3 C.11.1, C.11.2.1.2; isthmus.render.grayscale)."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from isthmus.render import RenderError
from isthmus.render.grayscale import (
    Window,
    apply_window,
    display_values,
    file_window,
    stored_values,
)


def test_linear_window_follows_the_equations_of_the_standard() -> None:
    """c=40, w=400: x <= -160 → 0; x > 239 → 255; else ((x - 39.5) / 399 + 0.5) * 255."""
    values = np.array([-1000.0, -160.0, -159.0, 40.0, 239.0, 239.5, 1000.0])
    got = apply_window(values, Window(40, 400))
    expected = [
        0,
        0,
        ((-159 - 39.5) / 399 + 0.5) * 255,
        (0.5 / 399 + 0.5) * 255,
        ((239 - 39.5) / 399 + 0.5) * 255,
        255,
        255,
    ]
    np.testing.assert_allclose(got, expected)


def test_linear_exact_window_has_no_half_pixel_shift() -> None:
    values = np.array([-160.0, -159.0, 40.0, 240.0, 241.0])
    got = apply_window(values, Window(40, 400, "LINEAR_EXACT"))
    np.testing.assert_allclose(got, [0, (-199 / 400 + 0.5) * 255, 127.5, 255, 255])


def test_sigmoid_window_is_the_logistic_curve() -> None:
    values = np.array([-200.0, 40.0, 240.0])
    got = apply_window(values, Window(40, 400, "SIGMOID"))
    np.testing.assert_allclose(got, 255 / (1 + np.exp(-4 * (values - 40) / 400)))
    assert got[1] == pytest.approx(127.5)


@pytest.mark.parametrize("width, function", [(0.5, "LINEAR"), (0, "LINEAR_EXACT"), (-1, "SIGMOID")])
def test_a_window_too_narrow_for_its_function_is_refused(width: float, function: str) -> None:
    with pytest.raises(RenderError, match="width"):
        Window(40, width, function)


def test_an_unknown_voi_lut_function_is_refused() -> None:
    with pytest.raises(RenderError, match="VOI LUT Function"):
        Window(40, 400, "GAMMA")


def test_stored_values_are_masked_to_bits_stored() -> None:
    raw = np.array([0xF123, 0x0FFF, 0x1000], dtype=np.uint16)  # high bits hold garbage
    np.testing.assert_array_equal(stored_values(raw, 12, signed=False), [0x123, 0xFFF, 0])


def test_signed_stored_values_are_sign_extended_from_bits_stored() -> None:
    raw = np.array([0x0FFF, 0x0800, 0x07FF, 0xF001], dtype=np.uint16)
    np.testing.assert_array_equal(stored_values(raw, 12, signed=True), [-1, -2048, 2047, 1])


def test_the_first_of_several_windows_in_the_file_is_the_default() -> None:
    ds = Dataset()
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = [450, 200], [790, 443], "LINEAR_EXACT"
    assert file_window(ds) == Window(450, 790, "LINEAR_EXACT")


def test_an_unusable_window_in_the_file_falls_back_to_the_value_range() -> None:
    ds = Dataset()
    ds.WindowCenter, ds.WindowWidth = 100, 0
    assert file_window(ds) is None
    shown = display_values(np.array([[10, 20], [30, 50]], np.int16), ds, 16, True, "MONOCHROME2")
    np.testing.assert_array_equal(shown, [[0, 64], [128, 255]])


def test_modality_lut_sequence_replaces_rescale() -> None:
    ds = Dataset()
    item = Dataset()
    item.LUTDescriptor = [4, 10, 16]  # 4 entries, first stored value 10
    item.LUTData = [0, 1000, 2000, 3000]
    item.ModalityLUTType = "HU"
    ds.ModalityLUTSequence = [item]
    ds.WindowCenter, ds.WindowWidth = 1500, 3001  # LINEAR: 0 → 0, 3000 → 255
    shown = display_values(np.array([[9, 10, 11, 13]], np.uint16), ds, 16, False, "MONOCHROME2")
    np.testing.assert_array_equal(shown, [[0, 0, 85, 255]])


def test_voi_lut_sequence_is_scaled_from_its_bit_depth() -> None:
    ds = Dataset()
    item = Dataset()
    item.LUTDescriptor = [3, 0, 12]
    item.LUTData = [0, 2048, 4095]
    ds.VOILUTSequence = [item]
    shown = display_values(np.array([[0, 1, 2, 5]], np.uint16), ds, 16, False, "MONOCHROME2")
    np.testing.assert_array_equal(shown, [[0, 128, 255, 255]])


def test_monochrome1_shows_the_minimum_as_white() -> None:
    ds = Dataset()
    values = np.array([[0, 100]], np.uint16)
    m1 = display_values(values, ds, 16, False, "MONOCHROME1")
    m2 = display_values(values, ds, 16, False, "MONOCHROME2")
    np.testing.assert_array_equal(m1, [[255, 0]])
    np.testing.assert_array_equal(m1, 255 - m2)


def _frame_of(
    values: np.ndarray, shape: tuple[int, int] = (512, 512)
) -> tuple[np.ndarray, np.ndarray]:
    """A large frame holding every one of `values` (and only those), and where each pixel's
    value sits in `values`."""
    rng = np.random.default_rng(7)
    where = rng.integers(0, values.size, size=shape[0] * shape[1])
    where[: values.size] = np.arange(values.size)
    return values[where].reshape(shape), where.reshape(shape)


@pytest.mark.parametrize(
    "dtype, bits, signed, photometric, attrs, window",
    [
        (
            np.int16,
            16,
            True,
            "MONOCHROME2",
            {"RescaleIntercept": -1024, "WindowCenter": 40, "WindowWidth": 400},
            None,
        ),
        (np.uint16, 12, False, "MONOCHROME1", {"WindowCenter": 1000, "WindowWidth": 800}, None),
        (np.uint16, 12, True, "MONOCHROME2", {"RescaleSlope": 0.5, "RescaleIntercept": 3}, None),
        (np.uint16, 16, False, "MONOCHROME2", {}, Window(300, 700, "SIGMOID")),
        (np.int16, 16, True, "MONOCHROME2", {}, Window(-50.5, 300.5, "LINEAR_EXACT")),
        (np.uint8, 8, False, "MONOCHROME2", {}, None),
    ],
)
def test_a_large_frame_shows_each_value_as_a_lone_pixel_would(
    dtype, bits, signed, photometric, attrs, window
) -> None:
    """Large frames go through a table of every value their type holds: the display values
    must be those of the pixel-by-pixel pipeline (a small array), value range included."""
    ds = Dataset()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    info = np.iinfo(dtype)
    values = np.random.default_rng(3).integers(info.min, info.max + 1, size=2000).astype(dtype)
    if bits == 12:
        values[:50] |= np.array(0xF000, dtype)  # bits above Bits Stored are not part of the value
    frame, where = _frame_of(values)
    one_by_one = display_values(values.reshape(1, -1), ds, bits, signed, photometric, window)
    shown = display_values(frame, ds, bits, signed, photometric, window)
    assert shown.dtype == np.uint8
    np.testing.assert_array_equal(shown, one_by_one[0][where])


def test_frames_with_another_rescale_or_window_get_their_own_display_values() -> None:
    frame, _ = _frame_of(np.arange(-1024, 1024, dtype=np.int16))
    first, second, third = Dataset(), Dataset(), Dataset()
    for ds, intercept, width in ((first, 0, 400), (second, -500, 400), (third, 0, 1000)):
        ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth = intercept, 40, width
    shown = [display_values(frame, ds, 16, True, "MONOCHROME2") for ds in (first, second, third)]
    for ds, image in zip((first, second, third), shown, strict=True):
        expected = display_values(frame[:1, :100], ds, 16, True, "MONOCHROME2")
        np.testing.assert_array_equal(image[:1, :100], expected)
    assert not np.array_equal(shown[0], shown[1]) and not np.array_equal(shown[0], shown[2])
