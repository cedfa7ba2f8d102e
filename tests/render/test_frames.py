"""WADO-RS frames: as stored, decoded, and re-encoded (isthmus.render.frames)."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import uid
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import get_decoder
from tests.render.conftest import (
    bundled,
    decodable_files,
    encapsulated_files,
    make_image,
    native_files,
    part10,
    pixel_array,
    read,
)

from isthmus.render import (
    FrameNotFound,
    NoPixelData,
    TranscodeError,
    get_frames,
    get_frames_at,
    memory_reader,
    open_part10,
)

EXPLICIT_LE = str(uid.ExplicitVRLittleEndian)


def frames_as_array(frames, data: bytes) -> np.ndarray:
    """Interpret little-endian frame bytes with numpy alone, shaped like pydicom's pixel_array."""
    ds = read(data)
    rows, columns, samples = ds.Rows, ds.Columns, ds.get("SamplesPerPixel", 1)
    kind = "i" if ds.PixelRepresentation else "u"
    compressed = ds.file_meta.TransferSyntaxUID.is_compressed
    arrays = []
    for frame in frames:
        if ds.BitsAllocated == 1:
            bits = np.unpackbits(np.frombuffer(frame.data, np.uint8), bitorder="little")
            array = bits[: rows * columns].reshape(rows, columns)
        else:
            dtype = np.dtype(f"<{kind}{ds.BitsAllocated // 8}")
            array = np.frombuffer(frame.data, dtype)[: rows * columns * samples]
            if samples == 1:
                array = array.reshape(rows, columns)
            elif ds.get("PlanarConfiguration", 0) and not compressed:
                array = array.reshape(samples, rows, columns).transpose(1, 2, 0)
            else:
                array = array.reshape(rows, columns, samples)
        arrays.append(array)
    return np.stack(arrays) if len(arrays) > 1 else arrays[0]


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in decodable_files()  # native 4:2:2 just below
        if n != "SC_ybr_full_422_uncompressed.dcm"
    ],
)
def test_decoded_frames_hold_the_same_pixels_as_pydicom(name: str) -> None:
    data = bundled(name)
    count = open_part10(data).number_of_frames
    frames = get_frames(data, list(range(1, count + 1)), EXPLICIT_LE)
    assert all(
        f.media_type == "application/octet-stream" and f.transfer_syntax == EXPLICIT_LE
        for f in frames
    )
    np.testing.assert_array_equal(frames_as_array(frames, data), pixel_array(data))


def test_native_ybr_full_422_frame_is_the_stored_subsampled_bytes() -> None:
    data = bundled("SC_ybr_full_422_uncompressed.dcm")
    ds = read(data)
    (frame,) = get_frames(data, [1])
    assert frame.data == ds.PixelData[: ds.Rows * ds.Columns * 2]


@pytest.mark.parametrize("name", encapsulated_files())
def test_stored_frames_of_encapsulated_data_are_its_fragments(name: str) -> None:
    data = bundled(name)
    ds = read(data)
    count = open_part10(data).number_of_frames
    expected = list(generate_frames(ds.PixelData, number_of_frames=count))
    for requested in (None, "*", str(ds.file_meta.TransferSyntaxUID)):
        frames = get_frames(data, list(range(1, count + 1)), requested)
        assert [f.data for f in frames] == expected
        assert {f.transfer_syntax for f in frames} == {ds.file_meta.TransferSyntaxUID}


@pytest.mark.parametrize(
    "name, media_type",
    [
        ("CT_small.dcm", "application/octet-stream"),
        ("MR_small_RLE.dcm", "image/dicom-rle"),
        ("MR_small_jpeg_ls_lossless.dcm", "image/jls"),
        ("MR_small_jp2klossless.dcm", "image/jp2"),
        ("SC_rgb_jpeg_dcmtk.dcm", "image/jpeg"),
        ("JPGExtended.dcm", "image/jpeg"),
        ("SC_rgb_jpeg_gdcm.dcm", "image/jpeg"),
        ("MR_small_bigendian.dcm", "application/octet-stream"),
    ],
)
def test_stored_frames_carry_the_media_type_of_their_transfer_syntax(name, media_type) -> None:
    (frame,) = get_frames(bundled(name), [1])
    assert frame.media_type == media_type


@pytest.mark.parametrize("name", native_files())
def test_native_frames_as_stored_are_little_endian_raw_bytes(name: str) -> None:
    data = bundled(name)
    count = open_part10(data).number_of_frames
    stored = get_frames(data, list(range(1, count + 1)))
    decoded = get_frames(data, list(range(1, count + 1)), EXPLICIT_LE)
    assert [f.data for f in stored] == [f.data for f in decoded]
    assert {f.transfer_syntax for f in stored} == {EXPLICIT_LE}


@pytest.mark.parametrize(
    "big, little",
    [
        ("MR_small_bigendian.dcm", "MR_small.dcm"),  # 16-bit OW
        ("rtdose_expb.dcm", "rtdose.dcm"),  # 32-bit, 15 frames
        ("liver_expb_1frame.dcm", "liver_1frame.dcm"),  # 1-bit
        ("SC_rgb_small_odd_big_endian.dcm", "SC_rgb_small_odd.dcm"),  # 8-bit RGB as OW
    ],
)
def test_big_endian_frames_are_sent_little_endian(big: str, little: str) -> None:
    count = open_part10(bundled(little)).number_of_frames
    numbers = list(range(1, count + 1))
    assert [f.data for f in get_frames(bundled(big), numbers)] == [
        f.data for f in get_frames(bundled(little), numbers)
    ]


def test_frames_come_in_the_order_asked() -> None:
    data = bundled("SC_rgb_rle_2frame.dcm")
    two, one = get_frames(data, [2, 1])
    assert (one.data, two.data) == tuple(get_frames(data, [1, 2])[i].data for i in (0, 1))
    assert one.data != two.data


@pytest.mark.parametrize("number", [0, -1, 3, 10**6])
def test_a_frame_number_outside_the_instance_raises_frame_not_found(number: int) -> None:
    with pytest.raises(FrameNotFound, match="2 frames"):
        get_frames(bundled("SC_rgb_rle_2frame.dcm"), [1, number])


def test_an_empty_frame_list_raises_frame_not_found() -> None:
    with pytest.raises(FrameNotFound):
        get_frames(bundled("CT_small.dcm"), [])


def test_an_instance_without_pixel_data_has_no_frames() -> None:
    with pytest.raises(NoPixelData):
        get_frames(bundled("rtplan.dcm"), [1])


def test_one_bit_frames_starting_inside_a_byte_are_repacked_from_bit_zero() -> None:
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2, size=(3, 3, 3), dtype=np.uint8)  # 9 bits per frame
    ds = make_image(bits[0], bits_stored=1)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.NumberOfFrames = 1, 1, 0, 3
    ds.PixelData = np.packbits(bits.ravel(), bitorder="little").tobytes() + b"\x00"
    data = part10(ds)
    for number in (1, 2, 3):
        (frame,) = get_frames(data, [number])
        got = np.unpackbits(np.frombuffer(frame.data, np.uint8), bitorder="little")[:9]
        np.testing.assert_array_equal(got, bits[number - 1].ravel())
        assert len(frame.data) == 2


def test_planar_configuration_is_kept_as_stored() -> None:
    planes = np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 4, 5)  # frames, samples, r, c
    ds = make_image(planes[0].transpose(1, 2, 0), "RGB")
    ds.PlanarConfiguration, ds.NumberOfFrames = 1, 2
    ds.PixelData = planes.tobytes()
    first, second = get_frames(part10(ds), [1, 2])
    assert first.data == planes[0].tobytes() and second.data == planes[1].tobytes()


def test_frames_can_be_encoded_in_another_compressed_syntax() -> None:
    data = bundled("MR_small.dcm")
    (frame,) = get_frames(data, [1], str(uid.JPEGLSLossless))
    assert (frame.media_type, frame.transfer_syntax) == ("image/jls", uid.JPEGLSLossless)
    assert frame.data[:2] == b"\xff\xd8"
    pixels = open_part10(data)
    array, _ = get_decoder(uid.JPEGLSLossless).as_array(
        encapsulate([frame.data]), **pixels.decode_options()
    )
    np.testing.assert_array_equal(array, pixel_array(data))


@pytest.mark.parametrize(
    "requested", [str(uid.ExplicitVRBigEndian), "1.2.3.4", str(uid.JPEGBaseline8Bit)]
)
def test_frames_refuse_syntaxes_they_cannot_be_sent_in(requested: str) -> None:
    with pytest.raises(TranscodeError):
        get_frames(bundled("CT_small.dcm"), [1], requested)


def test_get_frames_at_reads_only_the_header_and_the_asked_frame() -> None:
    """The uncompressed path slices bytes: it reads the header and one frame, nothing else."""
    volume = np.random.default_rng(2).integers(-1000, 3000, size=(3, 512, 512), dtype=np.int16)
    ds = make_image(volume[0], signed=True)
    ds.NumberOfFrames, ds.PixelData = 3, volume.tobytes()
    data = part10(ds)
    offset = _archive_pixel_offset(data)
    reads: list[tuple[int, int]] = []
    inner = memory_reader(data)

    def read_logged(position: int, length: int) -> bytes:
        reads.append((position, length))
        return inner(position, length)

    (frame,) = get_frames_at(read_logged, offset, [2])
    assert frame.data == volume[1].tobytes()
    frame_bytes = 512 * 512 * 2
    assert reads[0] == (0, offset)
    assert reads[1:] == [(offset + frame_bytes, frame_bytes)]


@pytest.mark.parametrize("has_bot", [True, False])
def test_get_frames_at_reads_only_item_headers_and_the_asked_frame(has_bot: bool) -> None:
    """Encapsulated data: the header, 8-byte item headers, the offset table, the frame."""
    ds = read(bundled("rtdose_rle.dcm"))  # 15 frames, RLE
    frames = list(generate_frames(ds.PixelData, number_of_frames=15))
    ds.PixelData = encapsulate(frames, has_bot=has_bot)
    data = part10(ds)
    offset = _archive_pixel_offset(data)
    reads: list[tuple[int, int]] = []
    inner = memory_reader(data)

    def read_logged(position: int, length: int) -> bytes:
        reads.append((position, length))
        return inner(position, length)

    (frame,) = get_frames_at(read_logged, offset, [9])
    assert frame.data == frames[8]
    values = [length for position, length in reads[1:] if length != 8]
    assert reads[0] == (0, offset)
    assert values == ([4 * 15] if has_bot else []) + [len(frames[8])]
    if has_bot:
        assert len(reads) == 5  # header, BOT item, BOT, frame item, frame


def _archive_pixel_offset(data: bytes) -> int:
    """The pixel offset exactly as the archive computes it for InstanceRow.pixel_offset."""
    from isthmus.dicom import part10 as p10

    meta, dataset_bytes = p10.split_part10(data)
    header = p10.read_header(dataset_bytes, str(meta.TransferSyntaxUID))
    return len(data) - len(dataset_bytes) + header.pixel_offset


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "MR_small_bigendian.dcm", "SC_rgb_rle_2frame.dcm", "examples_ybr_color.dcm"],
)
def test_frames_from_the_archive_use_the_pixel_offset_it_recorded(name: str, tmp_path) -> None:
    from isthmus.archive import Archive
    from isthmus.render import file_reader

    data = bundled(name)
    archive = Archive(f"sqlite:///{tmp_path / 'index.sqlite'}", f"file://{tmp_path / 'blobs'}")
    try:
        assert archive.store(data).ok
        (row,) = archive.instances(sop_uid=str(read(data).SOPInstanceUID))
        numbers = list(range(1, (row.number_of_frames or 1) + 1))
        with archive.open_instance(row) as fh:
            frames = get_frames_at(file_reader(fh), row.pixel_offset, numbers)
    finally:
        archive.close()
    assert [f.data for f in frames] == [f.data for f in get_frames(data, numbers)]
