"""Every transfer syntax among pydicom's bundled files: stored by STOW-RS, retrieved with
`transfer-syntax=*` byte for byte, and as Explicit VR Little Endian with identical pixels."""

from __future__ import annotations

import os
from functools import lru_cache
from io import BytesIO

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID, ExplicitVRLittleEndian
from tests.web.conftest import multipart_body, parse_multipart

from isthmus.dicom.part10 import split_part10

REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


@lru_cache(maxsize=1)
def samples() -> dict[str, str]:
    """The smallest bundled image file of each transfer syntax (only files in the wheel)."""
    root = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    found: dict[str, tuple[int, str]] = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                ts = str(ds.file_meta.TransferSyntaxUID)
            except Exception:
                continue
            if not all(ds.get(k) for k in REQUIRED) or "Rows" not in ds:
                continue
            try:
                _ = pydicom.dcmread(path).pixel_array
            except Exception:
                continue  # no decoder here, or no pixel data
            size = os.path.getsize(path)
            if ts not in found or size < found[ts][0]:
                found[ts] = (size, path)
    return {ts: path for ts, (_, path) in sorted(found.items())}


def test_the_bundled_files_cover_the_common_syntaxes():
    assert {
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.5",
    } <= set(samples())


@pytest.mark.parametrize(
    "transfer_syntax", list(samples()), ids=lambda ts: UID(ts).name.replace(" ", "_")
)
def test_stored_and_retrieved_in_every_transfer_syntax(http, transfer_syntax):
    path = samples()[transfer_syntax]
    with open(path, "rb") as fh:
        original = fh.read()
    ds = pydicom.dcmread(BytesIO(original))
    stored = http.post(
        "/studies",
        content=multipart_body([("application/dicom", original)]),
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b0undary'},
    )
    assert stored.status_code == 200, stored.text
    url = (
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )
    try:
        as_stored = http.get(
            url,
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        )
        [(headers, body)] = parse_multipart(as_stored)
        assert f"transfer-syntax={transfer_syntax}" in headers["content-type"]
        assert bytes(split_part10(body)[1]) == bytes(split_part10(original)[1])

        explicit = http.get(
            url,
            headers={
                "Accept": 'multipart/related; type="application/dicom";'
                f" transfer-syntax={ExplicitVRLittleEndian}"
            },
        )
        [(headers, body)] = parse_multipart(explicit)
        assert f"transfer-syntax={ExplicitVRLittleEndian}" in headers["content-type"]
        decoded = pydicom.dcmread(BytesIO(body))
        assert decoded.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert np.array_equal(decoded.pixel_array, ds.pixel_array)
    finally:
        assert http.delete(f"/studies/{ds.StudyInstanceUID}").status_code == 200
