"""Decoding one frame to an array (isthmus.render.decode): the same values as pydicom's."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.pixels import get_decoder
from pydicom.uid import ExplicitVRLittleEndian
from tests.render.conftest import bundled, make_image, native_files, part10

from isthmus.render import open_part10, render
from isthmus.render.decode import decode_frame, stored_frame
from isthmus.render.image import frame_image


def pydicom_frame(data: bytes, index: int) -> np.ndarray:
    """pydicom's native decoder on the same frame bytes (the reference)."""
    pixels = open_part10(data)
    array, _ = get_decoder(ExplicitVRLittleEndian).as_array(
        stored_frame(pixels, index),
        **pixels.decode_options(),  # type: ignore[arg-type]
    )
    return array


def with_raw_words(words: np.ndarray, bits_stored: int, signed: bool) -> bytes:
    """A Part 10 file whose pixel data is `words` as stored, unused high bits included."""
    ds = make_image(np.zeros(words.shape, np.uint16), signed=signed)
    ds.BitsAllocated = words.dtype.itemsize * 8
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    ds.PixelData = words.astype(words.dtype.newbyteorder("<")).tobytes()
    return part10(ds)


@pytest.mark.parametrize("name", native_files())
def test_native_frames_decode_to_the_values_and_type_pydicom_gives(name: str) -> None:
    data = bundled(name)
    pixels = open_part10(data)
    for index in range(min(pixels.number_of_frames, 3)):
        array, _ = decode_frame(pixels, index)
        reference = pydicom_frame(data, index)
        assert array.dtype == reference.dtype
        np.testing.assert_array_equal(array, reference)


@pytest.mark.parametrize(
    ("dtype", "bits_stored", "signed"),
    [
        (np.uint8, 8, False),
        (np.uint8, 6, False),
        (np.uint16, 12, False),
        (np.uint16, 12, True),
        (np.uint16, 16, True),
        (np.uint16, 1, False),
        (np.uint32, 24, True),
    ],
)
def test_unused_high_bits_are_cut_and_the_sign_extended_as_pydicom_does(
    dtype: type, bits_stored: int, signed: bool
) -> None:
    info = np.iinfo(dtype)
    words = np.random.default_rng(bits_stored).integers(0, info.max, (16, 24), dtype=dtype)
    data = with_raw_words(words, bits_stored, signed)
    pixels = open_part10(data)
    array, _ = decode_frame(pixels, 0)
    reference = pydicom_frame(data, 0)
    assert array.dtype == reference.dtype
    np.testing.assert_array_equal(array, reference)
    raw, _ = decode_frame(pixels, 0, correct_unused_bits=False)
    np.testing.assert_array_equal(raw.view(dtype), words)


@pytest.mark.parametrize("side", [32, 128])  # computed per pixel; through a table of values
def test_a_grayscale_image_renders_alike_whatever_its_unused_bits_hold(side: int) -> None:
    values = np.random.default_rng(7).integers(0, 1 << 12, (side, side), dtype=np.uint16)
    noise = np.random.default_rng(8).integers(0, 16, (side, side), dtype=np.uint16) << 12
    clean = with_raw_words(values, 12, True)
    dirty = with_raw_words(values | noise, 12, True)
    assert np.array_equal(
        np.asarray(frame_image(open_part10(clean), 0)),
        np.asarray(frame_image(open_part10(dirty), 0)),
    )
    assert render(clean, 1, "image/png") == render(dirty, 1, "image/png")
