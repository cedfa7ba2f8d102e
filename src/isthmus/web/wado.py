"""WADO-RS: retrieving studies, series and instances as DICOM (PS3.18 10.4).

The answer is `multipart/related; type="application/dicom"`, one Part 10 instance
per part, streamed from the blob store: an instance of up to WHOLE bytes is read in
one call while the one before it is being sent, a larger one in CHUNK pieces, so a
study of any size passes through a small buffer.  When every instance goes out as
stored, the length of the whole body is known from the index and sent as
Content-Length (no chunked framing).  The transfer syntax follows PS3.18 8.7.3.5 and
8.7.8.2:

- `transfer-syntax=*`: each instance exactly as stored;
- a named syntax: stored bytes when they are in it, otherwise transcoded (render);
- none named: Explicit VR Little Endian, except that instances stored lossy keep
  their syntax (8.7.3: decoding would not give back the original).
"""

from __future__ import annotations

import asyncio
import io
import logging
import mmap
import os
from collections.abc import AsyncIterator
from typing import IO

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from isthmus.archive import Archive, InstanceRow
from isthmus.web import media_types as mt
from isthmus.web.errors import HTTPError, not_acceptable, not_found
from isthmus.web.multipart import MultipartWriter
from isthmus.web.negotiation import Choice, Offer, alternatives, content_type, negotiate
from isthmus.web.params import path_uids
from isthmus.web.pixels import can_transcode, pixel_errors, transcoded
from isthmus.web.service import ClosingStreamingResponse, blocking, context

log = logging.getLogger(__name__)
CHUNK = 1 << 20
WHOLE = 8 << 20
GROUP = 4 << 20  # bytes of instances read in one trip to a worker thread
GROUP_COUNT = 32
# What `_load` gives for one part: its transfer syntax and its bytes (or a view of the
# mapped file), or an open file (larger than WHOLE), or None (the file is missing).
Loaded = tuple[str, bytes | memoryview | IO[bytes] | None]

MULTIPART_DICOM = Offer(mt.DICOM, multipart=True, syntaxes=None)
SINGLE_DICOM = Offer(mt.DICOM, multipart=False, syntaxes=None)


def routes() -> list[Route]:
    return [
        Route("/studies/{study}", retrieve, methods=["GET"]),
        Route("/studies/{study}/series/{series}", retrieve, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances/{instance}", retrieve, methods=["GET"]),
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
        if row.transfer_syntax_uid != requested and not can_transcode(
            row.transfer_syntax_uid, requested
        ):
            raise not_acceptable(
                f"instance {row.sop_instance_uid} is stored in "
                f"{row.transfer_syntax_uid} and cannot be sent in {requested} "
                "here; ask for transfer-syntax=* to get it as stored"
            )


def producible(choice: Choice, others: list[Choice], rows: list[InstanceRow]) -> Choice:
    """The chosen representation, or the client's next preferred one whose transfer
    syntax can be produced for every instance (PS3.18 8.7.8); 406 when none can."""
    try:
        check_syntax(choice.transfer_syntax, rows)
        return choice
    except HTTPError as refusal:
        for other in others:
            try:
                check_syntax(other.transfer_syntax, rows)
            except HTTPError:
                continue
            return other
        raise refusal from None


async def retrieve(request: Request) -> Response:
    """Retrieve Study / Series / Instance (PS3.18 10.4.1.1.1)."""
    offers = [MULTIPART_DICOM]
    if "instance" in request.path_params:
        offers.append(SINGLE_DICOM)
    choice = negotiate(request, offers)
    rows = await find_rows(request)
    choice = producible(choice, alternatives(request, offers), rows)
    archive = context(request).archive
    if not choice.multipart:
        return await single_instance(archive, rows[0], choice)
    writer = MultipartWriter()
    headers = {}
    as_stored = all(
        target_syntax(choice.transfer_syntax, row.transfer_syntax_uid) == row.transfer_syntax_uid
        for row in rows
    )
    first = None
    if as_stored:
        headers["Content-Length"] = str(multipart_length(rows, MultipartWriter(writer.boundary)))
    else:
        first = await blocking(load_first, archive, groups(rows)[0], choice.transfer_syntax)
    return ClosingStreamingResponse(
        stream_instances(archive, rows, choice.transfer_syntax, writer, as_stored, first),
        media_type=content_type(choice, writer.boundary),
        headers=headers,
    )


async def single_instance(archive: Archive, row: InstanceRow, choice: Choice) -> Response:
    archive.activity.instance("dicomweb", "sent", row.size)
    target = target_syntax(choice.transfer_syntax, row.transfer_syntax_uid)
    media_type = f"{mt.DICOM}; transfer-syntax={target}"
    if target != row.transfer_syntax_uid:
        return Response(await transcoded(archive, row, target), media_type=media_type)
    return await stored_file(archive, row, media_type)


async def stored_file(archive: Archive, row: InstanceRow, media_type: str) -> Response:
    """The stored Part 10 file as the whole body: read at once, or streamed when large."""
    _, content = await blocking(_load, archive, row, row.transfer_syntax_uid)
    if content is None:
        raise missing_file(row)
    if isinstance(content, bytes | memoryview):
        return Response(content, media_type=media_type)
    return ClosingStreamingResponse(
        read_chunks(content, 0, row.size),
        media_type=media_type,
        headers={"Content-Length": str(row.size)},
    )


def missing_file(row: InstanceRow) -> HTTPError:
    return HTTPError(
        500,
        f"instance {row.sop_instance_uid} is indexed but its file is "
        "missing; run a consistency check",
    )


async def read_chunks(fh, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:  # type: ignore[no-untyped-def]
    """A blob's bytes, chunk by chunk (optionally `length` bytes from `start`); closes it.

    Each chunk is one call in a worker thread (seek and read together)."""
    try:
        position, remaining = start, length
        while remaining is None or remaining > 0:
            size = CHUNK if remaining is None else min(CHUNK, remaining)
            chunk = await blocking(_read_at, fh, position, size)
            if not chunk:
                break
            position += len(chunk)
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
    finally:
        fh.close()


def _read_at(fh: IO[bytes], position: int, size: int) -> bytes:
    fh.seek(position)
    return fh.read(size)


def _part_header(writer: MultipartWriter, syntax: str) -> bytes:
    return writer.part(f"{mt.DICOM}; transfer-syntax={syntax}")


def multipart_length(rows: list[InstanceRow], writer: MultipartWriter) -> int:
    """Bytes of the body `stream_instances` sends when every instance goes as stored."""
    framing = sum(len(_part_header(writer, row.transfer_syntax_uid)) for row in rows)
    return framing + sum(row.size for row in rows) + len(writer.close())


def _load(archive: Archive, row: InstanceRow, target: str, strict: bool = False) -> Loaded:
    """One part: (its transfer syntax, its bytes | an open file if large | None if missing).

    A transcode the codec refuses raises the 406 when `strict` (the response has not
    started); once it has, the instance is sent as stored.
    """
    if target != row.transfer_syntax_uid:
        try:
            with pixel_errors():
                return target, archive.read_as(row, target)
        except HTTPError as exc:
            if strict:
                raise
            log.warning("instance %s sent as stored: %s", row.sop_instance_uid, exc.message)
    try:
        fh = archive.open_instance(row)
    except KeyError:
        log.error("instance %s: file missing from the blob store", row.sop_instance_uid)
        return row.transfer_syntax_uid, None
    if row.size > WHOLE:
        return row.transfer_syntax_uid, fh
    with fh:
        return row.transfer_syntax_uid, _mapped(fh) or fh.read()


def _mapped(fh: IO[bytes]) -> memoryview | None:
    """The whole file mapped read-only, when it is a file: the socket then copies
    straight from the page cache (one copy of the study instead of two).  The
    mapping lives as long as someone holds the view (the event loop, until sent)."""
    try:
        fd = fh.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None
    if os.fstat(fd).st_size == 0:
        return None
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    return memoryview(mmap.mmap(fd, 0, flags=flags, prot=mmap.PROT_READ))


async def stream_instances(
    archive: Archive,
    rows: list[InstanceRow],
    requested: str | None,
    writer: MultipartWriter,
    exact: bool = False,
    first: list[Loaded] | None = None,
) -> AsyncIterator[bytes | memoryview]:
    """Every instance as one part; the next group of instances read while this one is
    sent (`groups`: many small instances per trip to a worker thread, each trip costing
    more than reading a CT image from the page cache).

    At most two groups are in memory: up to GROUP bytes of instances, or one instance
    of up to WHOLE bytes, each.  A file missing from the blob store is skipped, unless
    the body's length was announced (`exact`): then the response is cut short, so the
    client sees that it is incomplete.  `first`: the first group, already loaded.
    """

    def load(group: list[InstanceRow]) -> asyncio.Future[list[Loaded]]:
        return asyncio.ensure_future(blocking(_load_group, archive, group, requested))

    batches = groups(rows)
    pending: asyncio.Future[list[Loaded]] | None
    if first is not None:
        pending = asyncio.ensure_future(_loaded(first))
    else:
        pending = load(batches[0]) if batches else None
    try:
        for index, group in enumerate(batches):
            assert pending is not None
            loaded = await pending
            pending = load(batches[index + 1]) if index + 1 < len(batches) else None
            for row, (syntax, content) in zip(group, loaded, strict=True):
                if content is None:
                    if exact:
                        raise RuntimeError(
                            f"instance {row.sop_instance_uid}: file missing "
                            "from the blob store; response cut short"
                        )
                    continue
                archive.activity.instance("dicomweb", "sent", row.size)
                if isinstance(content, bytes | memoryview):
                    yield _part_header(writer, syntax)
                    yield content
                    continue
                try:
                    yield _part_header(writer, syntax)
                    async for chunk in read_chunks(content, 0, row.size):
                        yield chunk
                finally:
                    content.close()  # also when the response ends before it is read
        yield writer.close()
    finally:
        if pending is not None:
            pending.add_done_callback(_close_unsent)


def groups(rows: list[InstanceRow]) -> list[list[InstanceRow]]:
    """Consecutive instances in groups of up to GROUP bytes (and GROUP_COUNT instances);
    an instance larger than GROUP is a group of its own."""
    out: list[list[InstanceRow]] = []
    current: list[InstanceRow] = []
    size = 0
    for row in rows:
        if current and (size + row.size > GROUP or len(current) >= GROUP_COUNT):
            out.append(current)
            current, size = [], 0
        current.append(row)
        size += row.size
    if current:
        out.append(current)
    return out


def _load_group(
    archive: Archive, rows: list[InstanceRow], requested: str | None, strict: bool = False
) -> list[Loaded]:
    """The parts of `rows` (`_load` each); on an error, the files already opened are
    closed before it goes on."""
    loaded: list[Loaded] = []
    try:
        for row in rows:
            target = target_syntax(requested, row.transfer_syntax_uid)
            loaded.append(_load(archive, row, target, strict))
    except HTTPError:
        _close(loaded)
        raise
    return loaded


def load_first(archive: Archive, rows: list[InstanceRow], requested: str | None) -> list[Loaded]:
    """The first group of a response that transcodes, loaded before the response starts,
    so that a syntax the encoder refuses for one of these instances (32-bit samples for
    JPEG-LS, say) is still answered 406 (PS3.18 8.7.8.2), not sent as stored."""
    return _load_group(archive, rows, requested, strict=True)


async def _loaded(group: list[Loaded]) -> list[Loaded]:
    return group


def _close_unsent(future: asyncio.Future[list[Loaded]]) -> None:
    """Parts read ahead for a response that ended first: close their files, if any."""
    if future.cancelled() or future.exception() is not None:
        return
    _close(future.result())


def _close(loaded: list[Loaded]) -> None:
    for _syntax, content in loaded:
        if content is not None and not isinstance(content, bytes | memoryview):
            content.close()
