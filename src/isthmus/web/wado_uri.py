"""WADO-URI: GET /wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=… (PS3.18 9).

Supported parameters: `contentType` (application/dicom, image/jpeg, image/png,
image/gif; default image/jpeg for images, application/dicom otherwise),
`transferSyntax` (with application/dicom), `frameNumber`, `rows`, `columns`,
`windowCenter` + `windowWidth`, `imageQuality`, `annotation` (patient,
technique), `charset` (accepted, no effect) and `anonymize=yes` (with application/dicom:
`_anonymized`).  Refused with 400 because Isthmus does not implement them: `region`, and
presentation states (`presentationUID`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from isthmus.archive import Archive, Excluded, InstanceRow
from isthmus.web import media_types as mt
from isthmus.web.errors import HTTPError, bad_request, not_acceptable, not_found
from isthmus.web.params import non_negative_int, single, uid
from isthmus.web.pixels import can_transcode, rendered, transcoded
from isthmus.web.service import blocking, context
from isthmus.web.wado import stored_file

CONTENT_TYPES = (mt.DICOM, mt.JPEG, mt.PNG, mt.GIF)
KNOWN = {
    "requestType",
    "studyUID",
    "seriesUID",
    "objectUID",
    "contentType",
    "charset",
    "anonymize",
    "annotation",
    "rows",
    "columns",
    "region",
    "windowCenter",
    "windowWidth",
    "frameNumber",
    "imageQuality",
    "presentationUID",
    "presentationSeriesUID",
    "transferSyntax",
}
UNSUPPORTED = ("region", "presentationUID", "presentationSeriesUID")
# The de-identification project of `anonymize=yes`: its key gives every object the same
# new UIDs each time it is asked for, so the objects of a study stay one study.
ANONYMIZE_PROJECT = "wado-uri"


def routes() -> list[Route]:
    return [Route("/wado", wado, methods=["GET"])]


async def wado(request: Request) -> Response:
    """One object, as DICOM or rendered (PS3.18 9.4)."""
    _check_parameters(request)
    study = uid(_required(request, "studyUID"), "studyUID")
    series = uid(_required(request, "seriesUID"), "seriesUID")
    instance = uid(_required(request, "objectUID"), "objectUID")
    archive = context(request).archive
    rows = await blocking(archive.instances, study, series, instance)
    if not rows:
        raise not_found(
            f"object {instance} of series {series}, study {study} is not in the archive"
        )
    row = rows[0]
    content_type = _content_type(request, has_pixels=row.pixel_length is not None)
    if _anonymize(request):
        if content_type != mt.DICOM:
            raise bad_request("anonymize=yes needs contentType=application/dicom")
        return await _anonymized(request, archive, row)
    if content_type == mt.DICOM:
        return await _dicom(request, archive, row)
    frame = non_negative_int(request, "frameNumber", 1) or 1
    if frame > (row.number_of_frames or 1):
        raise not_found(
            f"frame {frame} does not exist (the object has {row.number_of_frames or 1})"
        )
    image = await rendered(archive, row, frame, content_type, _render_options(request))
    return Response(image, media_type=content_type)


def _check_parameters(request: Request) -> None:
    unknown = sorted(set(request.query_params) - KNOWN)
    if unknown:
        raise bad_request(f"unknown WADO-URI parameters: {', '.join(unknown)[:200]}")
    if single(request, "requestType") != "WADO":
        raise bad_request("requestType must be WADO")
    for name in UNSUPPORTED:
        if single(request, name):
            raise bad_request(f"{name} is not supported by Isthmus")


def _anonymize(request: Request) -> bool:
    """The anonymize parameter: absent, or the token "yes" (PS3.18 9.4.1)."""
    value = single(request, "anonymize")
    if value is None:
        return False
    if value.lower() != "yes":
        raise bad_request(f"anonymize {value[:20]!r}: the one value defined is 'yes'")
    return True


def _required(request: Request, name: str) -> str:
    value = single(request, name)
    if not value:
        raise bad_request(f"{name} is required")
    return value


def _content_type(request: Request, has_pixels: bool) -> str:
    """The first supported type of the contentType list (PS3.18 9.4, contentType)."""
    asked = single(request, "contentType")
    if not asked:
        return mt.JPEG if has_pixels else mt.DICOM
    for item in asked.split(","):
        media_type = item.split(";")[0].strip().lower()
        if media_type in CONTENT_TYPES:
            if media_type != mt.DICOM and not has_pixels:
                raise not_acceptable(
                    "the object has no pixel data to render; ask for contentType=application/dicom"
                )
            return media_type
    raise not_acceptable(f"contentType {asked[:80]!r}: supported are {', '.join(CONTENT_TYPES)}")


async def _dicom(request: Request, archive: Archive, row: InstanceRow) -> Response:
    archive.activity.instance("wado-uri", "sent", row.size)
    data = await _transcoded(request, archive, row)
    if data is not None:
        return Response(data, media_type=mt.DICOM)
    return await stored_file(archive, row, mt.DICOM)


async def _transcoded(request: Request, archive: Archive, row: InstanceRow) -> bytes | None:
    """The object in the transferSyntax asked for, or None when that is as stored
    (406 when it cannot be made, PS3.18 8.7.3.5)."""
    syntax = single(request, "transferSyntax")
    if not syntax or syntax == row.transfer_syntax_uid:
        return None
    uid(syntax, "transferSyntax")
    if not can_transcode(row.transfer_syntax_uid, syntax):
        raise not_acceptable(
            f"the object is stored in {row.transfer_syntax_uid} and cannot be sent in {syntax} here"
        )
    return await transcoded(archive, row, syntax)


async def _anonymized(request: Request, archive: Archive, row: InstanceRow) -> Response:
    """The object with its Individually Identifiable Information removed (PS3.18 9.4.1
    anonymize: the PS3.15 Annex E Basic Profile with Clean Pixel Data): a new SOP Instance
    UID and the other UIDs replaced, the same each time (`ANONYMIZE_PROJECT`).  Isthmus
    has no pixel rules here, so an object flagged Burned In Annotation = YES cannot be
    cleaned and gets 409 (9.4.2.3: a server unable to anonymize may answer an error)."""
    archive.activity.instance("wado-uri", "sent", row.size)
    data = await _transcoded(request, archive, row)
    try:
        out = await blocking(_deidentified, archive, row, data)
    except Excluded as exc:
        raise HTTPError(409, f"the object cannot be anonymized: {exc}") from None
    return Response(out, media_type=mt.DICOM)


def _deidentified(archive: Archive, row: InstanceRow, data: bytes | None) -> bytes:
    """`data` (or the stored object) de-identified in the project of `anonymize=yes`."""
    part10 = data if data is not None else archive.read_instance(row)
    return archive.deidentifier(ANONYMIZE_PROJECT).part10(part10)


def _render_options(request: Request) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rows = non_negative_int(request, "rows", maximum=8192)
    columns = non_negative_int(request, "columns", maximum=8192)
    if rows or columns:
        out["viewport"] = (rows or columns, columns or rows)  # render takes (rows, columns)
    center, width = single(request, "windowCenter"), single(request, "windowWidth")
    if (center is None) != (width is None):
        raise bad_request("windowCenter and windowWidth go together")
    if center is not None and width is not None:
        try:
            out["window"] = (float(center), float(width), "LINEAR")
        except ValueError:
            raise bad_request("windowCenter and windowWidth must be numbers") from None
        if out["window"][1] < 1:
            raise bad_request("windowWidth must be at least 1")
    annotation = single(request, "annotation")
    if annotation:
        labels = [a.strip().lower() for a in annotation.split(",") if a.strip()]
        if any(label not in ("patient", "technique") for label in labels):
            raise bad_request("annotation may be patient and/or technique")
        out["annotation"] = labels
    quality = non_negative_int(request, "imageQuality", maximum=100)
    if quality:
        out["quality"] = quality
    return out
