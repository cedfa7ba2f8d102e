"""isthmus.dicom.scan: one top-level value found by walking element headers."""

from __future__ import annotations

import io

import pytest
from pydicom import Dataset, dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from isthmus.dicom.headers import Unsupported
from isthmus.dicom.scan import top_level_text

STUDY = 0x0020000D
STUDY_UID = "1.2.826.0.1.3680043.8.498.1234567"


def _part10(syntax: str, *, undefined: bool, study: bool = True) -> bytes:
    """An instance whose (0020,000D) comes after nested sequences of either length."""
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator = "121", "DCM"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    item.ConceptNameCodeSequence = Sequence([inner])
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5"
    ds.ReferencedImageSequence = Sequence([item, Dataset()])
    ds.PatientName = "Doe^Jane"
    ds.StudyDescription = "odd length"
    if study:
        ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = "1.2.3.4.6"
    ds.BitsAllocated = 16
    ds.PixelData = b"\x00\x01" * 8
    ds.file_meta = Dataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if undefined:
        for element in (ds["ReferencedImageSequence"], item["ConceptNameCodeSequence"]):
            element.is_undefined_length = True
        for each in (item, inner, ds.ReferencedImageSequence[1]):
            each.is_undefined_length_sequence_item = True
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined-length"])
def test_finds_the_study_uid_past_sequences_of_either_length(syntax: str, undefined: bool) -> None:
    data = _part10(syntax, undefined=undefined)
    assert (b"\xfe\xff\xdd\xe0" in data) is undefined  # Sequence Delimitation Items
    assert top_level_text(data, syntax, STUDY) == STUDY_UID


def test_an_absent_element_is_none_not_an_element_past_it() -> None:
    data = _part10(ExplicitVRLittleEndian, undefined=True, study=False)
    assert top_level_text(data, ExplicitVRLittleEndian, STUDY) is None


def test_a_truncated_dataset_is_declined_not_misread() -> None:
    data = _part10(ExplicitVRLittleEndian, undefined=True)
    cut = data[: data.index(b"Doe^Jane") - 40]  # inside the sequence
    with pytest.raises(Unsupported):
        top_level_text(cut, ExplicitVRLittleEndian, STUDY)


@pytest.mark.parametrize("syntax", [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian])
def test_encodings_it_does_not_walk_are_declined(syntax: str) -> None:
    with pytest.raises(Unsupported):
        top_level_text(b"", syntax, STUDY)
