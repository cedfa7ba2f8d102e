"""The door's bridge to the archive's pixel methods: frames, transcoding, rendering.

Each call runs an Archive method (which decides how the blob is read and hands the
pixel work to isthmus.render) off the event loop, and turns the pixel layer's errors
into HTTP answers (render/errors.py says which is which):
a frame or pixel data that does not exist is 404, a conversion that cannot be done
here is 406, bad rendering parameters are 400.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from isthmus.archive import Archive, InstanceRow
from isthmus.web.errors import HTTPError, not_found
from isthmus.web.service import blocking


@contextmanager
def pixel_errors() -> Iterator[None]:
    """Map render's errors to HTTP errors whose message the client can read."""
    from isthmus.render import errors as e

    try:
        yield
    except (e.FrameNotFound, e.NoPixelData) as exc:
        raise HTTPError(404, str(exc)) from None
    except (e.TranscodeError, e.DecodeError) as exc:
        raise HTTPError(406, str(exc)) from None
    except e.RenderError as exc:
        raise HTTPError(400, str(exc)) from None


def can_transcode(source_ts: str, target_ts: str) -> bool:
    from isthmus.render.transcode import can_transcode as check

    try:
        return check(source_ts, target_ts)
    except ValueError:
        return False


async def frames_of(
    archive: Archive, row: InstanceRow, numbers: list[int], transfer_syntax: str | None
) -> list[Any]:
    """Frames of a stored instance (render.frames.Frame); Archive.frames reads only
    what is needed."""
    with pixel_errors():
        return await blocking(archive.frames, row, numbers, transfer_syntax)


async def transcoded(archive: Archive, row: InstanceRow, target_ts: str) -> bytes:
    """The instance as a Part 10 file in `target_ts` (HTTPError 406 if impossible)."""
    with pixel_errors():
        return await blocking(archive.read_as, row, target_ts)


async def rendered(
    archive: Archive, row: InstanceRow, frame: int, media_type: str, options: dict[str, Any]
) -> bytes:
    """One frame rendered to a consumer image (PS3.18 8.3.5, 10.4.1.1.3)."""
    with pixel_errors():
        return await blocking(_render, archive, row, frame, media_type, options)


def _render(
    archive: Archive, row: InstanceRow, frame: int, media_type: str, options: dict[str, Any]
) -> bytes:
    return archive.render(row, frame, media_type, **options)


async def rendered_instance(
    archive: Archive, uids: tuple[str, str, str], media_type: str, options: dict[str, Any]
) -> bytes:
    """The first frame of the instance `uids` (study, series, SOP instance) rendered,
    looked up and rendered in one trip to the worker threads (a trip costs about as
    much as the lookup); 404 when the archive does not hold it."""
    with pixel_errors():
        return await blocking(_find_and_render, archive, uids, media_type, options)


def _find_and_render(
    archive: Archive, uids: tuple[str, str, str], media_type: str, options: dict[str, Any]
) -> bytes:
    rows = archive.instances(*uids)
    if not rows:
        raise not_found(f"instance {uids[2]} is not in the archive")
    return archive.render(rows[0], 1, media_type, **options)
