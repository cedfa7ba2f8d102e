"""The fast header parser gives the same DICOM JSON as pydicom, for every bundled file."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pydicom.data
import pytest

from isthmus.dicom import headers, part10, uids
from isthmus.dicom.part10 import InvalidDicom, _fast_header, _pydicom_header


def _little_endian_files() -> list[str]:
    out = []
    # pydicom's bundled files only: get_testdata_files() may try to download more.
    folder = Path(pydicom.data.__file__).parent / "test_files"
    for path in sorted(str(p) for p in folder.rglob("*.dcm")):
        with open(path, "rb") as fh:
            data = fh.read()
        try:
            meta, _ = part10.split_part10(data)
            ts = str(meta.TransferSyntaxUID) if meta is not None else ""
            _implicit, little, deflated = uids.encoding(ts)
        except Exception:
            continue
        if little and not deflated:
            out.append(path)
    return out


def _normalized(model: Any) -> Any:
    """Equal up to what the two paths may legitimately differ in: empty strings vs
    null, spaces around CS/LO values (insignificant, PS3.5 6.2), pixel data's VR."""
    if isinstance(model, dict):
        out = {k: _normalized(v) for k, v in model.items()}
        if "7FE00010" in out:
            out["7FE00010"].pop("vr", None)
        return out
    if isinstance(model, list):
        return [_normalized(v) for v in model]
    if isinstance(model, str):
        return model.strip() or None
    return model


FILES = _little_endian_files()


@pytest.mark.parametrize("path", FILES, ids=[p.rsplit("/", 1)[-1] for p in FILES])
def test_fast_parser_matches_pydicom(path: str) -> None:
    with open(path, "rb") as fh:
        meta, body = part10.split_part10(fh.read())
    ts = str(meta.TransferSyntaxUID)
    implicit, little, _ = uids.encoding(ts)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    try:
        slow = _pydicom_header(body, implicit, little, ts, body, False)
    except InvalidDicom:
        # Refused by pydicom: the fast path must refuse too, or decline (→ pydicom).
        try:
            declined = _fast_header(body, implicit, ts, body, False) is None
        except InvalidDicom:
            declined = True
        assert declined
        return
    finally:
        logging.disable(logging.NOTSET)
    try:
        fast = _fast_header(body, implicit, ts, body, False)
    except InvalidDicom as exc:
        # pydicom reads a truncated file up to the cut and drops the rest; the archive
        # refuses it instead of storing half an instance (issue 15).
        assert "truncated" in str(exc)
        return
    if fast is None:
        pytest.skip("declined by the fast parser (pydicom handles it)")
    assert _normalized(fast.json) == _normalized(slow.json)
    assert (fast.pixel_offset, fast.pixel_length) == (slow.pixel_offset, slow.pixel_length)


def test_most_bundled_files_take_the_fast_path() -> None:
    taken = 0
    for path in FILES:
        with open(path, "rb") as fh:
            meta, body = part10.split_part10(fh.read())
        try:
            headers.parse(body, uids.encoding(str(meta.TransferSyntaxUID))[0], "x/")
            taken += 1
        except (headers.Unsupported, ValueError):
            pass
    assert taken >= 0.8 * len(FILES)


def test_iso_2022_character_sets_are_left_to_pydicom() -> None:
    # (0008,0005) "\ISO 2022 IR 87": code extensions need pydicom's decoder.
    value = b"\\ISO 2022 IR 87"
    element = b"\x08\x00\x05\x00CS" + len(value).to_bytes(2, "little") + value
    with pytest.raises(headers.Unsupported):
        headers.parse(element, False, "x/")


def test_truncated_pixel_data_is_refused() -> None:
    element = b"\xe0\x7f\x10\x00OW\x00\x00" + (1000).to_bytes(4, "little") + b"\x00" * 10
    with pytest.raises(ValueError):
        headers.parse(element, False, "x/")
