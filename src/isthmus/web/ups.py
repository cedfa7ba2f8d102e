"""UPS-RS, the Worklist Service (PS3.18 11) over the archive's one work item store.

Resources, under the DICOMweb root (``/dicom-web``):

=========================================================  =================================
``POST   /workitems[?{uid}]``                              Create (11.4): 201 + Location
``GET    /workitems?{keys}``                               Search (11.9), QIDO-style keys
``GET    /workitems/{uid}``                                Retrieve (11.5)
``POST   /workitems/{uid}[?{transaction}]``                Update (11.6)
``PUT    /workitems/{uid}/state``                          Change State (11.7)
``POST   /workitems/{uid}/cancelrequest``                  Request Cancellation (11.8): 202
``POST   /workitems/{uid}/subscribers/{aet}[?deletionlock=true]``  Subscribe (11.10): 201
``DELETE /workitems/{uid}/subscribers/{aet}``              Unsubscribe (11.11)
``POST   /workitems/1.2.840.10008.5.1.4.34.5/subscribers/{aet}/suspend``  Suspend (11.12)
``GET    ws://…/dicom-web/subscribers/{aet}``              Open Event Channel (ups_channel.py)
=========================================================  =================================

``{uid}`` may be the global subscription UID (…34.5) or the filtered one (…34.5.1, whose
``filter`` parameter, or plain matching-key parameters, are the filter).  Bodies are ``application/dicom+json`` (a dataset or
an array of one) or ``application/dicom+xml``; answers are JSON unless the client
accepts only XML.  The work item store decides everything; `HTTP_STATUS` maps its
DIMSE status (`UpsStatus`) to the HTTP status PS3.18 names (404 for an unknown item,
409 for a request the item's state refuses, 400 for a bad request), and every refusal
and warning (0xB3xx) also travels in a ``Warning: 299`` header (PS3.18 11.x.3).

Create, Update, Change State and Request Cancellation, accepted or refused, are each
told to the audit trail as a Procedure Record (PS3.15 A.5.3.15; `StepChange`), with the
HTTP user and address as requestor and the URL path as the archive.
"""

from __future__ import annotations

import json
import re
from types import TracebackType
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from isthmus.archive import (
    FILTERED_SUBSCRIPTION,
    GLOBAL_SUBSCRIPTION,
    QueryError,
    UpsStatus,
    WorkItemError,
    resolve_tag,
)
from isthmus.archive import UPS_PUSH_SOP_CLASS as UPS_PUSH
from isthmus.archive.activity import MINOR_FAILURE, SERIOUS_FAILURE, SUCCESS
from isthmus.dicom.json import dumps_bytes
from isthmus.dicom.uids import looks_like_uid
from isthmus.web import media_types as mt
from isthmus.web.dicom_xml import from_xml, to_xml
from isthmus.web.errors import HTTPError, bad_request, unsupported_media_type
from isthmus.web.negotiation import Offer, content_type, negotiate
from isthmus.web.params import (
    SEARCH_CONTROL_PARAMS,
    non_negative_int,
    uid_list,
    unperformed_matching,
)
from isthmus.web.qido import respond
from isthmus.web.service import blocking, context, service_root

MAX_BODY = 4 * 1024 * 1024
MAX_RESULTS = 10_000
PROCEDURE_STEP_STATE, TRANSACTION_UID = "00741000", "00081195"
SEARCH_OFFERS = [Offer(mt.DICOM_JSON), Offer(mt.JSON), Offer(mt.DICOM_XML, multipart=True)]
ONE_OFFERS = [Offer(mt.DICOM_JSON), Offer(mt.JSON), Offer(mt.DICOM_XML)]
GLOBAL_UIDS = (GLOBAL_SUBSCRIPTION, FILTERED_SUBSCRIPTION)
FILTER_PAIR = re.compile(r"[0-9A-Za-z]+(\.[0-9A-Za-z]+)*=")  # attribute (path) "="

# DIMSE status of the store → HTTP status (PS3.18 11.4.3 … 11.12.3).
HTTP_STATUS = {
    UpsStatus.NO_SUCH_WORKITEM: 404,
    UpsStatus.DUPLICATE_SOP_INSTANCE: 409,
    UpsStatus.MAY_NO_LONGER_BE_UPDATED: 409,
    UpsStatus.WRONG_TRANSACTION_UID: 409,
    UpsStatus.ALREADY_IN_PROGRESS: 409,
    UpsStatus.FINAL_STATE_NOT_MET: 409,
    UpsStatus.NOT_YET_IN_PROGRESS: 409,
    UpsStatus.ALREADY_COMPLETED_CANCEL: 409,
    UpsStatus.PERFORMER_CANNOT_BE_CONTACTED: 409,
    UpsStatus.PROCESSING_FAILURE: 503,
}
# What each warning means, in the standard's words (PS3.4 CC.2.x status tables).
WARNING_TEXT = {
    UpsStatus.CREATED_WITH_MODIFICATIONS: "The UPS was created with modifications",
    UpsStatus.DELETION_LOCK_NOT_GRANTED: "Deletion Lock not granted",
    UpsStatus.ALREADY_CANCELED: "The UPS is already in the requested state of CANCELED",
    UpsStatus.ALREADY_COMPLETED: "The UPS is already in the requested state of COMPLETED",
    UpsStatus.COERCED: "Coerced invalid values to valid values",
}


def routes() -> list[BaseRoute]:
    return [
        Route("/workitems", create, methods=["POST"]),
        Route("/workitems", search, methods=["GET"]),
        Route("/workitems/{uid}", retrieve, methods=["GET"]),
        Route("/workitems/{uid}", update, methods=["POST"]),
        Route("/workitems/{uid}/state", change_state, methods=["PUT"]),
        Route("/workitems/{uid}/cancelrequest", request_cancel, methods=["POST"]),
        Route("/workitems/{uid}/subscribers/{aet}", subscribe, methods=["POST"]),
        Route("/workitems/{uid}/subscribers/{aet}", unsubscribe, methods=["DELETE"]),
        Route("/workitems/{uid}/subscribers/{aet}/suspend", suspend, methods=["POST"]),
    ]


# ------------------------------------------------------------------ helpers
def warning_header(text: str) -> str:
    return '299 isthmus "' + text.replace('"', "'").replace("\r", " ").replace("\n", " ") + '"'


def refused(exc: WorkItemError) -> HTTPError:
    """The HTTP answer to a refusal: its status, the reason, and a Warning header."""
    status = HTTP_STATUS.get(exc.status, 400)
    message = f"{exc.reason} (DIMSE status 0x{int(exc.status):04X})"
    return HTTPError(status, message, {"Warning": warning_header(exc.reason)})


def warnings_of(statuses: list[UpsStatus]) -> dict[str, str]:
    texts = [WARNING_TEXT.get(s, s.name.replace("_", " ").lower()) for s in statuses]
    return {"Warning": ", ".join(warning_header(t) for t in texts)} if texts else {}


def workitem_uid(request: Request) -> str:
    uid = str(request.path_params["uid"])
    if not looks_like_uid(uid):
        raise bad_request(f"{uid[:80]!r} is not a UID")
    return uid


def bare_query_uid(request: Request, what: str) -> str | None:
    """A UID given as the whole query string (``?1.2.3``, PS3.18 11.4.1, 11.6.1); also
    accepted as ``?{what}=1.2.3``."""
    raw = unquote(request.url.query or "")
    if not raw:
        return None
    first = raw.split("&", 1)[0]
    name, eq, value = first.partition("=")
    uid = value if eq and name == what else name if not eq else None
    if uid is None:
        return None
    if not looks_like_uid(uid):
        raise bad_request(f"{uid[:80]!r} is not a {what} UID")
    return uid


async def read_dataset(request: Request, required: bool = True) -> dict[str, Any]:
    """The request body as one DICOM JSON dataset (JSON, an array of one, or XML)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HTTPError(413, f"a work item body is at most {MAX_BODY} bytes")
    if not body.strip():
        if required:
            raise bad_request("the request body is empty; it must hold a dataset")
        return {}
    media = (request.headers.get("content-type") or mt.DICOM_JSON).split(";")[0].strip().lower()
    if media == mt.DICOM_XML:
        try:
            return from_xml(bytes(body))
        except Exception as exc:
            raise bad_request(f"the body is not a DICOM XML dataset: {exc}") from None
    if media not in (mt.DICOM_JSON, mt.JSON):
        raise unsupported_media_type(f"send {mt.DICOM_JSON} or {mt.DICOM_XML}, not {media}")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise bad_request(f"the body is not JSON: {exc}") from None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) for k, v in data.items()
    ):
        raise bad_request("the body must be one DICOM JSON dataset (an object of tags)")
    return {k.upper(): v for k, v in data.items()}


def first_value(ds: dict[str, Any], tag: str) -> Any:
    values = (ds.get(tag) or {}).get("Value") or []
    return values[0] if values else None


async def run(call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await blocking(call, *args, **kwargs)
    except WorkItemError as exc:
        raise refused(exc) from None


def location(request: Request, uid: str) -> str:
    return f"{service_root(request)}/workitems/{uid}"


class StepChange:
    """One UPS-RS change of a work item, told to the audit trail once it ends (PS3.15
    A.5.3.15 Procedure Record): accepted, with `step` the item as it is now; refused by
    the store or the door (an HTTPError: outcome 4, its message), or failed (any other
    exception: outcome 8), with the item as stored (a creation: `step`, as asked).

    ``async with StepChange(request, "U", "update") as change:`` and set `uid` and
    `step` as they become known."""

    def __init__(self, request: Request, action: str, operation: str) -> None:
        self.request, self.action, self.operation = request, action, operation
        self.uid: str | None = None
        self.step: dict[str, Any] | None = None

    async def __aenter__(self) -> StepChange:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        outcome, description = SUCCESS, None
        if isinstance(exc, HTTPError):
            outcome, description = MINOR_FAILURE, exc.message
        elif exc is not None:
            outcome, description = SERIOUS_FAILURE, "processing failure"
        if isinstance(exc, Exception) and self.action != "C" and self.uid:
            self.step = await self._stored(self.uid) or self.step
        principal = self.request.scope.get("state", {}).get("principal")
        context(self.request).archive.activity.procedure_record(
            self.action,
            UPS_PUSH,
            self.uid or "",
            self.step,
            operation=self.operation,
            outcome=outcome,
            description=description,
            door="dicomweb",
            user=getattr(principal, "name", "anonymous"),
            address=self.request.client.host if self.request.client else None,
            local=self.request.url.path,
        )

    async def _stored(self, uid: str) -> dict[str, Any] | None:
        """The work item as stored: whom a refused change was about."""
        try:
            return await blocking(context(self.request).archive.workitems.get, uid)
        except Exception:  # noqa: BLE001 - an unknown item, an index down: no subject
            return None


# ---------------------------------------------------------------- resources
async def create(request: Request) -> Response:
    """Create Workitem (PS3.18 11.4): 201 Created with its Location."""
    async with StepChange(request, "C", "create") as change:
        change.uid = uid = bare_query_uid(request, "workitem")
        change.step = dataset = await read_dataset(request)
        result = await run(context(request).archive.workitems.create, dataset, uid)
        change.uid, change.step = result.uid, result.dataset
    url = location(request, result.uid)
    headers = {"Location": url, "Content-Location": url, **warnings_of(result.warnings)}
    return Response(status_code=201, headers=headers)


async def retrieve(request: Request) -> Response:
    """Retrieve Workitem (PS3.18 11.5): the item, never its Transaction UID."""
    choice = negotiate(request, ONE_OFFERS)
    dataset = await run(context(request).archive.workitems.get, workitem_uid(request))
    if choice.media_type == mt.DICOM_XML:
        return Response(to_xml(dataset), media_type=mt.DICOM_XML)
    return Response(dumps_bytes([dataset]), media_type=content_type(choice))


async def update(request: Request) -> Response:
    """Update Workitem (PS3.18 11.6): the Transaction UID in the query, as
    ``?{transaction}``, needed once the item is IN PROGRESS."""
    async with StepChange(request, "U", "update") as change:
        change.uid = uid = workitem_uid(request)
        transaction = bare_query_uid(request, "transaction")
        changes = await read_dataset(request)
        result = await run(context(request).archive.workitems.update, uid, changes, transaction)
        change.step = result.dataset
    return Response(status_code=200, headers=warnings_of(result.warnings))


async def change_state(request: Request) -> Response:
    """Change Workitem State (PS3.18 11.7): Procedure Step State and Transaction UID
    in the body."""
    async with StepChange(request, "U", "change state") as change:
        change.uid = uid = workitem_uid(request)
        body = await read_dataset(request)
        state = first_value(body, PROCEDURE_STEP_STATE)
        if state is None:
            raise refused(
                WorkItemError(
                    UpsStatus.MISSING_ATTRIBUTE, "Procedure Step State (0074,1000) is required"
                )
            )
        transaction = first_value(body, TRANSACTION_UID)
        result = await run(
            context(request).archive.workitems.change_state, uid, str(state), transaction
        )
        change.step = result.dataset
    return Response(status_code=200, headers=warnings_of(result.warnings))


async def request_cancel(request: Request) -> Response:
    """Request Cancellation (PS3.18 11.8): 202 Accepted; the performer decides.  The
    Cancel Requested event needs a Requesting AE (PS3.4 Table CC.2.4-1): the body's, else
    the node's own AE title, as the SCP that took the request (an HTTP client has none)."""
    async with StepChange(request, "U", "request cancellation") as change:
        change.uid = uid = workitem_uid(request)
        body = await read_dataset(request, required=False)
        ctx = context(request)
        requester = str(first_value(body, "00741236") or "") or ctx.settings.aet
        result = await run(ctx.archive.workitems.request_cancel, uid, body, requester)
        change.step = result.dataset
    return Response(status_code=202, headers=warnings_of(result.warnings))


async def search(request: Request) -> Response:
    """Search for Workitems (PS3.18 11.9): QIDO-style keys (keyword, tag, ``Seq.Key``),
    `limit`, `offset`, `fuzzymatching`; every result carries all its attributes."""
    choice = negotiate(request, SEARCH_OFFERS)
    params = match_params(request)
    limit = min(non_negative_int(request, "limit", MAX_RESULTS) or MAX_RESULTS, MAX_RESULTS)
    offset = non_negative_int(request, "offset", 0) or 0
    fuzzy = (request.query_params.get("fuzzymatching") or "false").lower() == "true"
    warnings = [warning_header(text) for text in unperformed_matching(request)]
    try:
        found = await blocking(
            context(request).archive.workitems.search, params, limit + 1, offset, fuzzy
        )
    except QueryError as exc:
        raise bad_request(str(exc)) from None
    truncated = len(found) > limit
    if truncated:
        found = found[:limit]
        warnings.append(
            warning_header(
                "The number of results exceeded the limit; more can be requested with offset"
            )
        )
    headers = {"Warning": ", ".join(warnings)} if warnings else {}
    if not found:
        return Response(status_code=204, headers=headers)
    for ds in found:
        ds["00081190"] = {"vr": "UR", "Value": [location(request, first_value(ds, "00080018"))]}
    return respond(choice, found, headers, status=206 if truncated else 200)


def match_params(request: Request, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Matching keys of the query string; repeated keys are a list (``a\\b``)."""
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name.lower() in SEARCH_CONTROL_PARAMS or name in skip:
            continue
        value = _uid_list(name, value)
        params[name] = f"{params[name]}\\{value}" if name in params else value
    return params


def _uid_list(name: str, value: str) -> str:
    """`params.uid_list` for a parameter named by keyword or tag, or ``Sequence.Key``."""
    try:
        tag = resolve_tag(name.rsplit(".", 1)[-1])
    except (KeyError, ValueError):
        return value  # the engine refuses an unknown name
    return uid_list(tag, value)


async def subscribe(request: Request) -> Response:
    """Subscribe (PS3.18 11.10): to one item, globally, or with a filter; 201."""
    uid, aet = workitem_uid(request), str(request.path_params["aet"])
    lock = (request.query_params.get("deletionlock") or "false").lower() == "true"
    filter_keys = subscription_filter(request) if uid == FILTERED_SUBSCRIPTION else None
    if uid == FILTERED_SUBSCRIPTION and not filter_keys:
        raise bad_request("a filtered subscription needs matching keys in the query")
    try:
        warnings = await blocking(
            context(request).archive.workitems.subscribe, aet, uid, lock, filter_keys
        )
    except WorkItemError as exc:
        raise refused(exc) from None
    except QueryError as exc:
        raise bad_request(str(exc)) from None
    return Response(status_code=201, headers=warnings_of(warnings))


def subscription_filter(request: Request) -> dict[str, str]:
    """The matching keys of a Filtered Worklist subscription: the ``filter`` parameter,
    "a comma-separated list of one or more matching keys (attribute/value pairs)"
    (PS3.18 11.10.1.2), where a piece that is no pair continues the value before it (a
    UID list, ``0020000D=1.2.3,1.2.4``); and, as well, matching keys given as plain
    query parameters."""
    params = match_params(request, ("deletionlock", "filter"))
    for raw in request.query_params.getlist("filter"):
        pairs: list[tuple[str, str]] = []
        for piece in raw.split(","):
            if FILTER_PAIR.match(piece):
                name, _, value = piece.partition("=")
                pairs.append((name, value))
            elif pairs:
                pairs[-1] = (pairs[-1][0], f"{pairs[-1][1]},{piece}")
            else:
                raise bad_request(f"filter: {piece[:80]!r} is not attribute=value")
        for name, value in pairs:
            value = _uid_list(name, value)
            params[name] = f"{params[name]}\\{value}" if name in params else value
    return params


async def unsubscribe(request: Request) -> Response:
    """Unsubscribe (PS3.18 11.11): from one item, or (global UIDs) from all."""
    uid, aet = workitem_uid(request), str(request.path_params["aet"])
    await run(context(request).archive.workitems.unsubscribe, aet, uid)
    return Response(status_code=200)


async def suspend(request: Request) -> Response:
    """Suspend Global Subscription (PS3.18 11.12): future items are not subscribed."""
    uid, aet = workitem_uid(request), str(request.path_params["aet"])
    if uid not in GLOBAL_UIDS:
        raise bad_request(f"only a global subscription ({GLOBAL_SUBSCRIPTION}) is suspended")
    await run(context(request).archive.workitems.suspend, aet)
    return Response(status_code=200)
