"""WADO-RS bulk data: the values metadata refers to by BulkDataURI (PS3.18 10.4.1.1.4).

`/studies/{s}/series/{r}/instances/{i}/bulkdata/{tag}`, where `tag` is the 8-digit
tag of a top-level binary attribute (ingest writes these URIs).  The archive says
where the value is (Archive.bulk_data): native pixel data is streamed from its byte
range in the stored file, chunk by chunk; other values come from the header.  HTTP
range requests (RFC 9110 14) select part of the value.  Pixel data that is not one
byte range (Archive.pixel_data_as_frames) is answered with its frames, as /frames
would.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from isthmus.archive import Archive, BulkData, InstanceRow, NoBulkData
from isthmus.web import media_types as mt
from isthmus.web.errors import HTTPError, not_found
from isthmus.web.multipart import MultipartWriter
from isthmus.web.negotiation import Offer, content_type, negotiate
from isthmus.web.params import tag as parse_tag
from isthmus.web.pixels import frames_of
from isthmus.web.service import ClosingStreamingResponse, blocking, context
from isthmus.web.wado import CHUNK, find_rows, missing_file

OFFERS = [
    Offer(mt.OCTET_STREAM, True, frozenset({mt.EXPLICIT_VR_LE}), mt.EXPLICIT_VR_LE),
    Offer(mt.OCTET_STREAM, False, frozenset({mt.EXPLICIT_VR_LE}), mt.EXPLICIT_VR_LE),
]
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def routes() -> list[Route]:
    return [
        Route(
            "/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}",
            retrieve_bulkdata,
            methods=["GET"],
        )
    ]


async def retrieve_bulkdata(request: Request) -> Response:
    tag = parse_tag(request.path_params["tag"])
    row = (await find_rows(request))[0]
    archive = context(request).archive
    if archive.pixel_data_as_frames(row, tag):
        return await _pixel_frames(request, archive, row)
    choice = negotiate(request, OFFERS)
    value = await _open_value(archive, row, tag)
    return _ranged(
        request,
        choice.multipart,
        value.length,
        lambda first, size: _chunks(value, first, size),
        value.close,
    )


async def _open_value(archive: Archive, row: InstanceRow, tag: int) -> BulkData:
    try:
        return await blocking(archive.bulk_data, row, tag)
    except NoBulkData as exc:
        raise not_found(str(exc.args[0])) from None
    except KeyError:
        raise missing_file(row) from None


async def _chunks(value: BulkData, first: int, size: int) -> AsyncIterator[bytes]:
    """`size` bytes of the value from `first`, CHUNK by CHUNK (each read in a worker
    thread); closes the value."""
    try:
        position, end = first, first + size
        while position < end:
            chunk = await blocking(value.read, position, min(CHUNK, end - position))
            if not chunk:
                break
            position += len(chunk)
            yield chunk
    finally:
        value.close()


async def _pixel_frames(request: Request, archive: Archive, row: InstanceRow) -> Response:
    """Encapsulated pixel data: every frame as stored, one per part."""
    count = row.number_of_frames or 1
    stored_type = mt.pixel_media_type(row.transfer_syntax_uid)
    offers = [
        Offer(stored_type, True, None, mt.ANY_SYNTAX),
        Offer(mt.OCTET_STREAM, True, frozenset({mt.EXPLICIT_VR_LE}), mt.EXPLICIT_VR_LE),
    ]
    if count == 1:
        offers += [
            Offer(stored_type, False, None, mt.ANY_SYNTAX),
            Offer(mt.OCTET_STREAM, False, frozenset({mt.EXPLICIT_VR_LE}), mt.EXPLICIT_VR_LE),
        ]
    choice = negotiate(request, offers)
    frames = await frames_of(archive, row, list(range(1, count + 1)), choice.transfer_syntax)
    if not choice.multipart:
        return Response(frames[0].data, media_type=frames[0].media_type)
    writer = MultipartWriter()
    body = (
        b"".join(
            writer.part(f"{f.media_type}; transfer-syntax={f.transfer_syntax}") + f.data
            for f in frames
        )
        + writer.close()
    )
    return Response(body, media_type=content_type(choice, writer.boundary))


def _ranged(request: Request, multipart: bool, total: int, body, cleanup) -> Response:  # type: ignore[no-untyped-def]
    """The value, or the byte range the Range header asks for (206, RFC 9110 15.3.7)."""
    first, size, status = 0, total, 200
    headers = {"Accept-Ranges": "bytes"}
    wanted = request.headers.get("range")
    selected = _parse_range(wanted, total, cleanup) if wanted else None
    if selected is not None:
        first, size = selected
        status = 206
        headers["Content-Range"] = f"bytes {first}-{first + size - 1}/{total}"
    if not multipart:
        headers["Content-Length"] = str(size)
        return ClosingStreamingResponse(
            body(first, size), status_code=status, headers=headers, media_type=mt.OCTET_STREAM
        )
    writer = MultipartWriter()
    part_headers = [("Content-Range", headers["Content-Range"])] if selected else []

    async def parts() -> AsyncIterator[bytes]:
        yield writer.part(f"{mt.OCTET_STREAM}; transfer-syntax={mt.EXPLICIT_VR_LE}", part_headers)
        async for chunk in body(first, size):
            yield chunk
        yield writer.close()

    headers.pop("Content-Range", None)
    media_type = f'multipart/related; type="{mt.OCTET_STREAM}"; boundary={writer.boundary}'
    return ClosingStreamingResponse(
        parts(), status_code=status, headers=headers, media_type=media_type
    )


def _parse_range(text: str, total: int, cleanup) -> tuple[int, int] | None:  # type: ignore[no-untyped-def]
    """(first byte, length) of the one byte range asked for; None when the header is to
    be ignored and the whole value sent: a unit other than bytes, which an origin server
    MUST ignore, or several ranges, which it MAY (RFC 9110 14.2)."""
    match = _RANGE_RE.match(text.strip())
    if not match or not (match.group(1) or match.group(2)):
        return None
    if match.group(1):
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else total - 1
    else:  # suffix range: the last N bytes
        first, last = max(total - int(match.group(2)), 0), total - 1
    last = min(last, total - 1)
    if first >= total or last < first:
        _close(cleanup)
        raise HTTPError(
            416,
            f"Range {text[:60]!r} lies outside the {total} bytes of the value",
            {"Content-Range": f"bytes */{total}"},
        )
    return first, last - first + 1


def _close(cleanup) -> None:  # type: ignore[no-untyped-def]
    if cleanup is not None:
        cleanup()
