"""Endpoints for operators: health for load balancers, metrics, and the audit trail.

- ``GET /healthz``: the process answers (200), nothing else is looked at.
- ``GET /readyz``: the index answers a query and the blob store is a writable folder
  (200), or 503 with the reason; a load balancer sends traffic only while it is 200.
- ``GET /metrics``: the Prometheus text format (isthmus.metrics); permission
  ``metrics`` (or ``admin``), open in developer mode (loopback, no credentials).
- ``GET /api/audit?from=&to=&user=&patient=&study=&event=&limit=``: audit log entries,
  newest first, as JSON (docs/operations.md); permission ``admin`` only, since the
  audit trail names patients.

The existing ``/health`` (app.py) stays as it was.
"""

from __future__ import annotations

import logging
from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from isthmus.audit import Filter, search
from isthmus.web.errors import bad_request, not_found
from isthmus.web.service import blocking, context

log = logging.getLogger(__name__)

MAX_LIMIT = 10_000


def routes() -> list[Route]:
    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/api/audit", audit),
    ]


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> Response:
    try:
        await blocking(context(request).archive.ready)
    except Exception as exc:
        log.warning("not ready: %s", exc)
        return JSONResponse({"status": "unready", "reason": str(exc)[:300]}, status_code=503)
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    ctx = context(request)
    _require(request, "metrics")
    if ctx.metrics is None:
        raise not_found("metrics are not collected by this server")
    from isthmus.metrics import CONTENT_TYPE, by_worker

    own = ctx.metrics.render()
    if not ctx.worker or request.query_params.get("worker") == "self":
        return Response(own, headers={"Content-Type": CONTENT_TYPE})
    texts = {ctx.worker: own.decode("utf-8")} | await _siblings_metrics(request)
    return Response(by_worker(texts), headers={"Content-Type": CONTENT_TYPE})


async def _siblings_metrics(request: Request) -> dict[str, str]:
    """The other workers' own metrics (workers.py), asked on their own ports with the
    caller's credentials; a worker that does not answer (restarting) is left out."""
    import httpx

    from isthmus.web import siblings

    out: dict[str, str] = {}
    for name, base in sorted(context(request).siblings.items()):
        try:
            rsp = await siblings.ask(request, base, {"worker": "self"})
        except httpx.HTTPError as exc:
            log.warning("metrics of worker %s: %s", name, exc)
            continue
        if rsp.status_code == 200:
            out[name] = rsp.text
    return out


async def audit(request: Request) -> Response:
    ctx = context(request)
    _require(request, "admin")
    if ctx.audit_log is None:
        raise not_found("this server keeps no audit log")
    where = audit_filter(dict(request.query_params))
    entries = await blocking(search, ctx.audit_log, where)
    return JSONResponse(entries)


def audit_filter(params: dict[str, str]) -> Filter:
    """The search an administrator asks for, from ``from``/``to`` (ISO 8601 dates or
    date-times; a date alone for ``to`` means the end of that day), ``user``,
    ``patient`` (Patient ID, or part of the name), ``study``, ``event``, ``limit``."""
    try:
        limit = int(params.get("limit", "100"))
    except ValueError:
        raise bad_request("limit must be a whole number") from None
    if not 0 < limit <= MAX_LIMIT:
        raise bad_request(f"limit must be between 1 and {MAX_LIMIT}")
    return Filter(
        start=parse_time(params.get("from"), end=False),
        end=parse_time(params.get("to"), end=True),
        user=params.get("user") or None,
        patient=params.get("patient") or None,
        study=params.get("study") or None,
        event=params.get("event") or None,
        limit=limit,
    )


def parse_time(text: str | None, end: bool) -> datetime | None:
    """An ISO 8601 date or date-time; a bare date is its first (or, as an end, last) moment."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(f"{text!r} is not an ISO 8601 date or date-time") from None
    if end and len(text) == 10:  # YYYY-MM-DD
        when = when.replace(hour=23, minute=59, second=59, microsecond=999_999)
    return when


def _require(request: Request, permission: str) -> None:
    client = request.client
    context(request).authenticator.require(
        request.headers.get("authorization"), permission, client.host if client else None
    )
