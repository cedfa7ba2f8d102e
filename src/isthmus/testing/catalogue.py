"""A small archive with known answers, for query tests (C-FIND, QIDO-RS, matching).

Six studies of five patients with fixed, readable UIDs: study "A" has Study
Instance UID ``study_uid("A")``, its series n ``series_uid("A", n)``, and so on.
Dates, times, names and accession numbers are chosen so that every PS3.4 C.2.2.2
matching kind has a case that selects some studies and not others.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset

from isthmus.testing.generate import ROOT, StudySpec, ct_instance

if TYPE_CHECKING:
    from isthmus.archive import Archive

BASE = ROOT + "100."


@dataclass(frozen=True)
class Entry:
    key: str
    patient_name: str
    patient_id: str
    date: str
    time: str
    accession: str
    description: str
    modalities: tuple[str, ...]  # one series per modality
    instances: int = 1  # per series
    institution: str = "ISTHMUS GENERAL"
    charset: str | None = None


ENTRIES: tuple[Entry, ...] = (
    Entry("A", "SMITH^JOHN", "PID0001", "20190615", "083000", "ACC1", "CT HEAD", ("CT", "CT"), 2),
    Entry("B", "SMITH^JOHN", "PID0001", "20200310", "141500", "ACC2", "MR KNEE", ("MR",)),
    Entry("C", "Smith^Anna", "PID0002", "20201231", "235959", "ACC3", "CT CHEST", ("CT",)),
    Entry(
        "D",
        "DOE^JANE",
        "PID0003",
        "20210101",
        "000000",
        "ACC4",
        "CT ABDOMEN",
        ("CT", "SR"),
        institution="OTHER HOSPITAL",
    ),
    Entry(
        "E",
        "Yamada^Tarou=山田^太郎=やまだ^たろう",
        "PID0004",
        "20200101",
        "120000",
        "ACC5",
        "US ABDOMEN",
        ("US",),
        charset="ISO_IR 192",
    ),
    Entry("F", "SMYTHE^JOHN", "PID0005", "20150505", "091500", "ACC%6", "CT SPINE", ("CT",)),
)

BY_KEY = {e.key: e for e in ENTRIES}


def study_uid(key: str) -> str:
    return f"{BASE}{ord(key)}"


def series_uid(key: str, series: int) -> str:
    return f"{study_uid(key)}.{series}"


def sop_uid(key: str, series: int, number: int) -> str:
    return f"{series_uid(key, series)}.{number}"


def key_of(study_instance_uid: str) -> str:
    """The catalogue key ("A"…) of a Study Instance UID."""
    return chr(int(study_instance_uid.removeprefix(BASE).split(".")[0]))


def instance_count(key: str | None = None) -> int:
    entries = [BY_KEY[key]] if key else ENTRIES
    return sum(len(e.modalities) * e.instances for e in entries)


def datasets() -> Iterator[Dataset]:
    """Every instance of the catalogue (16×16 CT-like images, Explicit VR LE)."""
    rng = np.random.default_rng(7)
    for e in ENTRIES:
        spec = StudySpec(
            patient_name=e.patient_name,
            patient_id=e.patient_id,
            study_date=e.date,
            study_time=e.time,
            accession=e.accession,
            description=e.description,
            rows=16,
            columns=16,
            charset=e.charset,
        )
        for s, modality in enumerate(e.modalities, start=1):
            for n in range(1, e.instances + 1):
                ds = ct_instance(spec, study_uid(e.key), series_uid(e.key, s), s, n, rng)
                ds.SOPInstanceUID = sop_uid(e.key, s, n)
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                ds.Modality = modality
                ds.InstitutionName = e.institution
                ds.SeriesTime = e.time
                yield ds


def write(folder: Path) -> list[Path]:
    """The catalogue as Part 10 files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets():
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def load(archive: Archive, folder: Path) -> int:
    """Store the catalogue into an Archive; returns the number stored."""
    stored = 0
    for path in write(folder):
        result = archive.store(path.read_bytes())
        if result.status != "stored":
            raise RuntimeError(f"catalogue: {path.name} not stored: {result.reason}")
        stored += 1
    return stored
