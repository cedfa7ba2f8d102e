"""QIDO-RS: the Search transaction (PS3.18 10.6) over the archive's matching engine.

Six resources: /studies, /series, /instances, /studies/{s}/series,
/studies/{s}/instances, /studies/{s}/series/{r}/instances.  Query parameters are
matching keys (keyword or tag), `includefield`, `fuzzymatching`, `limit` and
`offset` (PS3.18 8.3.4); matching is the C-FIND engine's (PS3.4 C.2.2.2), so both
doors answer the same question the same way.  A result lists the attributes of
PS3.18 10.6.3.3 for its level, including those of the levels above it when the
search spans them (all series, all instances, the instances of a study).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from isthmus.archive import Archive, FindResult, Query, QueryError, resolve_tag
from isthmus.dicom.json import dumps_bytes, first_value
from isthmus.web import media_types as mt
from isthmus.web.compression import json_response
from isthmus.web.dicom_xml import to_xml
from isthmus.web.errors import bad_request
from isthmus.web.multipart import MultipartWriter
from isthmus.web.negotiation import Choice, Offer, content_type, negotiate
from isthmus.web.params import (
    SEARCH_CONTROL_PARAMS,
    non_negative_int,
    path_uids,
    uid_list,
    unperformed_matching,
)
from isthmus.web.service import ClosingStreamingResponse, blocking, context, service_root

MAX_RESULTS = 10_000
OFFERS = [Offer(mt.DICOM_JSON), Offer(mt.JSON), Offer(mt.DICOM_XML, multipart=True)]
STUDY_UID, SERIES_UID = 0x0020000D, 0x0020000E
RETRIEVE_URL, INSTANCE_AVAILABILITY = "00081190", "00080056"
WARNING_TRUNCATED = (
    '299 isthmus "The number of results exceeded the limit; '
    'more results can be requested with offset"'
)


def routes() -> list[Route]:
    return [
        Route("/studies", search, methods=["GET"], name="qido_studies"),
        Route("/series", search, methods=["GET"]),
        Route("/instances", search, methods=["GET"]),
        Route("/studies/{study}/series", search, methods=["GET"]),
        Route("/studies/{study}/instances", search, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances", search, methods=["GET"]),
    ]


def level_of(path: str) -> str:
    """The query level a QIDO path searches at."""
    if path.endswith("/instances"):
        return "IMAGE"
    if path.endswith("/series"):
        return "SERIES"
    return "STUDY"


async def search(request: Request) -> Response:
    """Any of the six search resources (PS3.18 10.6.1)."""
    choice = negotiate(request, OFFERS)
    study, series, _ = path_uids(request)
    level = level_of(request.url.path)
    query = build_query(request, level, study, series)
    warnings = [warning(text) for text in unperformed_matching(request)]
    archive = context(request).archive
    # One trip to the thread pool: the search and, for JSON, its serialization (a
    # large answer takes a while and must not hold the event loop).
    try:
        result, body = await blocking(
            _search_and_encode,
            archive,
            query,
            level,
            study,
            series,
            service_root(request),
            not choice.multipart,
        )
    except QueryError as exc:
        raise bad_request(str(exc)) from None
    if result.truncated:
        warnings.append(WARNING_TRUNCATED)
    headers = {"Warning": ", ".join(warnings)} if warnings else {}
    if not result.matches:
        return Response(status_code=204, headers=headers)
    if body is not None:
        return await json_response(request, body, content_type(choice), headers)
    return respond(choice, result.matches, headers)


def warning(text: str) -> str:
    """A Warning header value (RFC 9111 5.5) of code 299 from this server."""
    return f'299 isthmus "{text}"'


def _search_and_encode(
    archive: Archive,
    query: Query,
    level: str,
    study: str | None,
    series: str | None,
    root: str,
    encode: bool,
) -> tuple[FindResult, bytes | None]:
    """`run_search`, and the matches as a DICOM JSON body when `encode` (and any)."""
    result = run_search(archive, query, level, study, series, root)
    body = _json_body(result.matches) if encode and result.matches else None
    return result, body


def run_search(
    archive: Archive, query: Query, level: str, study: str | None, series: str | None, root: str
) -> FindResult:
    """The matches, with the parent attributes and Retrieve URL of PS3.18 10.6.3.3."""
    result: FindResult = archive.find(query)
    if result.matches:
        archive.add_parent_attributes(level, result.matches, study, series)
        for match in result.matches:
            _add_retrieve_url(match, level, root)
    return result


def _json_body(datasets: list[dict[str, Any]]) -> bytes:
    return dumps_bytes(datasets)


def build_query(request: Request, level: str, study: str | None, series: str | None) -> Query:
    """A Query from the request's parameters (PS3.18 8.3.4), or a 400 for bad ones."""
    keys: dict[int, str] = {}
    include_all = False
    for name, value in request.query_params.multi_items():
        if name == "includefield":
            for item in (v.strip() for v in value.split(",")):
                if item == "all":
                    include_all = True
                elif item:
                    keys.setdefault(_include_tag(item), "")
        elif name not in SEARCH_CONTROL_PARAMS and name != "transfer-syntax":
            tag = _tag(name)
            value = uid_list(tag, value)
            keys[tag] = f"{keys[tag]}\\{value}" if keys.get(tag) else value
    if study is not None:
        keys[STUDY_UID] = study
    if series is not None:
        keys[SERIES_UID] = series
    fuzzy = (request.query_params.get("fuzzymatching") or "false").lower()
    if fuzzy not in ("true", "false"):
        raise bad_request("fuzzymatching must be true or false")
    limit = non_negative_int(request, "limit", MAX_RESULTS)
    limit = min(limit or MAX_RESULTS, MAX_RESULTS)
    offset = non_negative_int(request, "offset", 0) or 0
    return Query(
        level=level,
        keys=keys,
        fuzzy=fuzzy == "true",
        include_defaults=True,
        include_all=include_all,
        limit=limit,
        offset=offset,
        validate_all=True,
    )


def _tag(name: str) -> int:
    if "." in name:
        raise bad_request(f"{name[:80]!r}: matching on sequence items is not supported")
    try:
        return resolve_tag(name)
    except KeyError:
        raise bad_request(f"unknown query parameter or attribute {name[:80]!r}") from None


def _include_tag(name: str) -> int:
    """The attribute an includefield value names (PS3.18 8.3.4.3): a tag or keyword, or a
    path into a sequence (``300C0002.00081155``), which returns the whole sequence."""
    from pydicom.datadict import dictionary_VR

    if "." not in name:
        return _tag(name)
    path = name.split(".")
    try:
        tags = [resolve_tag(part) for part in path]
        if any(dictionary_VR(tag) != "SQ" for tag in tags[:-1]):
            raise KeyError(name)
    except KeyError:
        raise bad_request(
            f"includefield {name[:80]!r}: not a path of sequence attributes to an attribute"
        ) from None
    return tags[0]


def _add_retrieve_url(match: dict[str, Any], level: str, root: str) -> None:
    url = f"{root}/studies/{first_value(match.get('0020000D')) or ''}"
    if level in ("SERIES", "IMAGE"):
        url += f"/series/{first_value(match.get('0020000E')) or ''}"
    if level == "IMAGE":
        url += f"/instances/{first_value(match.get('00080018')) or ''}"
    match[RETRIEVE_URL] = {"vr": "UR", "Value": [url]}
    match[INSTANCE_AVAILABILITY] = {"vr": "CS", "Value": ["ONLINE"]}


# --------------------------------------------------------------- responses
def respond(
    choice: Choice,
    datasets: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """A list of datasets as DICOM JSON, or as multipart DICOM XML (PS3.18 8.7.5)."""
    if not choice.multipart:
        body = _json_body(datasets)
        return Response(body, status_code=status, headers=headers, media_type=content_type(choice))
    writer = MultipartWriter()

    def parts() -> Iterator[bytes]:
        for dataset in datasets:
            yield writer.part(mt.DICOM_XML) + to_xml(dataset)
        yield writer.close()

    return ClosingStreamingResponse(
        parts(),
        status_code=status,
        headers=headers,
        media_type=content_type(choice, writer.boundary),
    )
