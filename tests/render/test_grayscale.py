"""The grayscale pipeline's rules (PS3.3 C.11.1, C.11.2.1.2; isthmus.render.grayscale)."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from isthmus.render import RenderError
from isthmus.render.grayscale import (Window, apply_window, display_values, file_window,
                                      stored_values)


def test_linear_window_follows_the_equations_of_the_standard() -> None:
    """c=40, w=400: x <= -160 → 0; x > 239 → 255; else ((x - 39.5) / 399 + 0.5) * 255."""
    values = np.array([-1000.0, -160.0, -159.0, 40.0, 239.0, 239.5, 1000.0])
    got = apply_window(values, Window(40, 400))
    expected = [0, 0, ((-159 - 39.5) / 399 + 0.5) * 255, (0.5 / 399 + 0.5) * 255,
                ((239 - 39.5) / 399 + 0.5) * 255, 255, 255]
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
    raw = np.array([0xF123, 0x0FFF, 0x1000], dtype=np.uint16)      # high bits hold garbage
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
    item.LUTDescriptor = [4, 10, 16]                  # 4 entries, first stored value 10
    item.LUTData = [0, 1000, 2000, 3000]
    item.ModalityLUTType = "HU"
    ds.ModalityLUTSequence = [item]
    ds.WindowCenter, ds.WindowWidth = 1500, 3001      # LINEAR: 0 → 0, 3000 → 255
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
