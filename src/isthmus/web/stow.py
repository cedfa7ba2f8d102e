"""STOW-RS: the Store transaction (PS3.18 10.5), POST /studies and /studies/{study}.

The request body is spooled to a temporary file as it arrives (never held whole in
memory), its parts are located in the file, and each instance is handed to the
archive as a zero-copy view.  Two forms are accepted (PS3.18 10.5.1.2):

- `multipart/related; type="application/dicom"`: one Part 10 instance per part;
- `multipart/related; type="application/dicom+json"` (or `+xml`): metadata parts
  whose BulkDataURIs name the other parts by Content-Location (or `cid:` Content-ID).

The answer is the Store Instances Response Module (PS3.18 Annex I): successes in
Referenced SOP Sequence, with a Warning Reason (PS3.18 I.2.1) when the archive stored
an instance but changed something of it, failures in Failed SOP Sequence with a Failure
Reason (PS3.18 I.2.2); 200 when all were stored without a warning, 202 when some were
and warnings or failures exist, 409 when none was (PS3.18 10.5.3.1).
A study-scoped POST refuses instances of other studies (the archive checks, from the
header it parses anyway).  Each instance's Failure Reason and the response's status
are the store outcome's (isthmus.archive.outcome: one table for every door).  Why
each failure or warning happened is also said in words, in a Warning header (RFC 9111
5.5).
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO, Any

from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from isthmus.archive import (
    Archive,
    Staged,
    StoreOutcome,
    StoreResult,
    StoreWarning,
    stow_http_status,
)
from isthmus.dicom import part10
from isthmus.dicom.json import dumps_bytes
from isthmus.web import media_types as mt
from isthmus.web.dicom_xml import to_xml
from isthmus.web.errors import bad_request, unsupported_media_type
from isthmus.web.multipart import MultipartError, Part, PartScanner, boundary_of, parse_parts
from isthmus.web.negotiation import Offer, negotiate, parse_media_type
from isthmus.web.params import path_uids
from isthmus.web.service import blocking, context, service_root
from isthmus.web.stow_json import InstanceBuilder, MetadataError

log = logging.getLogger(__name__)

RESPONSE_OFFERS = [Offer(mt.DICOM_JSON), Offer(mt.JSON), Offer(mt.DICOM_XML)]
PARALLEL_STORES = 16
SPOOL_CHUNK = 1 << 20
# Staged instances waiting for the end of their body keep their index records in memory
# (a few kilobytes each); the parts of a body beyond this many are stored after it.
STAGED_AT_MOST = 4096


def routes() -> list[Route]:
    return [
        Route("/studies", store, methods=["POST"]),
        Route("/studies/{study}", store, methods=["POST"]),
    ]


@dataclass
class Outcome:
    """What became of one part."""

    part: int
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    outcome: StoreOutcome = StoreOutcome.STORED
    reason: str | None = None  # why it failed, or what its warning is about
    size: int = 0
    warning: StoreWarning | None = None

    @property
    def ok(self) -> bool:
        return self.outcome.ok


async def store(request: Request) -> Response:
    """Store Instances (PS3.18 10.5)."""
    study, _, _ = path_uids(request)
    choice = negotiate(request, RESPONSE_OFFERS)
    kind, boundary = _request_kind(request.headers.get("content-type", ""))
    started = time.perf_counter()
    folder = context(request).settings.data / "tmp"
    length = _content_length(request)
    if kind == "dicom" and length:
        assert boundary is not None  # _request_kind gives every multipart kind one
        spooled = _sized_spool(folder, length)
        storing = _store_arriving(request, spooled, boundary, length, study)
    else:
        spooled = Spooled(await spool_body(request, folder))
        storing = _store_spooled(request, spooled, kind, boundary, study)
    try:
        outcomes = await storing
    except BaseException:
        spooled.close()
        raise
    log.debug(
        "STOW-RS: %d part(s) received and stored in %.3f s",
        len(outcomes),
        time.perf_counter() - started,
    )
    _tell(request, outcomes)
    response = _response(request, outcomes, study, choice.media_type)
    # Freeing a large temporary file and its mapping takes a while: after the answer,
    # in a worker thread (Starlette runs a synchronous background task there).
    response.background = BackgroundTask(spooled.close)
    return response


class Spooled:
    """A spooled request body and its memory mapping, released together."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.mapping: mmap.mmap | None = None

    def close(self) -> None:
        if self.mapping is not None:
            try:
                self.mapping.close()
            except BufferError:  # a view still alive somewhere; the mapping goes with it
                pass
        self.file.close()


def _request_kind(content_type: str) -> tuple[str, str | None]:
    """('dicom' | 'metadata', boundary) from the request's Content-Type, or 415."""
    media_type, params = parse_media_type(content_type)
    if media_type == mt.DICOM:
        return "single", None
    if media_type != mt.MULTIPART_RELATED:
        raise unsupported_media_type(
            f'STOW-RS takes multipart/related; type="application/dicom" (or dicom+json, '
            f"dicom+xml metadata with bulk data), not {media_type or 'a body without type'}"
        )
    try:
        boundary, _ = boundary_of(content_type)
    except MultipartError as exc:
        raise bad_request(str(exc)) from None
    part_type = (params.get("type") or mt.DICOM).lower()
    if part_type == mt.DICOM:
        return "dicom", boundary
    if part_type in (mt.DICOM_JSON, mt.DICOM_XML, mt.JSON):
        return "metadata", boundary
    raise unsupported_media_type(
        f"multipart/related type {part_type!r} is not storable; use "
        "application/dicom, application/dicom+json or +xml"
    )


async def spool_body(request: Request, folder: os.PathLike[str] | str) -> IO[bytes]:
    """Write the request body to an anonymous temporary file as it arrives."""
    os.makedirs(folder, exist_ok=True)
    spool = tempfile.TemporaryFile(dir=folder, prefix="stow-")
    try:
        async for _ in _spooling(request, spool):
            pass
    except ClientDisconnect:
        spool.close()
        raise _disconnected() from None
    except BaseException:
        spool.close()
        raise
    return spool


async def _spooling(request: Request, spool: IO[bytes]) -> AsyncIterator[int]:
    """Write the body to `spool` as it arrives; yields how many bytes the file holds
    after each write.

    Chunks are gathered up to SPOOL_CHUNK bytes and written with one writev call in a
    worker thread while the next ones arrive (one write at a time, in order).  Each
    write has its own duplicate of the file descriptor, so a request that ends early
    can close the file while a write is still under way.
    """
    writing: asyncio.Future[None] | None = None
    gathered: list[bytes] = []
    size = written = 0
    async for chunk in request.stream():
        if not chunk:
            continue
        gathered.append(chunk)
        size += len(chunk)
        if size >= SPOOL_CHUNK:
            if writing is not None:
                await writing
                yield written
            writing = asyncio.ensure_future(blocking(_write_all, os.dup(spool.fileno()), gathered))
            gathered, written, size = [], written + size, 0
    if writing is not None:
        await writing
        yield written
    if gathered:
        await blocking(_write_all, os.dup(spool.fileno()), gathered)
        yield written + size


def _disconnected() -> Exception:
    return bad_request("the client disconnected before the body was complete")


def _content_length(request: Request) -> int | None:
    """The body's declared length (the HTTP server holds the body to it), if any."""
    try:
        length = int(request.headers.get("content-length", ""))
    except ValueError:
        return None
    return length if length >= 0 else None


def _write_all(fd: int, chunks: list[bytes]) -> None:
    """Write every chunk at the file's position (writev, resumed after short writes),
    then close `fd`."""
    try:
        pending = [memoryview(c) for c in chunks]
        while pending:
            written = os.writev(fd, pending[:1024])  # at most IOV_MAX buffers per call
            while pending and written >= len(pending[0]):
                written -= len(pending.pop(0))
            if pending and written:
                pending[0] = pending[0][written:]
    finally:
        os.close(fd)


async def _store_spooled(
    request: Request, spooled: Spooled, kind: str, boundary: str | None, study: str | None
) -> list[Outcome]:
    size = os.fstat(spooled.file.fileno()).st_size
    if size == 0:
        raise bad_request("the request body is empty")
    mapped = spooled.mapping = mmap.mmap(spooled.file.fileno(), size, access=mmap.ACCESS_READ)
    view = memoryview(mapped)
    try:
        if kind == "single":
            parts = [Part({"content-type": mt.DICOM}, 0, size)]
        else:
            assert boundary is not None  # _request_kind gives every multipart kind one
            try:
                parts = await blocking(parse_parts, mapped, boundary)
            except MultipartError as exc:
                raise bad_request(f"{exc}; nothing was stored") from None
        if not parts:
            raise bad_request("the multipart body holds no part")
        if kind == "metadata":
            return await _store_from_metadata(request, view, parts, study)
        return await _store_parts(
            request, [(p.index, p, view[p.start : p.end]) for p in parts], study
        )
    finally:
        view.release()


async def _store_parts(
    request: Request, items: list[tuple[int, Part | None, Any]], study: str | None
) -> list[Outcome]:
    """Store each (index, part, Part 10 bytes), a few at a time (group commit batches them)."""
    archive = context(request).archive
    gate = asyncio.Semaphore(PARALLEL_STORES)

    async def one(index: int, part: Part | None, data: Any) -> Outcome:
        refusal = None if part is None else _refused_type(part)
        if refusal is not None:
            return refusal
        async with gate:
            return await blocking(store_one, archive, index, data, study)

    try:
        return list(await asyncio.gather(*(one(i, p, d) for i, p, d in items)))
    finally:
        for _, _, data in items:
            if isinstance(data, memoryview):
                data.release()


async def _store_arriving(
    request: Request, spooled: Spooled, boundary: str, length: int, study: str | None
) -> list[Outcome]:
    """The application/dicom form with a declared length, stored while it arrives.

    The spool file is sized to the body and mapped whole from the start; each part,
    once it has arrived, is staged (parsed, written and synced, not yet indexed:
    Archive.stage) while the rest still arrives.  Once the body is whole and well
    formed the staged instances are committed together; a body that is truncated,
    malformed, or cut off by its client abandons them, so that, as with the spooled
    form, nothing of a refused body is stored.  Parts beyond STAGED_AT_MOST wait in the
    spool and are stored once the body is accepted."""
    archive = context(request).archive
    assert spooled.mapping is not None
    scanner = PartScanner(spooled.mapping, boundary)
    view = memoryview(spooled.mapping)
    staging: list[asyncio.Future[Outcome | tuple[int, Staged, int]]] = []
    later: list[Part] = []
    gate = asyncio.Semaphore(PARALLEL_STORES)

    async def stage(part: Part) -> Outcome | tuple[int, Staged, int]:
        refusal = _refused_type(part)
        if refusal is not None:
            return refusal
        async with gate:
            with view[part.start : part.end] as data:
                return await blocking(stage_one, archive, part.index, data, study)

    def start(parts: list[Part]) -> None:
        for part in parts:
            if len(staging) < STAGED_AT_MOST:
                staging.append(asyncio.ensure_future(stage(part)))
            else:
                later.append(part)

    try:
        try:
            received = 0
            async for received in _spooling(request, spooled.file):
                start(scanner.feed(received))
            if received != length:
                raise ClientDisconnect()
            start(scanner.finish())
            if not scanner.parts:
                raise MultipartError("the multipart body holds no part")
            staged = await asyncio.gather(*staging)
        except BaseException as exc:
            await _abandon(archive, staging)
            if isinstance(exc, MultipartError):
                raise bad_request(f"{exc}; nothing was stored") from None
            if isinstance(exc, ClientDisconnect):
                raise _disconnected() from None
            raise
        outcomes = await blocking(_commit, archive, staged)
        if later:
            items: list[tuple[int, Part | None, Any]] = [
                (p.index, p, view[p.start : p.end]) for p in later
            ]
            outcomes = sorted(outcomes + await _store_parts(request, items, study), key=_part)
        return outcomes
    finally:  # before the caller closes the spool and its mapping
        scanner.release()
        view.release()


def _sized_spool(folder: os.PathLike[str] | str, length: int) -> Spooled:
    """A temporary file of `length` bytes (sparse until written), mapped for reading."""
    os.makedirs(folder, exist_ok=True)
    spooled = Spooled(tempfile.TemporaryFile(dir=folder, prefix="stow-"))
    try:
        os.ftruncate(spooled.file.fileno(), length)
        spooled.mapping = mmap.mmap(spooled.file.fileno(), length, access=mmap.ACCESS_READ)
    except BaseException:
        spooled.close()
        raise
    return spooled


def stage_one(
    archive: Archive, index: int, data: Any, study: str | None
) -> Outcome | tuple[int, Staged, int]:
    """Stage one Part 10 instance; a refusal is its Outcome at once."""
    staged = archive.stage(with_preamble(data), expected_study=study)
    if isinstance(staged, Staged):
        return index, staged, len(data)
    return _outcome(index, staged, len(data))


def _commit(archive: Archive, items: list[Outcome | tuple[int, Staged, int]]) -> list[Outcome]:
    """Commit what was staged; every part's Outcome, in the body's order."""
    staged = [item for item in items if not isinstance(item, Outcome)]
    results = archive.commit([s for _, s, _ in staged])
    outcomes = [item for item in items if isinstance(item, Outcome)]
    outcomes += [
        _outcome(index, result, size)
        for (index, _, size), result in zip(staged, results, strict=True)
    ]
    return sorted(outcomes, key=_part)


def _part(outcome: Outcome) -> int:
    return outcome.part


async def _abandon(
    archive: Archive, staging: list[asyncio.Future[Outcome | tuple[int, Staged, int]]]
) -> None:
    """Wait for the stagings under way and remove what they wrote."""
    done = await asyncio.gather(*staging, return_exceptions=True)
    staged = [item[1] for item in done if isinstance(item, tuple)]
    if staged:
        await blocking(archive.abandon, staged)


def _refused_type(part: Part) -> Outcome | None:
    if part.content_type in (mt.DICOM, "", mt.OCTET_STREAM):
        return None
    return Outcome(
        part.index,
        outcome=StoreOutcome.INVALID,
        reason=f"content type {part.content_type} is not application/dicom",
    )


def store_one(archive: Archive, index: int, data: Any, study: str | None) -> Outcome:
    """Store one Part 10 instance; a study-scoped store refuses other studies'."""
    result: StoreResult = archive.store(with_preamble(data), expected_study=study)
    return _outcome(index, result, len(data))


def _outcome(index: int, result: StoreResult, size: int) -> Outcome:
    return Outcome(
        index,
        result.sop_class_uid,
        result.sop_instance_uid,
        result.study_instance_uid,
        result.series_instance_uid,
        result.outcome,
        result.reason if result.ok else result.reason or str(result.outcome),
        size,
        result.warning if result.ok else None,
    )


def _tell(request: Request, outcomes: list[Outcome]) -> None:
    """One audit event for the request, naming each study stored (and the metrics)."""
    principal = request.scope.get("state", {}).get("principal")
    tally = context(request).archive.activity.transfer(
        "stored",
        "dicomweb",
        user=getattr(principal, "name", "anonymous"),
        address=request.client.host if request.client else None,
        local=request.url.path,
    )
    for o in outcomes:
        tally.add(o.study_instance_uid, o.sop_class_uid, o.size, o.ok)
    tally.close()


def with_preamble(data: Any) -> Any:
    """A Part 10 file whose 128-byte preamble and 'DICM' were left out (pydicom writes
    such files unless told otherwise) gets them back; anything else is left as it is."""
    if (
        bytes(data[128:132]) != b"DICM"
        and bytes(data[:2]) == b"\x02\x00"
        and bytes(data[4:6]).isalpha()
        and bytes(data[4:6]).isupper()
    ):
        return part10.PREAMBLE + bytes(data)
    return data


async def _store_from_metadata(
    request: Request, view: memoryview, parts: list[Part], study: str | None
) -> list[Outcome]:
    """The JSON/XML-and-bulk-data form: build Part 10 instances, then store them."""
    builder = InstanceBuilder(view, parts)
    items: list[tuple[int, Part | None, Any]] = []
    failures: list[Outcome] = []
    for index, dataset in builder.datasets():
        try:
            items.append((index, None, await blocking(builder.part10, dataset)))
        except MetadataError as exc:
            failures.append(
                Outcome(
                    index,
                    outcome=StoreOutcome.INVALID,
                    reason=str(exc),
                    sop_instance_uid=exc.sop_instance_uid,
                    sop_class_uid=exc.sop_class_uid,
                )
            )
    builder.release()
    if not items and not failures:
        raise bad_request("no application/dicom+json or +xml metadata part in the body")
    stored = await _store_parts(request, items, study)
    return sorted(stored + failures, key=lambda o: o.part)


# ----------------------------------------------------------------- response
def _response(
    request: Request, outcomes: list[Outcome], study: str | None, media_type: str
) -> Response:
    root = service_root(request)
    stored = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    body: dict[str, Any] = {}
    studies = {o.study_instance_uid for o in stored} | ({study} if study else set())
    body["00081190"] = (
        {"vr": "UR", "Value": [f"{root}/studies/{studies.pop()}"]}
        if len(studies) == 1
        else {"vr": "UR"}
    )
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": [_failed_item(o) for o in failed]}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": [_referenced_item(o, root) for o in stored]}
    status = stow_http_status((o.outcome, o.warning) for o in outcomes)
    headers = {}
    warned = [o for o in stored if o.warning is not None]
    for o in failed:
        log.info("STOW-RS part %d refused: %s", o.part + 1, o.reason)
    if failed or warned:
        told = sorted(failed + warned, key=_part)[:20]
        headers["Warning"] = ", ".join(_warning(o) for o in told)
    if media_type == mt.DICOM_XML:
        return Response(to_xml(body), status_code=status, headers=headers, media_type=mt.DICOM_XML)
    return Response(dumps_bytes(body), status_code=status, headers=headers, media_type=media_type)


def _sop_reference(o: Outcome) -> dict[str, Any]:
    item: dict[str, Any] = {}
    item["00081150"] = {"vr": "UI", "Value": [o.sop_class_uid]} if o.sop_class_uid else {"vr": "UI"}
    item["00081155"] = (
        {"vr": "UI", "Value": [o.sop_instance_uid]} if o.sop_instance_uid else {"vr": "UI"}
    )
    return item


def _failed_item(o: Outcome) -> dict[str, Any]:
    return {**_sop_reference(o), "00081197": {"vr": "US", "Value": [o.outcome.failure_reason]}}


def _referenced_item(o: Outcome, root: str) -> dict[str, Any]:
    url = (
        f"{root}/studies/{o.study_instance_uid}/series/{o.series_instance_uid}"
        f"/instances/{o.sop_instance_uid}"
    )
    item = {**_sop_reference(o), "00081190": {"vr": "UR", "Value": [url]}}
    if o.warning is not None:
        item["00081196"] = {"vr": "US", "Value": [o.warning.dimse_status]}
    return item


def _warning(o: Outcome) -> str:
    text = (o.reason or "refused").replace('"', "'").replace("\\", "/")
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:200]
    return f'299 isthmus "part {o.part + 1}: {text}"'
