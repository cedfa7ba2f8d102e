"""STOW-RS with metadata and bulk data (PS3.18 10.5.1.2.2): build Part 10 instances.

The body holds metadata parts (`application/dicom+json`: a dataset or an array of
them; `application/dicom+xml`: one dataset) and bulk data parts.  A BulkDataURI in
the metadata names a bulk data part by its Content-Location, or by its Content-ID
written `cid:…`.  Pixel data sent as `application/octet-stream` is native; sent in
a compressed media type (image/jpeg, image/jls, image/jp2, …) it is encapsulated,
one frame per part, in the transfer syntax its `transfer-syntax` parameter (or the
media type's default, PS3.18 Table 8.7.3-5) names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import BytesIO
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID

from isthmus.web import media_types as mt
from isthmus.web.dicom_xml import from_xml
from isthmus.web.multipart import Part

PIXEL_KEY = "7FE00010"
SPECIFIC_CHARACTER_SET = "00080005"


class MetadataError(ValueError):
    """A metadata dataset that cannot become an instance; the message says why."""

    def __init__(self, message: str, dataset: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        dataset = dataset or {}
        self.sop_class_uid = _first(dataset.get("00080016"))
        self.sop_instance_uid = _first(dataset.get("00080018"))


def _first(entry: Any) -> str | None:
    if isinstance(entry, dict) and entry.get("Value"):
        value = entry["Value"][0]
        return value if isinstance(value, str) else None
    return None


class InstanceBuilder:
    """Pairs metadata parts with the bulk data parts they reference."""

    def __init__(self, view: memoryview, parts: list[Part]) -> None:
        self.view = view
        self.metadata = [
            p for p in parts if p.content_type in (mt.DICOM_JSON, mt.JSON, mt.DICOM_XML)
        ]
        self.bulk: dict[str, Part] = {}
        for part in parts:
            if part in self.metadata:
                continue
            location = part.headers.get("content-location")
            if location:
                self.bulk[location] = part
            content_id = part.headers.get("content-id", "").strip("<>")
            if content_id:
                self.bulk["cid:" + content_id] = part

    def datasets(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(part index, DICOM JSON dataset) for each dataset in the metadata parts."""
        for part in self.metadata:
            raw = bytes(self.view[part.start : part.end])
            try:
                if part.content_type == mt.DICOM_XML:
                    documents: Any = [from_xml(raw)]
                else:
                    documents = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                yield part.index, {"__error__": f"metadata part {part.index + 1}: {exc}"}
                continue
            for dataset in documents if isinstance(documents, list) else [documents]:
                yield (
                    part.index,
                    dataset
                    if isinstance(dataset, dict)
                    else {"__error__": f"metadata part {part.index + 1} is not a dataset"},
                )

    def part10(self, dataset: dict[str, Any]) -> bytes:
        """A Part 10 file for one metadata dataset; raises MetadataError."""
        if "__error__" in dataset:
            raise MetadataError(dataset["__error__"])
        pixel = dataset.get(PIXEL_KEY, {})
        pixel_part = self._part(pixel["BulkDataURI"], dataset) if "BulkDataURI" in pixel else None
        rest = unicode_metadata(
            {k: v for k, v in dataset.items() if k != PIXEL_KEY or pixel_part is None}
        )
        try:
            ds = Dataset.from_json(
                rest, bulk_data_uri_handler=lambda uri: self._bytes(uri, dataset)
            )
        except MetadataError:
            raise
        except Exception as exc:
            raise MetadataError(f"metadata cannot be read as DICOM JSON: {exc}", dataset) from None
        syntax = mt.EXPLICIT_VR_LE
        if pixel_part is not None:
            syntax = self._set_pixels(ds, pixel_part, pixel.get("vr"), dataset)
        return _encode(ds, syntax, dataset)

    def _part(self, uri: str, dataset: dict[str, Any]) -> Part:
        part = self.bulk.get(uri) or self.bulk.get(uri.rsplit("/", 1)[-1])
        if part is None:
            raise MetadataError(
                f"BulkDataURI {uri[:100]!r} names no part of the request "
                "(match a part's Content-Location or cid: Content-ID)",
                dataset,
            )
        return part

    def _bytes(self, uri: str, dataset: dict[str, Any]) -> bytes:
        part = self._part(uri, dataset)
        return bytes(self.view[part.start : part.end])

    def _set_pixels(self, ds: Dataset, part: Part, vr: str | None, dataset: dict[str, Any]) -> str:
        media_type = part.content_type
        data = bytes(self.view[part.start : part.end])
        if media_type in (mt.OCTET_STREAM, ""):
            ds.PixelData = data
            ds["PixelData"].VR = (
                vr
                if vr in ("OB", "OW")
                else ("OW" if int(ds.get("BitsAllocated", 16) or 16) > 8 else "OB")
            )
            return mt.EXPLICIT_VR_LE
        syntax = part.params.get("transfer-syntax") or mt.DEFAULT_SYNTAX.get(media_type)
        if not syntax or media_type not in [mt.pixel_media_type(syntax)]:
            raise MetadataError(
                f"pixel data in {media_type} with transfer syntax {syntax} cannot be stored",
                dataset,
            )
        ds.PixelData = encapsulate([data])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        return syntax

    def release(self) -> None:
        self.bulk.clear()
        self.metadata = []


def unicode_metadata(dataset: dict[str, Any]) -> dict[str, Any]:
    """`dataset` declaring ISO_IR 192 when a value is not ASCII.

    The text of DICOM JSON and XML is Unicode (PS3.18 F.2, F.3) whatever Specific
    Character Set (0008,0005) the metadata names, which is that of the data set it came
    from; written in that set (or the default repertoire when none is named), a
    character it lacks became '?'.  UTF-8 holds every character (PS3.3 C.12.1.1.2);
    metadata all in ASCII keeps the set it names."""
    if json.dumps(dataset, ensure_ascii=False).isascii():
        return dataset
    return {**dataset, SPECIFIC_CHARACTER_SET: {"vr": "CS", "Value": ["ISO_IR 192"]}}


def _encode(ds: Dataset, syntax: str, dataset: dict[str, Any]) -> bytes:
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not str(ds.get(keyword, "") or "").strip():
            raise MetadataError(f"metadata lacks {keyword}", dataset)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    out = BytesIO()
    try:
        dcmwrite(out, ds, enforce_file_format=True)
    except Exception as exc:
        raise MetadataError(f"dataset cannot be encoded: {exc}", dataset) from None
    return out.getvalue()
