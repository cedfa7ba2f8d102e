"""A realistic archive population of any size, instance by instance, deterministic.

The mix (issue 9): about 20 instances per series, 3–5 series per study, 1–6 studies per
patient, names from common family and given names, study dates spread over 2008–2026,
modalities CT, MR, CR, US and a few others.  Instance `n` always has the same attributes,
so an archive of 100,000 instances is the first 100,000 of the 1,000,000 one, and Isthmus
and Orthanc can be loaded with the same instances.

Each instance is a small image (8×8, 16-bit) encoded from one template made with pydicom:
every varying attribute has a fixed width in the template, so an instance is the template
with its placeholders replaced (a few microseconds, not a pydicom encode per instance).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

ROOT = "1.2.826.0.1.3680043.10.1386.7."  # Isthmus benchmark root (under the test root)
FAMILIES = (
    "SMITH JOHNSON WILLIAMS BROWN JONES GARCIA MILLER DAVIS RODRIGUEZ MARTINEZ HERNANDEZ "
    "LOPEZ GONZALEZ WILSON ANDERSON THOMAS TAYLOR MOORE JACKSON MARTIN LEE PEREZ THOMPSON "
    "WHITE HARRIS SANCHEZ CLARK RAMIREZ LEWIS ROBINSON WALKER YOUNG ALLEN KING WRIGHT SCOTT "
    "TORRES NGUYEN HILL FLORES GREEN ADAMS NELSON BAKER HALL RIVERA CAMPBELL MITCHELL CARTER "
    "ROBERTS MULLER SCHMIDT SCHNEIDER FISCHER WEBER MEYER WAGNER BECKER DUBOIS LAURENT "
    "BERNARD ROUX ROSSI RUSSO FERRARI ESPOSITO BIANCHI ROMANO SILVA SANTOS OLIVEIRA COSTA "
    "KOWALSKI NOWAK WOJCIK TANAKA SATO SUZUKI WATANABE KIM PARK CHOI WANG LI ZHANG LIU CHEN"
).split()
GIVEN = (
    "JAMES MARY ROBERT PATRICIA JOHN JENNIFER MICHAEL LINDA DAVID ELIZABETH WILLIAM BARBARA "
    "RICHARD SUSAN JOSEPH JESSICA THOMAS SARAH CHARLES KAREN ANNA LUCAS EMMA NOAH SOFIA LEO"
).split()
MODALITIES = ("CT", "CT", "CT", "MR", "MR", "CR", "CR", "US", "MG", "PT")
DESCRIPTIONS = {
    "CT": "CT CHEST ABDOMEN",
    "MR": "MR BRAIN W WO",
    "CR": "XR CHEST 2 VIEWS",
    "US": "US ABDOMEN",
    "MG": "MAMMO SCREENING",
    "PT": "PET CT WHOLEBODY",
}
SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
}
PER_SERIES = 20


@dataclass(frozen=True)
class Study:
    """One study of the population: who, when, what, and how many instances."""

    index: int
    patient: int
    modality: str
    series_count: int
    date: str

    @property
    def instances(self) -> int:
        return self.series_count * PER_SERIES

    @property
    def uid(self) -> str:
        return uid(1, self.index)

    @property
    def patient_id(self) -> str:
        return f"PID{self.patient:09d}"

    @property
    def patient_name(self) -> str:
        return patient_name(self.patient)

    @property
    def accession(self) -> str:
        return f"A{self.index:09d}"


def uid(kind: int, number: int, run: int = 0) -> str:
    """A UID of fixed length (52): kind 1 study, 2 series, 3 instance; `run` keeps the
    batches sent to measure ingest apart from the population (run 0)."""
    return f"{ROOT}{kind}.{100000 + run}.{10**12 + number}"


def patient_name(patient: int) -> str:
    family = FAMILIES[patient % len(FAMILIES)]
    given = GIVEN[(patient // len(FAMILIES)) % len(GIVEN)]
    return f"{family}^{given}"


def _mix(n: int) -> int:
    """A cheap deterministic hash of n (splitmix-like), for spreading attributes."""
    n = (n * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    n ^= n >> 31
    return (n * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF


def studies() -> Iterator[Study]:
    """The population's studies in order: patient by patient, 1–6 studies each."""
    index = 0
    patient = 0
    while True:
        for _ in range(1 + _mix(patient) % 6):
            h = _mix(index + 7)
            day = h % (19 * 365)
            year, rest = 2008 + day // 365, day % 365
            date = f"{year}{1 + rest // 31 % 12:02d}{1 + rest % 28:02d}"
            yield Study(index, patient, MODALITIES[h % len(MODALITIES)], 3 + (h >> 8) % 3, date)
            index += 1
        patient += 1


def first_studies(instances: int) -> list[Study]:
    """The studies holding the first `instances` instances (the last one may be cut)."""
    out, total = [], 0
    for s in studies():
        if total >= instances:
            break
        out.append(s)
        total += s.instances
    return out


@dataclass(frozen=True)
class Instance:
    study: Study
    series: int  # 1-based within the study
    number: int  # 1-based within the series
    run: int = 0

    @property
    def series_uid(self) -> str:
        return uid(2, self.study.index * 8 + self.series, self.run)

    @property
    def sop_uid(self) -> str:
        serial = (self.study.index * 8 + self.series) * 64 + self.number
        return uid(3, serial, self.run)


def instances(limit: int) -> Iterator[Instance]:
    """The first `limit` instances of the population."""
    count = 0
    for s in studies():
        for series in range(1, s.series_count + 1):
            for number in range(1, PER_SERIES + 1):
                if count >= limit:
                    return
                yield Instance(s, series, number)
                count += 1


# Placeholders: one per varying attribute, each exactly as wide as its values.
_P = {
    "sop": "Q" * 52,
    "study": "R" * 52,
    "series": "S" * 52,
    "name": "N" * 24,
    "pid": "I" * 12,
    "acc": "J" * 10,
    "date": "D" * 8,
    "birth": "B" * 8,
    "sex": "%%",
    "snum": "9871",
    "inum": "987653",
}


def _template_dataset(modality: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = SOP_CLASS[modality]
    ds.SOPInstanceUID = _P["sop"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = _P["date"]
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.AccessionNumber = _P["acc"]
    ds.Modality = modality
    ds.Manufacturer = "ISTHMUS BENCH"
    ds.InstitutionName = "GENERAL HOSPITAL"
    ds.ReferringPhysicianName = "WELBY^MARCUS"
    ds.StudyDescription = DESCRIPTIONS[modality]
    ds.SeriesDescription = DESCRIPTIONS[modality]
    ds.PatientName = _P["name"]
    ds.PatientID = _P["pid"]
    ds.PatientBirthDate = _P["birth"]
    ds.PatientSex = _P["sex"]
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = _P["study"]
    ds.SeriesInstanceUID = _P["series"]
    ds.StudyID = "1"
    ds.SeriesNumber = _P["snum"]
    ds.InstanceNumber = _P["inum"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(128))
    return ds


@cache
def _templates(modality: str) -> tuple[bytes, bytes]:
    """(bare dataset, Part 10 file) of a modality's template, Explicit VR Little Endian."""
    with pydicom.config.disable_value_validation():
        ds = _template_dataset(modality)
        bare = io.BytesIO()
        pydicom.dcmwrite(bare, ds, implicit_vr=False, little_endian=True)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
        ds.file_meta.MediaStorageSOPInstanceUID = _P["sop"]
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = ROOT + "1"
        part10 = io.BytesIO()
        pydicom.dcmwrite(part10, ds, enforce_file_format=True)
    return bare.getvalue(), part10.getvalue()


def encode(item: Instance, part10: bool = False) -> bytes:
    """The instance's bytes: a bare dataset (as a C-STORE carries it) or a Part 10 file."""
    data = _templates(item.study.modality)[1 if part10 else 0]
    s = item.study
    sex = "F " if s.patient % 2 else "M "
    birth = f"{1930 + s.patient % 80}{1 + s.patient % 12:02d}{1 + s.patient % 28:02d}"
    values = {  # the numeric placeholders first: UIDs put digits into the data
        "snum": f"{item.series:4d}",
        "inum": f"{item.number:6d}",
        "sop": item.sop_uid,
        "study": uid(1, s.index, item.run),
        "series": item.series_uid,
        "name": s.patient_name.ljust(24),
        "pid": s.patient_id,
        "acc": s.accession,
        "date": s.date,
        "birth": birth,
        "sex": sex,
    }
    for key, value in values.items():
        placeholder = _P[key].encode()
        encoded = value.encode("ascii")
        assert len(encoded) == len(placeholder), (key, value)
        data = data.replace(placeholder, encoded)
    return data


def batch(count: int, run: int) -> list[Instance]:
    """`count` new instances (new studies of the population's patients) for ingest run
    `run` (≥ 1): the first instances of the population under UIDs of their own."""
    return [Instance(i.study, i.series, i.number, run) for i in instances(count)]
