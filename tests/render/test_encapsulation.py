"""Finding frames in encapsulated pixel data (PS3.5 A.4; isthmus.render.encapsulation)."""

from __future__ import annotations

import pytest
from pydicom import uid
from pydicom.encaps import (
    encapsulate,
    encapsulate_extended,
    fragment_frame,
    generate_frames,
    itemize_fragment,
)
from tests.render.conftest import bundled, part10, read

from isthmus.render import DecodeError, get_frames, open_part10, transcode

NUMBER_OF_FRAMES = 30


@pytest.fixture(scope="module")
def jpeg_frames() -> list[bytes]:
    """The 30 JPEG frames of a bundled ultrasound cine."""
    ds = read(bundled("examples_ybr_color.dcm"))
    return list(generate_frames(ds.PixelData, number_of_frames=NUMBER_OF_FRAMES))


def with_pixel_value(value: bytes, **attributes) -> bytes:
    ds = read(bundled("examples_ybr_color.dcm"))
    ds.PixelData = value
    for keyword, attribute in attributes.items():
        setattr(ds, keyword, attribute)
    return part10(ds)


def all_frames(data: bytes) -> list[bytes]:
    return [f.data for f in get_frames(data, list(range(1, NUMBER_OF_FRAMES + 1)))]


@pytest.mark.parametrize("fragments", [1, 3])
def test_frames_are_found_through_the_basic_offset_table(jpeg_frames, fragments: int) -> None:
    data = with_pixel_value(encapsulate(jpeg_frames, fragments_per_frame=fragments, has_bot=True))
    assert all_frames(data) == jpeg_frames


def test_frames_are_found_through_the_extended_offset_table(jpeg_frames) -> None:
    value, offsets, lengths = encapsulate_extended(jpeg_frames)
    data = with_pixel_value(value, ExtendedOffsetTable=offsets, ExtendedOffsetTableLengths=lengths)
    assert all_frames(data) == jpeg_frames


def test_one_fragment_per_frame_needs_no_offset_table(jpeg_frames) -> None:
    data = with_pixel_value(encapsulate(jpeg_frames, has_bot=False))
    assert all_frames(data) == jpeg_frames


def test_fragmented_frames_without_offset_table_split_at_frame_markers(jpeg_frames) -> None:
    data = with_pixel_value(encapsulate(jpeg_frames, fragments_per_frame=2, has_bot=False))
    assert all_frames(data) == jpeg_frames


def test_a_single_frame_in_several_fragments_is_joined(jpeg_frames) -> None:
    ds = read(bundled("SC_rgb_jpeg_dcmtk.dcm"))
    (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
    ds.PixelData = (
        b"\xfe\xff\x00\xe0\x00\x00\x00\x00"
        + b"".join(itemize_fragment(f) for f in fragment_frame(frame, 4))
        + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    )
    (got,) = get_frames(part10(ds), [1])
    assert got.data == frame


def test_a_value_that_is_not_an_item_sequence_is_reported(jpeg_frames) -> None:
    data = bytearray(with_pixel_value(encapsulate(jpeg_frames, has_bot=True)))
    value_offset = open_part10(bytes(data)).offset
    data[value_offset : value_offset + 8] = b"\x00" * 8
    with pytest.raises(DecodeError, match="Basic Offset Table"):
        get_frames(bytes(data), [1])


def test_truncated_encapsulated_data_is_reported(jpeg_frames) -> None:
    value = encapsulate(jpeg_frames, has_bot=True)
    data = with_pixel_value(value)
    cut = data[: len(data) - len(jpeg_frames[-1]) // 2 - 8]
    with pytest.raises(DecodeError, match="truncated|delimiter"):
        get_frames(cut, [NUMBER_OF_FRAMES])


def test_decompressing_drops_the_extended_offset_table(jpeg_frames) -> None:
    value, offsets, lengths = encapsulate_extended(jpeg_frames)
    data = with_pixel_value(value, ExtendedOffsetTable=offsets, ExtendedOffsetTableLengths=lengths)
    native = read(transcode(data, uid.ExplicitVRLittleEndian))
    assert "ExtendedOffsetTable" not in native and "ExtendedOffsetTableLengths" not in native
    assert native.pixel_array.shape == (NUMBER_OF_FRAMES, 240, 320, 3)
