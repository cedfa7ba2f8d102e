"""The archive's reading methods for the doors: frames, renderings, "this instance in
transfer syntax X", datasets for a receiver, bulk data; the query vocabulary; the
study check of Archive.store."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread

from isthmus.archive import (
    Archive,
    NoBulkData,
    Query,
    StoreOutcome,
    default_return_keys,
    resolve_tag,
    unique_key,
)
from isthmus.dicom import uids
from isthmus.testing import samples
from isthmus.testing.generate import StudySpec, write_study

PIXEL_DATA = 0x7FE00010


@pytest.fixture
def stored(archive: Archive, tmp_path: Path) -> Archive:
    """Two native CT instances and one RLE multi-colour instance."""
    for path in write_study(StudySpec(instances_per_series=2, rows=16, columns=16), tmp_path):
        assert archive.store(path.read_bytes()).ok
    assert archive.store(samples.bundled_path("SC_rgb_rle.dcm").read_bytes()).ok
    return archive


def _rows(archive: Archive) -> tuple[list, object]:
    rows = archive.instances()
    native = [r for r in rows if r.transfer_syntax_uid == uids.EXPLICIT_VR_LITTLE_ENDIAN]
    [rle] = [r for r in rows if r.transfer_syntax_uid == "1.2.840.10008.1.2.5"]
    return native, rle


def test_frames_as_stored_and_decoded(stored: Archive) -> None:
    native, rle = _rows(stored)
    [frame] = stored.frames(native[0], [1])
    assert len(frame.data) == 16 * 16 * 2
    [raw] = stored.frames(rle, [1])
    assert raw.transfer_syntax == "1.2.840.10008.1.2.5"
    [decoded] = stored.frames(rle, [1], uids.EXPLICIT_VR_LITTLE_ENDIAN)
    assert decoded.media_type == "application/octet-stream" and len(decoded.data) > len(raw.data)


def test_render_a_frame(stored: Archive) -> None:
    native, _ = _rows(stored)
    assert stored.render(native[0], 1, "image/png")[:4] == b"\x89PNG"


def test_read_as_stored_is_the_stored_file_and_otherwise_transcodes(stored: Archive) -> None:
    _, rle = _rows(stored)
    assert stored.read_as(rle, rle.transfer_syntax_uid) == stored.read_instance(rle)
    again = stored.read_as(rle, uids.EXPLICIT_VR_LITTLE_ENDIAN)
    assert dcmread(BytesIO(again)).file_meta.TransferSyntaxUID == (uids.EXPLICIT_VR_LITTLE_ENDIAN)


def test_dataset_for_a_receiver(stored: Archive) -> None:
    _, rle = _rows(stored)
    syntax, dataset = stored.dataset_for(rle, {rle.transfer_syntax_uid: 1})
    assert syntax == rle.transfer_syntax_uid
    assert bytes(dataset) == stored.read_instance(rle)[-len(dataset) :]
    syntax, _ = stored.dataset_for(rle, {uids.IMPLICIT_VR_LITTLE_ENDIAN: 3})
    assert syntax == uids.IMPLICIT_VR_LITTLE_ENDIAN
    with pytest.raises(ValueError):
        stored.dataset_for(rle, {})


def test_bulk_data_of_native_pixels_is_a_byte_range_of_the_file(stored: Archive) -> None:
    native, rle = _rows(stored)
    row = native[0]
    assert not stored.pixel_data_as_frames(row, PIXEL_DATA)
    assert stored.pixel_data_as_frames(rle, PIXEL_DATA)
    with stored.bulk_data(row, PIXEL_DATA) as value:
        assert value.length == 16 * 16 * 2
        whole = value.read(0, value.length)
        assert value.read(10, 6) == whole[10:16]
        assert value.read(value.length - 2, 100) == whole[-2:]
    pixels = dcmread(BytesIO(stored.read_instance(row))).PixelData
    assert whole == pixels


def test_bulk_data_missing_at_a_tag(stored: Archive) -> None:
    native, _ = _rows(stored)
    with pytest.raises(NoBulkData):
        stored.bulk_data(native[0], 0x00420011)  # Encapsulated Document


def test_store_refuses_an_instance_of_another_study(archive: Archive, tmp_path: Path) -> None:
    [path] = write_study(StudySpec(instances_per_series=1), tmp_path)
    result = archive.store(path.read_bytes(), expected_study="1.2.3")
    assert result.outcome is StoreOutcome.STUDY_MISMATCH and "not 1.2.3" in (result.reason or "")
    assert result.sop_instance_uid and archive.counts()["image"] == 0
    assert not list(archive.blobs.keys())
    ok = archive.store(path.read_bytes(), expected_study=result.study_instance_uid)
    assert ok.outcome is StoreOutcome.STORED


def test_overwrite_is_its_own_outcome(index_url: str, tmp_path: Path) -> None:
    archive = Archive(index_url, f"file://{tmp_path / 'blobs'}", duplicates="overwrite")
    try:
        [path] = write_study(StudySpec(instances_per_series=1), tmp_path / "in")
        assert archive.store(path.read_bytes()).outcome is StoreOutcome.STORED
        assert archive.store(path.read_bytes()).outcome is StoreOutcome.OVERWRITTEN
    finally:
        archive.close()


def test_query_vocabulary() -> None:
    assert [unique_key(level) for level in ("PATIENT", "STUDY", "SERIES", "IMAGE")] == [
        "PatientID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
    ]
    assert "StudyInstanceUID" in default_return_keys("STUDY")
    assert resolve_tag("PatientID") == resolve_tag("(0010,0020)") == 0x00100020
    with pytest.raises(KeyError):
        resolve_tag("NoSuchKeyword")


def test_parent_attributes_of_instances_across_studies(stored: Archive) -> None:
    matches = stored.find(Query(level="IMAGE", keys={}, include_defaults=True)).matches
    stored.add_parent_attributes("IMAGE", matches)
    assert all("00080020" in m or "00100010" in m for m in matches)  # study date / patient
    assert all("0020000E" in m and "00080060" in m for m in matches)  # series modality
