"""What the HTTP door tells the audit trail and the metrics about each request.

An ASGI middleware (outside the limits and authentication, so it times everything):
when a response has been sent it publishes the request's latency (``metrics.request``,
by route kind, bounded in number) and, for the reads of patient data, an audit event
(archive/activity.py): QIDO-RS and UPS-RS searches as "query", WADO-RS and WADO-URI
retrievals as "transferred" with the study the URL names.  STOW-RS and DELETE tell their own (they
know what they stored or deleted); credentials are told by auth.py.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from isthmus.archive import Activity
from isthmus.web.service import DICOMWEB_PREFIX

QIDO_LEVELS = ("studies", "series", "instances")
WADO_RESOURCES = ("metadata", "frames", "rendered", "thumbnail", "bulkdata", "pixeldata")
OTHER_ROUTES = {
    "/health": "health",
    "/healthz": "health",
    "/readyz": "health",
    "/metrics": "metrics",
    "/api/audit": "audit",
    "/wado": "wado-uri",
}


def route_kind(method: str, path: str) -> str:
    """A bounded label for the metrics: "qido", "wado", "wado-frames", "stow", …"""
    if path in OTHER_ROUTES:
        return OTHER_ROUTES[path]
    if path != DICOMWEB_PREFIX and not path.startswith(DICOMWEB_PREFIX + "/"):
        return "api" if path.startswith("/api/") else "viewer"
    if method == "POST":
        return "stow"
    if method == "DELETE":
        return "delete"
    if method == "OPTIONS":
        return "capabilities"
    parts = [p for p in path[len(DICOMWEB_PREFIX) :].split("/") if p]
    if not parts:
        return "capabilities"
    if parts[-1] in QIDO_LEVELS and len(parts) % 2 == 1:
        return "qido"
    resource = next((p for p in parts if p in WADO_RESOURCES), None)
    return f"wado-{resource}" if resource else "wado"


class ObserveMiddleware:
    """Times every HTTP request and tells the reads of patient data."""

    def __init__(self, app: ASGIApp, activity: Activity) -> None:
        self.app = app
        self.activity = activity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method, path = scope["method"], scope.get("path", "")
            kind = route_kind(method, path)
            self.activity.request(kind, method, status, time.perf_counter() - started)
            if status < 400:
                self._audit(scope, kind)

    def _audit(self, scope: Scope, kind: str) -> None:
        principal = scope.get("state", {}).get("principal")
        client = scope.get("client")
        who = {
            "user": getattr(principal, "name", "anonymous"),
            "address": client[0] if client else None,
            "local": scope.get("path", ""),
        }
        query = scope.get("query_string", b"").decode("latin-1")
        if kind == "qido" or _is_ups_search(scope["method"], scope.get("path", "")):
            self.activity.audit("query", door="dicomweb", query=query, **who)
        elif kind.startswith("wado"):
            study = _study_of(scope.get("path", ""), query, kind)
            studies = [{"uid": study}] if study else []
            door = "wado-uri" if kind == "wado-uri" else "dicomweb"
            self.activity.audit("transferred", door=door, studies=studies, **who)


def _is_ups_search(method: str, path: str) -> bool:
    """A UPS-RS search (PS3.18 11.9, GET …/workitems): a query for the audit trail
    (PS3.15 A.5.3.10), not a retrieval of instances."""
    return method == "GET" and path.rstrip("/") == DICOMWEB_PREFIX + "/workitems"


def _study_of(path: str, query: str, kind: str) -> str | None:
    if kind == "wado-uri":
        values = parse_qs(query).get("studyUID")
        return values[0] if values else None
    parts = [p for p in path[len(DICOMWEB_PREFIX) :].split("/") if p]
    if len(parts) >= 2 and parts[0] == "studies":
        return parts[1]
    return None
