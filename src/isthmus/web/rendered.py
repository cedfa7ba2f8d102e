"""WADO-RS rendered and thumbnail resources (PS3.18 10.4.1.1.3, 10.4.1.1.6, 8.3.5).

Rendering (modality LUT, VOI LUT or window, photometric interpretation, viewport,
JPEG/PNG/GIF encoding) is render's job; this module picks what to render and parses
the presentation parameters:

- `window=center,width[,LINEAR|LINEAR_EXACT|SIGMOID]` (8.3.5.1.4)
- `viewport=vw,vh[,sx,sy,sw,sh]` (8.3.5.1.3)
- `quality=1..100` (8.3.5.1.2); `annotation=patient,technique` (8.3.5.1.1) burns
  those details into the image; `iccprofile` is ignored (no ICC profile is sent).

Study and series resources render every instance, one per part; asked for a single
image they give their representative instance.  Thumbnails are one small image of
the representative instance: the middle one of the first series.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from isthmus.archive import InstanceRow
from isthmus.web import media_types as mt
from isthmus.web.errors import HTTPError, bad_request, not_acceptable
from isthmus.web.multipart import MultipartWriter
from isthmus.web.negotiation import Choice, Offer, content_type, negotiate
from isthmus.web.params import frame_numbers, non_negative_int, path_uids, single
from isthmus.web.pixels import rendered, rendered_instance
from isthmus.web.service import ClosingStreamingResponse, context
from isthmus.web.wado import find_rows

log = logging.getLogger(__name__)
IMAGE_TYPES = (mt.JPEG, mt.PNG, mt.GIF)
SINGLE = [Offer(t) for t in IMAGE_TYPES]
MULTIPART = [Offer(t, multipart=True) for t in IMAGE_TYPES]
WINDOW_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
ANNOTATIONS = ("patient", "technique")
THUMBNAIL_SIZE = (128, 128)
_INSTANCE = "/studies/{study}/series/{series}/instances/{instance}"


def routes() -> list[Route]:
    out = []
    for resource in (
        "/studies/{study}",
        "/studies/{study}/series/{series}",
        _INSTANCE,
        _INSTANCE + "/frames/{frames}",
    ):
        out.append(Route(resource + "/rendered", render_resource, methods=["GET"]))
        out.append(Route(resource + "/thumbnail", thumbnail, methods=["GET"]))
    return out


def options(request: Request, thumbnail: bool = False) -> dict[str, Any]:
    """Presentation parameters for render.image.render, validated (PS3.18 8.3.5.1)."""
    out: dict[str, Any] = {}
    window = single(request, "window")
    if window is not None:
        out["window"] = _window(window)
    viewport = single(request, "viewport")
    if viewport is not None:
        out["viewport"] = _viewport(viewport)
    elif thumbnail:
        out["viewport"] = THUMBNAIL_SIZE
    annotation = single(request, "annotation")
    if annotation:
        out["annotation"] = _annotation(annotation)
    quality = non_negative_int(request, "quality", maximum=100)
    if quality is not None:
        if quality < 1:
            raise bad_request("quality must be between 1 and 100")
        out["quality"] = quality
    return out


def _window(text: str) -> tuple[float, float, str]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise bad_request("window is center,width[,function]")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise bad_request(f"window={text[:60]!r}: center and width must be numbers") from None
    function = parts[2].upper() if len(parts) == 3 else "LINEAR"
    if function not in WINDOW_FUNCTIONS:
        raise bad_request(f"window function must be one of {', '.join(WINDOW_FUNCTIONS)}")
    if width <= 0 or (width < 1 and function == "LINEAR"):
        raise bad_request("window width must be positive (at least 1 for LINEAR)")
    return center, width, function


def _viewport(text: str) -> tuple[int, int]:
    """(rows, columns) for render from `vw,vh`; a source region is not supported."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 6):
        raise bad_request("viewport is vw,vh[,sx,sy,sw,sh]")
    if len(parts) == 6 and any(parts[2:]):
        raise bad_request("viewport source regions (sx,sy,sw,sh) are not supported")
    try:
        width, height = int(float(parts[0])), int(float(parts[1]))
    except ValueError:
        raise bad_request(f"viewport={text[:60]!r}: values must be numbers") from None
    if not (1 <= width <= 8192 and 1 <= height <= 8192):
        raise bad_request("viewport width and height must be between 1 and 8192")
    return height, width


def _annotation(text: str) -> list[str]:
    labels = [p.strip().lower() for p in text.split(",") if p.strip()]
    unknown = [label for label in labels if label not in ANNOTATIONS]
    if unknown:
        raise bad_request(f"annotation may be {' and/or '.join(ANNOTATIONS)}, not {unknown}")
    return labels


def representative(rows: list[InstanceRow]) -> InstanceRow:
    """The instance a study or series shows as one image: middle of the first series."""
    first_series = [r for r in rows if r.series_instance_uid == rows[0].series_instance_uid]
    return first_series[len(first_series) // 2]


async def render_resource(request: Request) -> Response:
    """Rendered study, series, instance or frames (PS3.18 10.4.1.1.3)."""
    opts = options(request)
    if "instance" in request.path_params and "frames" not in request.path_params:
        choice = negotiate(request, SINGLE + MULTIPART)
        if not choice.multipart:  # one image: found and rendered in one worker call
            study, series, instance = path_uids(request)
            assert study and series and instance  # the route names all three
            image = await rendered_instance(
                context(request).archive, (study, series, instance), choice.media_type, opts
            )
            return Response(image, media_type=choice.media_type)
    rows = await find_rows(request)
    frames_text = request.path_params.get("frames")
    if frames_text is not None:
        numbers = frame_numbers(frames_text, rows[0].number_of_frames or 1)
        targets = [(rows[0], n) for n in numbers]
    elif "instance" in request.path_params:
        count = rows[0].number_of_frames or 1
        targets = [(rows[0], n) for n in range(1, count + 1)]
    else:
        targets = [(row, 1) for row in rows]
    if frames_text is not None and len(targets) > 1:
        choice = _several_frames(request)
    else:
        offers = (
            SINGLE + MULTIPART
            if len(targets) == 1 or "instance" in request.path_params
            else MULTIPART + SINGLE
        )
        choice = negotiate(request, offers)
    archive = context(request).archive
    if not choice.multipart:
        row, number = targets[0] if "instance" in request.path_params else (representative(rows), 1)
        return Response(
            await rendered(archive, row, number, choice.media_type, opts),
            media_type=choice.media_type,
        )
    writer = MultipartWriter()

    async def parts() -> AsyncIterator[bytes]:
        for row, number in targets:
            try:
                image = await rendered(archive, row, number, choice.media_type, opts)
            except HTTPError as exc:  # e.g. a report in the study: nothing to render
                log.info("rendered: %s skipped: %s", row.sop_instance_uid, exc.message)
                continue
            yield writer.part(choice.media_type) + image
        yield writer.close()

    return ClosingStreamingResponse(parts(), media_type=content_type(choice, writer.boundary))


def _several_frames(request: Request) -> Choice:
    """The multipart type several frames are rendered in, one image per part (PS3.18
    10.4.1.1.3, 8.3.5.1), or 406: a single image would drop every frame but one."""
    try:
        return negotiate(request, MULTIPART)
    except HTTPError as exc:
        raise not_acceptable(
            "several frames are rendered as multipart/related, one image per frame; "
            f"ask for one frame for a single image. {exc.message}"
        ) from None


async def thumbnail(request: Request) -> Response:
    """Thumbnail of a study, series, instance or frame (PS3.18 10.4.1.1.6)."""
    rows = await find_rows(request)
    opts = options(request, thumbnail=True)
    choice = negotiate(request, SINGLE)
    frames_text = request.path_params.get("frames")
    if frames_text is not None:
        row = rows[0]
        number = frame_numbers(frames_text, row.number_of_frames or 1)[0]
    elif "instance" in request.path_params:
        row, number = rows[0], 1
    else:
        row, number = representative(rows), 1
    image = await rendered(context(request).archive, row, number, choice.media_type, opts)
    return Response(image, media_type=choice.media_type)
