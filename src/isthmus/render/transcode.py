"""Transcoding a Part 10 file to another transfer syntax (PS3.5 10, Annex A).

Used by WADO-RS when a client asks for a transfer syntax other than the stored one
(PS3.18 8.7.3.5.2) and by C-MOVE/C-GET when the peer did not accept the stored syntax in any
presentation context (PS3.4 C.4.2.3.1 / C.4.3.3.1).

What can be done here:
- any native syntax (Implicit/Explicit VR Little Endian, Explicit VR Big Endian, Deflated)
  to any other native syntax, pixel data byte-swapped as PS3.5 A.3 requires;
- every compressed syntax pydicom's decoders read here to any native syntax;
- native (or decodable) to the lossless syntaxes an encoder exists for (RLE Lossless always;
  JPEG-LS Lossless with pyjpegls; JPEG 2000 Lossless with pylibjpeg-openjpeg).
Lossy encoding is never done (it would need a new SOP Instance UID).  The SOP Instance UID is
kept: decompressing gives the pixel values the compressed data stands for.
"""

from __future__ import annotations

import zlib
from io import BytesIO

import numpy as np
from pydicom import dcmread, uid
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_dataset

from isthmus.dicom import part10
from isthmus.render.decode import can_decode, little_endian_bytes
from isthmus.render.encode import LOSSLESS_ENCODINGS, can_encode
from isthmus.render.errors import DecodeError, TranscodeError
from isthmus.render.pixel_data import PIXEL_KEYWORDS

# Bytes per swapped word of binary VRs when the byte order changes (PS3.5 7.3).
SWAP_WORDS = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}


def can_transcode(source_ts: str, target_ts: str) -> bool:
    """True when a file in `source_ts` can be rewritten in `target_ts` here.

    Decided by the syntaxes alone; a particular image may still be refused by an encoder
    (e.g. 32-bit samples for JPEG-LS), which `transcode` reports as TranscodeError.
    """
    source, target = uid.UID(source_ts), uid.UID(target_ts)
    if not (source.is_transfer_syntax and target.is_transfer_syntax):
        return False
    if source == target:
        return True
    if not can_decode(source):
        return False
    return not target.is_compressed or can_encode(target)


def transcode(part10_bytes: bytes | bytearray | memoryview, target_ts: str) -> bytes:
    """The same instance as a complete Part 10 file in `target_ts`."""
    data = bytes(part10_bytes)
    meta, dataset_bytes = part10.split_part10(data)
    if meta is None or "TransferSyntaxUID" not in meta:
        raise TranscodeError("not a Part 10 file with a transfer syntax in its file meta")
    source = str(meta.TransferSyntaxUID).strip()
    target = str(target_ts).strip()
    if source == target:
        return data
    if not can_transcode(source, target):
        raise TranscodeError(_refusal(source, target))
    try:
        ds = dcmread(BytesIO(data))
    except Exception as exc:
        raise DecodeError(f"dataset cannot be parsed: {exc}") from exc
    _to_native_little_endian(ds, source)
    if uid.UID(target).is_compressed and "PixelData" in ds:
        _compress(ds, target)
    body = _encode(ds, target)
    source_aet = str(meta.get("SourceApplicationEntityTitle", "") or "") or None
    return part10.file_meta(str(ds.SOPClassUID), str(ds.SOPInstanceUID), target, source_aet) + body


def _refusal(source: str, target: str) -> str:
    s, t = uid.UID(source), uid.UID(target)
    if not t.is_transfer_syntax:
        return f"{target} is not a transfer syntax"
    if not can_decode(s):
        return f"no decoder here for {s.name} ({s})"
    return (
        f"no lossless encoder here for {t.name} ({t}); "
        f"available: native syntaxes and {', '.join(_encodable()) or 'none'}"
    )


def _encodable() -> list[str]:
    return [uid.UID(ts).name for ts in LOSSLESS_ENCODINGS if can_encode(ts)]


def _to_native_little_endian(ds: Dataset, source: str) -> None:
    """Leave `ds` as it would be read from Explicit VR Little Endian (pixel data native)."""
    ts = uid.UID(source)
    if ts.is_compressed and "PixelData" in ds:
        try:
            ds.decompress(generate_instance_uid=False, as_rgb=True)
        except Exception as exc:
            raise DecodeError(
                f"cannot decompress {ts.name}: {str(exc).splitlines()[0] if str(exc) else exc!r}"
            ) from exc
        for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
            ds.pop(keyword, None)  # PS3.3 C.7.6.3.1.8: only for encapsulated data
    elif not ts.is_little_endian:
        _swap_binary_values(ds)
        _swap_pixels(ds, to_big_endian=False)
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian


def _compress(ds: Dataset, target: str) -> None:
    if ds.get("BitsAllocated") == 1 or ds.get("PhotometricInterpretation") == "YBR_FULL_422":
        raise TranscodeError(
            f"{uid.UID(target).name} cannot encode this image "
            f"(Bits Allocated 1 or native YBR_FULL_422)"
        )
    if ds.get("SamplesPerPixel", 1) > 1 and ds.get("PlanarConfiguration") == 1:
        interleaved = ds.pixel_array  # (frames,) rows, columns, samples
        ds.PlanarConfiguration = 0
        ds.PixelData = little_endian_bytes(interleaved)
    try:
        ds.compress(target, generate_instance_uid=False)
    except Exception as exc:
        raise TranscodeError(
            f"{uid.UID(target).name} cannot encode this image: "
            f"{str(exc).splitlines()[0] if str(exc) else exc!r}"
        ) from exc


def _encode(ds: Dataset, target: str) -> bytes:
    """The dataset (no file meta) encoded in `target` (PS3.5 A.1-A.5)."""
    ts = uid.UID(target)
    big_endian = not ts.is_little_endian
    if big_endian:
        correct_ambiguous_vr(ds, True)
        _swap_binary_values(ds)
        _swap_pixels(ds, to_big_endian=True)
    for _ in ds.iterall():  # parse every element now: a file may lie about its VR encoding
        pass
    fp = DicomBytesIO()
    fp.is_little_endian = not big_endian
    fp.is_implicit_VR = ts.is_implicit_VR
    try:
        write_dataset(fp, ds)
    except Exception as exc:
        raise TranscodeError(f"dataset cannot be encoded in {ts.name}: {exc}") from exc
    body = fp.getvalue()
    if ts.is_deflated:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = compressor.compress(body) + compressor.flush()
    return body


def _swap_pixels(ds: Dataset, to_big_endian: bool) -> None:
    """Reverse the byte order of native pixel data (PS3.5 A.3, 8.1.1).

    Bits Allocated > 8: each pixel word.  8 or 1 bit: each 16-bit word if the VR is OW;
    written to big endian, 8-bit data is made OB so its bytes stay in order.
    """
    for tag in PIXEL_KEYWORDS:
        if tag not in ds:
            continue
        elem = ds[tag]
        bits = int(ds.get("BitsAllocated") or 8)
        if bits > 8:
            elem.value = _swap(elem.value, bits // 8)
        elif elem.VR == "OW" and to_big_endian:
            elem.VR = "OB"
        elif elem.VR == "OW":
            elem.value = _swap(elem.value, 2)


def _swap_binary_values(ds: Dataset) -> None:
    """Reverse OW/OL/OF/OD/OV values (LUT data, overlay data, icon pixels...) except the
    top-level pixel data, which _swap_pixels handles with its Bits Allocated."""
    top_level_pixels = [ds[tag] for tag in PIXEL_KEYWORDS if tag in ds]
    for elem in ds.iterall():
        word = SWAP_WORDS.get(elem.VR)
        if (
            word
            and isinstance(elem.value, (bytes, bytearray))
            and not any(elem is pixels for pixels in top_level_pixels)
        ):
            elem.value = _swap(elem.value, word)


def _swap(value: bytes | bytearray, word: int) -> bytes:
    usable = len(value) - len(value) % word
    swapped = np.frombuffer(value, dtype=f">u{word}", count=usable // word).byteswap().tobytes()
    return swapped + bytes(value[usable:])
