"""WADO-RS frames: pixel data of chosen frames of an instance (PS3.18 10.4.1.1.5).

Frames go out one per part of a multipart/related answer (or as a single body when
one frame is asked for with a single-part media type).  Native frames are
`application/octet-stream`, little endian; compressed frames keep their bitstream
in their own media type (image/jpeg, image/jls, image/jp2, …, PS3.18 Table 8.7.3-5)
when the client accepts it or asks for `transfer-syntax=*`, and are decoded to
octet-stream otherwise.  Each part's Content-Type names its transfer syntax.  A
multipart answer announces its Content-Length and sends the frames as they are, without
joining them into one body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from isthmus.archive import InstanceRow
from isthmus.web import media_types as mt
from isthmus.web.multipart import MultipartWriter
from isthmus.web.negotiation import Offer, content_type, negotiate
from isthmus.web.params import frame_numbers
from isthmus.web.pixels import frames_of
from isthmus.web.service import ClosingStreamingResponse, context
from isthmus.web.wado import find_rows


def routes() -> list[Route]:
    return [
        Route(
            "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            retrieve_frames,
            methods=["GET"],
        )
    ]


def frame_offers(row: InstanceRow, single: bool) -> list[Offer]:
    """What frames of this instance can be sent as, the stored encoding first."""
    stored = row.transfer_syntax_uid
    octet = frozenset({mt.EXPLICIT_VR_LE})
    offers: list[Offer] = []
    native_type = mt.pixel_media_type(stored)
    if native_type != mt.OCTET_STREAM:
        offers.append(Offer(native_type, True, _producible(stored, native_type), stored))
    offers.append(Offer(mt.OCTET_STREAM, True, octet, mt.EXPLICIT_VR_LE))
    for media_type in ("image/dicom-rle", "image/jls", "image/jp2"):
        syntaxes = _producible(stored, media_type)
        if media_type != native_type and mt.DEFAULT_SYNTAX[media_type] in syntaxes:
            offers.append(Offer(media_type, True, syntaxes, mt.DEFAULT_SYNTAX[media_type]))
    if single:
        offers += [Offer(o.media_type, False, o.syntaxes, o.default_syntax) for o in offers]
    return offers


def _producible(stored: str, media_type: str) -> frozenset[str]:
    """The syntaxes of a media type frames stored in `stored` can be sent in: the stored
    one, or one we can transcode to.  Offering more would make negotiation pick a syntax
    (say JPEG baseline for a lossless JPEG) only to fail with 406 instead of falling back
    to another acceptable type (PS3.18 8.7.3.5)."""
    from isthmus.render.transcode import can_transcode

    return frozenset(
        ts for ts in mt.syntaxes_of(media_type) if ts == stored or can_transcode(stored, ts)
    )


async def retrieve_frames(request: Request) -> Response:
    """Retrieve Frames (PS3.18 10.4.1.1.5): 404 for a frame the instance lacks."""
    row = (await find_rows(request))[0]
    numbers = frame_numbers(request.path_params["frames"], row.number_of_frames or 1)
    choice = negotiate(request, frame_offers(row, single=len(numbers) == 1))
    frames = await frames_of(context(request).archive, row, numbers, choice.transfer_syntax)
    if not choice.multipart:
        frame = frames[0]
        return Response(
            frame.data, media_type=f"{frame.media_type}; transfer-syntax={frame.transfer_syntax}"
        )
    writer = MultipartWriter()
    framing = [writer.part(f"{f.media_type}; transfer-syntax={f.transfer_syntax}") for f in frames]
    closing = writer.close()
    length = sum(map(len, framing)) + sum(len(f.data) for f in frames) + len(closing)

    async def parts() -> AsyncIterator[bytes]:
        for head, frame in zip(framing, frames, strict=True):
            yield head
            yield frame.data
        yield closing

    return ClosingStreamingResponse(
        parts(),
        media_type=content_type(choice, writer.boundary),
        headers={"Content-Length": str(length)},
    )
