"""WADO-RS metadata: the DICOM JSON (or XML) of every instance of a study, series or instance.

PS3.18 10.4.1.1.2.  The JSON was computed at ingest; here the stored texts are
joined into one JSON array without being parsed, and the relative BulkDataURIs
("/studies/…/bulkdata/…") get the absolute service root in front (PS3.18 8.7.3.2
asks for absolute URIs), all in a worker thread; remote clients that accept gzip get
the array compressed (compression.py).  XML is built from the parsed JSON, one part
per instance.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from isthmus.archive import Archive
from isthmus.web import media_types as mt
from isthmus.web.compression import json_response
from isthmus.web.dicom_xml import to_xml
from isthmus.web.errors import HTTPError, not_found
from isthmus.web.multipart import MultipartWriter
from isthmus.web.negotiation import Offer, content_type, negotiate
from isthmus.web.params import path_uids
from isthmus.web.service import ClosingStreamingResponse, blocking, context, service_root

OFFERS = [Offer(mt.DICOM_JSON), Offer(mt.JSON), Offer(mt.DICOM_XML, multipart=True)]
RELATIVE_BULK = '"BulkDataURI":"/studies/'


def routes() -> list[Route]:
    return [
        Route("/studies/{study}/metadata", metadata, methods=["GET"]),
        Route("/studies/{study}/series/{series}/metadata", metadata, methods=["GET"]),
        Route(
            "/studies/{study}/series/{series}/instances/{instance}/metadata",
            metadata,
            methods=["GET"],
        ),
    ]


async def metadata(request: Request) -> Response:
    """Retrieve Metadata at study, series or instance level (PS3.18 10.4.1.1.2)."""
    choice = negotiate(request, OFFERS)
    study, series, instance = path_uids(request)
    assert study is not None  # every metadata route has {study}
    archive = context(request).archive
    absolute = f'"BulkDataURI":"{_json_escape(service_root(request))}/studies/'
    if not choice.multipart:
        body = await blocking(_json_array, archive, study, series, instance, absolute)
        if body is None:
            raise _not_found(study, series, instance)
        return await json_response(request, body, content_type(choice))
    texts = await blocking(lambda: list(archive.metadata(study, series, instance)))
    if not texts:
        raise _not_found(study, series, instance)
    writer = MultipartWriter()
    return ClosingStreamingResponse(
        _xml_parts(texts, absolute, writer), media_type=content_type(choice, writer.boundary)
    )


def _json_array(
    archive: Archive, study: str, series: str | None, instance: str | None, absolute: str
) -> bytes | None:
    """The stored JSON texts joined into one array, with absolute BulkDataURIs; None if
    nothing matched."""
    texts = list(archive.metadata(study, series, instance))
    if not texts:
        return None
    return ("[" + ",".join(texts) + "]").replace(RELATIVE_BULK, absolute).encode("utf-8")


def _not_found(study: str, series: str | None, instance: str | None) -> HTTPError:
    level = "instance" if instance else "series" if series else "study"
    return not_found(f"{level} {instance or series or study} is not in the archive")


def _json_escape(text: str) -> str:
    return json.dumps(text)[1:-1]


def _xml_parts(texts: list[str], absolute: str, writer: MultipartWriter) -> Iterator[bytes]:
    for text in texts:
        dataset = json.loads(text.replace(RELATIVE_BULK, absolute))
        yield writer.part(mt.DICOM_XML) + to_xml(dataset)
    yield writer.close()
