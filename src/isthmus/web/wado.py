"""WADO-RS: retrieving studies, series and instances as DICOM (PS3.18 10.4).

The answer is `multipart/related; type="application/dicom"`, one Part 10 instance
per part, streamed from the blob store in chunks: a study of any size passes through
a small buffer.  The transfer syntax follows PS3.18 8.7.3.5 and 8.7.8.2:

- `transfer-syntax=*`: each instance exactly as stored;
- a named syntax: stored bytes when they are in it, otherwise transcoded (render);
- none named: Explicit VR Little Endian, except that instances stored lossy keep
  their syntax (8.7.3: decoding would not give back the original).
"""

from __future__ import annotations

import logging
from typing import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from isthmus.archive import Archive, InstanceRow
from isthmus.web import media_types as mt
from isthmus.web.errors import HTTPError, not_acceptable, not_found
from isthmus.web.multipart import MultipartWriter
from isthmus.web.negotiation import Choice, Offer, content_type, negotiate
from isthmus.web.params import path_uids
from isthmus.web.pixels import can_transcode, transcoded
from isthmus.web.service import blocking, context

log = logging.getLogger(__name__)
CHUNK = 1 << 20

MULTIPART_DICOM = Offer(mt.DICOM, multipart=True, syntaxes=None)
SINGLE_DICOM = Offer(mt.DICOM, multipart=False, syntaxes=None)


def routes() -> list[Route]:
    return [
        Route("/studies/{study}", retrieve, methods=["GET"]),
        Route("/studies/{study}/series/{series}", retrieve, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances/{instance}", retrieve,
              methods=["GET"]),
    ]


async def find_rows(request: Request) -> list[InstanceRow]:
    """The instances a study/series/instance path names, or 404."""
    study, series, instance = path_uids(request)
    rows = await blocking(context(request).archive.instances, study, series, instance)
    if not rows:
        raise not_found(_what(study, series, instance) + " is not in the archive")
    return rows


def _what(study: str | None, series: str | None, instance: str | None) -> str:
    if instance:
        return f"instance {instance}"
    if series:
        return f"series {series}"
    return f"study {study}"


def target_syntax(requested: str | None, stored: str) -> str:
    """The syntax one instance is sent in (PS3.18 8.7.3, 8.7.8.2)."""
    if requested == mt.ANY_SYNTAX:
        return stored
    if requested:
        return requested
    return stored if mt.is_lossy(stored) else mt.EXPLICIT_VR_LE


def check_syntax(requested: str | None, rows: list[InstanceRow]) -> None:
    """406 before anything is sent when a named syntax cannot be produced."""
    if not requested or requested == mt.ANY_SYNTAX:
        return
    for row in rows:
        if row.transfer_syntax_uid != requested and not can_transcode(row.transfer_syntax_uid,
                                                                      requested):
            raise not_acceptable(f"instance {row.sop_instance_uid} is stored in "
                                 f"{row.transfer_syntax_uid} and cannot be sent in {requested} "
                                 "here; ask for transfer-syntax=* to get it as stored")


async def retrieve(request: Request) -> Response:
    """Retrieve Study / Series / Instance (PS3.18 10.4.1.1.1)."""
    offers = [MULTIPART_DICOM]
    if "instance" in request.path_params:
        offers.append(SINGLE_DICOM)
    choice = negotiate(request, offers)
    rows = await find_rows(request)
    check_syntax(choice.transfer_syntax, rows)
    archive = context(request).archive
    if not choice.multipart:
        return await single_instance(archive, rows[0], choice)
    writer = MultipartWriter()
    return StreamingResponse(stream_instances(archive, rows, choice.transfer_syntax, writer),
                             media_type=content_type(choice, writer.boundary))


async def single_instance(archive: Archive, row: InstanceRow, choice: Choice) -> Response:
    target = target_syntax(choice.transfer_syntax, row.transfer_syntax_uid)
    media_type = f"{mt.DICOM}; transfer-syntax={target}"
    if target != row.transfer_syntax_uid:
        return Response(await transcoded(archive, row, target), media_type=media_type)
    fh = await open_blob(archive, row)
    return StreamingResponse(read_chunks(fh), media_type=media_type,
                             headers={"Content-Length": str(row.size)})


async def open_blob(archive: Archive, row: InstanceRow):  # type: ignore[no-untyped-def]
    try:
        return await blocking(archive.open_instance, row)
    except KeyError:
        raise HTTPError(500, f"instance {row.sop_instance_uid} is indexed but its file is "
                             "missing; run a consistency check") from None


async def read_chunks(fh, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:  # type: ignore[no-untyped-def]
    """A blob's bytes, chunk by chunk (optionally `length` bytes from `start`); closes it."""
    try:
        if start:
            await blocking(fh.seek, start)
        remaining = length
        while remaining is None or remaining > 0:
            size = CHUNK if remaining is None else min(CHUNK, remaining)
            chunk = await blocking(fh.read, size)
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
    finally:
        fh.close()


async def stream_instances(archive: Archive, rows: list[InstanceRow], requested: str | None,
                           writer: MultipartWriter) -> AsyncIterator[bytes]:
    """Every instance as one part; stored bytes are never held whole in memory."""
    for row in rows:
        target = target_syntax(requested, row.transfer_syntax_uid)
        if target != row.transfer_syntax_uid:
            try:
                data = await transcoded(archive, row, target)
            except HTTPError as exc:  # one instance the codec refuses: send it as stored
                log.warning("instance %s sent as stored: %s", row.sop_instance_uid, exc.message)
            else:
                yield writer.part(f"{mt.DICOM}; transfer-syntax={target}") + data
                continue
        try:
            fh = await blocking(archive.open_instance, row)
        except KeyError:
            log.error("instance %s: file missing from the blob store", row.sop_instance_uid)
            continue
        yield writer.part(f"{mt.DICOM}; transfer-syntax={row.transfer_syntax_uid}")
        async for chunk in read_chunks(fh):
            yield chunk
    yield writer.close()
