"""The door's bridge to the pixel layer (isthmus.render): frames, transcoding, rendering.

Each call runs off the event loop, reads the instance through the archive, and turns
the pixel layer's errors into HTTP answers (render/errors.py says which is which):
a frame or pixel data that does not exist is 404, a conversion that cannot be done
here is 406, bad rendering parameters are 400.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from isthmus.archive import Archive, InstanceRow
from isthmus.web.errors import HTTPError
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


@contextmanager
def located_pixels(archive: Archive, row: InstanceRow) -> Iterator[Any]:
    """The instance's pixel data (render.pixel_data.PixelData), reading only what is used.

    With the pixel offset the archive recorded, only the header and then the frames
    asked for are read from the file (a multi-frame instance is never read whole);
    without it (deflated files), the whole file.
    """
    from isthmus.render.pixel_data import file_reader, open_at, open_part10

    if row.pixel_offset is None:
        yield open_part10(archive.read_instance(row))
        return
    with archive.open_instance(row) as fh:
        yield open_at(file_reader(fh), row.pixel_offset)


def read_frames(
    archive: Archive, row: InstanceRow, numbers: list[int], transfer_syntax: str | None
) -> list[Any]:
    """Frames of a stored instance (render.frames.Frame); reads only what is needed."""
    from isthmus.render import frames

    with located_pixels(archive, row) as pixels:
        return frames.frames_of(pixels, numbers, transfer_syntax)


async def frames_of(
    archive: Archive, row: InstanceRow, numbers: list[int], transfer_syntax: str | None
) -> list[Any]:
    with pixel_errors():
        return await blocking(read_frames, archive, row, numbers, transfer_syntax)


def transcode_blocking(archive: Archive, row: InstanceRow, target_ts: str) -> bytes:
    """The instance as a Part 10 file in `target_ts`; raises render's errors."""
    from isthmus.render.transcode import transcode

    return transcode(archive.read_instance(row), target_ts)


async def transcoded(archive: Archive, row: InstanceRow, target_ts: str) -> bytes:
    """The instance as a Part 10 file in `target_ts` (HTTPError 406 if impossible)."""
    with pixel_errors():
        return await blocking(transcode_blocking, archive, row, target_ts)


def _rendered(
    archive: Archive, row: InstanceRow, frame: int, media_type: str, options: dict[str, Any]
) -> bytes:
    from isthmus.render import image

    with located_pixels(archive, row) as pixels:
        return image.render_pixels(pixels, frame=frame, media_type=media_type, **options)


async def rendered(
    archive: Archive, row: InstanceRow, frame: int, media_type: str, options: dict[str, Any]
) -> bytes:
    """One frame rendered to a consumer image (PS3.18 8.3.5, 10.4.1.1.3)."""
    with pixel_errors():
        return await blocking(_rendered, archive, row, frame, media_type, options)
