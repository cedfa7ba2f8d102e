"""One instance per transfer syntax, from the files bundled with pydicom.

Nothing is downloaded: only files shipped inside the pydicom package are used
(``pydicom.data.get_testdata_file`` would fetch others from the network).  Each
copy gets fresh UIDs, so the samples never collide with each other, and is written
in the canonical form DICOM toolkits send on the wire (no group lengths, no
trailing padding, sequences and items of explicit length, encapsulated pixel
data as OB), so a receiver that keeps bytes "as sent" must keep exactly these.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from isthmus.testing.generate import ROOT

# transfer syntax UID → bundled file in that syntax
BUNDLED: dict[str, str] = {
    "1.2.840.10008.1.2": "MR_small_implicit.dcm",
    "1.2.840.10008.1.2.1": "MR_small.dcm",
    "1.2.840.10008.1.2.2": "MR_small_bigendian.dcm",
    "1.2.840.10008.1.2.1.99": "image_dfl.dcm",
    "1.2.840.10008.1.2.4.50": "SC_rgb_jpeg_dcmtk.dcm",
    "1.2.840.10008.1.2.4.51": "JPEG-lossy.dcm",
    "1.2.840.10008.1.2.4.70": "SC_rgb_jpeg_gdcm.dcm",
    "1.2.840.10008.1.2.4.80": "MR_small_jpeg_ls_lossless.dcm",
    "1.2.840.10008.1.2.4.81": "JPEGLSNearLossless_16.dcm",
    "1.2.840.10008.1.2.4.90": "MR_small_jp2klossless.dcm",
    "1.2.840.10008.1.2.4.91": "JPEG2000.dcm",
    "1.2.840.10008.1.2.5": "MR_small_RLE.dcm",
}


def bundled_path(name: str) -> Path:
    """A test file shipped with pydicom (never downloaded)."""
    path = Path(pydicom.__file__).parent / "data" / "test_files" / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} is not bundled with this pydicom")
    return path


def canonical(ds: Dataset) -> Dataset:
    """Fresh study/series/instance UIDs and the on-the-wire form described above."""
    for tag in [e.tag for e in ds if e.tag.element == 0 or e.tag == 0xFFFCFFFC]:
        del ds[tag]
    ds.StudyInstanceUID = generate_uid(ROOT)
    ds.SeriesInstanceUID = generate_uid(ROOT)
    ds.SOPInstanceUID = generate_uid(ROOT)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = False
            for item in elem.value:
                item.is_undefined_length_sequence_item = False
    if ds.file_meta.TransferSyntaxUID.is_encapsulated and "PixelData" in ds:
        ds["PixelData"].VR = "OB"
    return ds


def write_samples(folder: Path, syntaxes: list[str] | None = None) -> dict[str, Path]:
    """Write one sample per transfer syntax into `folder`; returns {syntax UID: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for ts in syntaxes or list(BUNDLED):
        ds = canonical(dcmread(bundled_path(BUNDLED[ts])))
        path = folder / f"{BUNDLED[ts].removesuffix('.dcm')}.{ts}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out[ts] = path
    return out
