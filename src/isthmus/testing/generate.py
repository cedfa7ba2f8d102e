"""Synthetic but realistic DICOM data, generated with pydicom (nothing is downloaded)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, Unpack

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ROOT = "1.2.826.0.1.3680043.10.1386.9."  # Isthmus test root


@dataclass
class StudySpec:
    patient_name: str = "DOE^JANE"
    patient_id: str = "PID001"
    study_date: str = "20240115"
    study_time: str = "101500"
    accession: str = "ACC001"
    description: str = "CT CHEST"
    modality: str = "CT"
    series_count: int = 1
    instances_per_series: int = 10
    rows: int = 64
    columns: int = 64
    study_uid: str | None = None
    charset: str | None = None


def ct_instance(
    spec: StudySpec,
    study_uid: str,
    series_uid: str,
    series_number: int,
    number: int,
    rng: np.random.Generator | None = None,
) -> Dataset:
    """One CT image (16-bit signed, rescale slope/intercept) with a proper file meta."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    sop_uid = generate_uid(ROOT)
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if spec.charset:
        ds.SpecificCharacterSet = spec.charset
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = spec.study_date
    ds.StudyTime = spec.study_time
    ds.SeriesDate = spec.study_date
    ds.ContentDate = spec.study_date
    ds.AccessionNumber = spec.accession
    ds.StudyID = "1"
    ds.StudyDescription = spec.description
    ds.SeriesDescription = f"{spec.description} series {series_number}"
    ds.ReferringPhysicianName = "WHO^CARES"
    ds.InstitutionName = "ISTHMUS GENERAL"
    ds.Modality = spec.modality
    ds.SeriesNumber = series_number
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [0.0, 0.0, float(number)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SliceThickness = 1.0
    ds.PixelSpacing = [0.7, 0.7]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    rng = rng or np.random.default_rng(number)
    yy, xx = np.mgrid[0 : spec.rows, 0 : spec.columns]
    circle = ((yy - spec.rows / 2) ** 2 + (xx - spec.columns / 2) ** 2) < (
        min(spec.rows, spec.columns) / 3
    ) ** 2
    pixels = np.where(circle, 1064 + number, 24).astype(np.int16)
    pixels += rng.integers(0, 20, size=pixels.shape, dtype=np.int16)
    ds.PixelData = pixels.tobytes()
    return ds


def study(spec: StudySpec) -> Iterator[Dataset]:
    """Every instance of one study."""
    study_uid = spec.study_uid or generate_uid(ROOT)
    rng = np.random.default_rng(abs(hash(study_uid)) % (2**32))
    for s in range(1, spec.series_count + 1):
        series_uid = generate_uid(ROOT)
        for n in range(1, spec.instances_per_series + 1):
            yield ct_instance(spec, study_uid, series_uid, s, n, rng)


def write_study(spec: StudySpec, folder: Path) -> list[Path]:
    """Write a study as Part 10 files; returns their paths in instance order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in study(spec):
        path = folder / f"{ds.SeriesNumber:03d}_{ds.InstanceNumber:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


class SeriesOptions(TypedDict, total=False):
    """The StudySpec fields patients() leaves to its caller (the same for every study)."""

    study_time: str
    modality: str
    series_count: int
    instances_per_series: int
    rows: int
    columns: int


def patients(count: int, studies_each: int = 1, **kwargs: Unpack[SeriesOptions]) -> list[StudySpec]:
    """Several patients with distinct names, IDs, dates and accession numbers."""
    names = [
        "SMITH^JOHN",
        "Smith^Anna",
        "DOE^JANE",
        "MÜLLER^HANS",
        "O'BRIEN^PAT",
        "NGUYEN^VAN",
        "GARCIA^MARIA",
        "SMYTHE^JOHN",
        "BROWN^ALEX",
        "LEE^KIM",
    ]
    specs = []
    base = dt.date(2020, 1, 1)
    for p in range(count):
        for s in range(studies_each):
            i = p * studies_each + s
            specs.append(
                StudySpec(
                    patient_name=names[p % len(names)] + ("" if p < len(names) else f"{p}"),
                    patient_id=f"PID{p:04d}",
                    study_date=(base + dt.timedelta(days=37 * i)).strftime("%Y%m%d"),
                    accession=f"ACC{i:05d}",
                    description=f"STUDY {i}",
                    charset="ISO_IR 192" if not names[p % len(names)].isascii() else None,
                    **kwargs,
                )
            )
    return specs
