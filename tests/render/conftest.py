"""Test data for the pixel layer: pydicom's bundled files and small generated images."""

from __future__ import annotations

import functools
import warnings
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom.data
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from isthmus.testing.generate import ROOT

# pydicom's bundled files, read from its package folder: get_testdata_files() would also
# try to download the external pydicom-data set, and tests never download anything.
BUNDLED = Path(pydicom.data.__file__).parent / "test_files"


def bundled(name: str) -> bytes:
    """The bytes of one of pydicom's bundled test files."""
    return (BUNDLED / name).read_bytes()


def read(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(BytesIO(data))


@functools.cache
def decodable_files() -> tuple[str, ...]:
    """Every bundled Part 10 file with pixel data that pydicom decodes here."""
    names = []
    for path in sorted(BUNDLED.glob("*.dcm")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = dcmread(path)
                if "PixelData" in ds and "TransferSyntaxUID" in ds.file_meta:
                    _ = ds.pixel_array  # decodes, or raises without a decoder
                    names.append(path.name)
            except Exception:
                continue
    assert len(names) > 50, names  # the enumeration itself must not silently shrink
    return tuple(names)


def transfer_syntax(name: str):
    return read(bundled(name)).file_meta.TransferSyntaxUID


def encapsulated_files() -> list[str]:
    return [n for n in decodable_files() if transfer_syntax(n).is_encapsulated]


def native_files() -> list[str]:
    return [n for n in decodable_files() if not transfer_syntax(n).is_encapsulated]


def pixel_array(data: bytes) -> np.ndarray:
    """pydicom's own decoding of a whole file (the reference)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read(data).pixel_array


def make_image(
    array: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    signed: bool | None = None,
    frames: int | None = None,
    **attributes,
) -> Dataset:
    """A Secondary Capture dataset (Explicit VR LE) holding `array` as native pixel data."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    uid = generate_uid(ROOT)
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(ROOT), generate_uid(ROOT)
    ds.PatientName, ds.PatientID, ds.Modality = "TEST^RENDER", "R1", "OT"
    bits = array.dtype.itemsize * 8
    ds.set_pixel_data(array, photometric, bits_stored or bits, generate_instance_uid=False)
    if signed is not None:
        ds.PixelRepresentation = int(signed)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def part10(ds: Dataset) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture
def ct_small() -> bytes:
    return bundled("CT_small.dcm")
