"""isthmus.dicom.part10.split_transfer_syntax: the file meta walked, as pydicom reads it."""

from __future__ import annotations

import io
import struct

import pytest
from pydicom import Dataset, dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from isthmus.dicom import part10
from isthmus.dicom.part10 import split_part10, split_transfer_syntax


def _file(syntax: str | None, preamble: bool = True) -> bytes:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4.5"
    ds.PatientName = "Doe^Jane"
    ds.preamble = b"\x00" * 128  # pydicom then writes the preamble and 'DICM'
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.ImplementationClassUID = "1.2.3.99"
    if syntax is not None:
        ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    implicit = syntax in (None, ImplicitVRLittleEndian)
    little = syntax != ExplicitVRBigEndian
    dcmwrite(out, ds, implicit_vr=implicit, little_endian=little, enforce_file_format=False)
    data = out.getvalue()
    if not preamble:
        assert data[128:132] == b"DICM"
        data = data[128:]
    return data


def _pydicom_split(data: bytes) -> tuple[str | None, bytes]:
    meta, rest = split_part10(data)
    if meta is None:
        return None, bytes(rest)
    return str(meta.get("TransferSyntaxUID", "")).strip(), bytes(rest)


@pytest.mark.parametrize(
    "syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]
)
@pytest.mark.parametrize("preamble", [True, False])
def test_the_transfer_syntax_and_dataset_are_those_pydicom_reads(
    syntax: str, preamble: bool
) -> None:
    data = _file(syntax, preamble)
    found, rest = split_transfer_syntax(data)
    assert (found, bytes(rest)) == _pydicom_split(data)
    assert found == syntax


def test_a_bare_dataset_has_no_meta() -> None:
    data = _file(ExplicitVRLittleEndian)
    bare = data[part10.dataset_offset(data) :]
    found, rest = split_transfer_syntax(bare)
    assert found is None and bytes(rest) == bare


def test_a_meta_without_a_transfer_syntax_gives_an_empty_one() -> None:
    data = _file(None)
    found, rest = split_transfer_syntax(data)
    assert (found, bytes(rest)) == _pydicom_split(data) == ("", bytes(rest))


def test_a_meta_in_implicit_vr_is_read_by_pydicom() -> None:
    """Not conformant (PS3.10 7.1 says Explicit VR), but seen: the walk declines it."""
    syntax = ExplicitVRLittleEndian.encode() + b"\x00"
    element = struct.pack("<HHI", 0x0002, 0x0010, len(syntax)) + syntax
    dataset = struct.pack("<HH2sH", 0x0010, 0x0010, b"PN", 8) + b"Doe^Jane"
    data = part10.PREAMBLE + element + dataset
    found, rest = split_transfer_syntax(data)
    assert (found, bytes(rest)) == _pydicom_split(data)


def test_a_meta_cut_inside_a_value_is_read_as_pydicom_reads_it() -> None:
    data = _file(ExplicitVRLittleEndian)
    for end in (137, 150, 190):
        cut = data[:end]
        found, rest = split_transfer_syntax(cut)
        assert (found, bytes(rest)) == _pydicom_split(cut)
