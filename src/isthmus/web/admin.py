"""The admin API under /api/admin/ (the admin page, viewer/admin.html, reads it).

Every endpoint needs the ``admin`` permission (auth.py; developer mode has it):

- ``GET peers``: the known peers (config) with their last contact, and other AE titles
  seen; ``GET routes``: AE titles routed elsewhere on the DICOM port (browser AEs
  registered through the WebSocket gateway, and remote AE titles of the relay);
  ``GET relay``: this site of the federation: fingerprints, sites, exports, imports;
  ``GET associations``: associations in progress (node/contacts.py);
- ``GET jobs`` (``status``, ``kind``, ``limit``), ``GET jobs/{id}`` (with its items),
  ``POST jobs/{id}/cancel``, ``POST jobs/{id}/retry`` (archive/jobs.py);
  (a POST whose Origin is another site is refused);
- ``GET storage``: archive counts, bytes stored, file system space;
- ``GET settings``: the settings in effect, secrets redacted (token hashes, passwords
  in URLs, key files).

The recent audit events are the audit trail's own endpoint (``/api/audit``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from isthmus.web.context import WebContext
from isthmus.web.errors import HTTPError, bad_request, not_found
from isthmus.web.service import blocking

PREFIX = "/api/admin"
REDACTED = "(redacted)"
_SECRET_SETTINGS = ("tls_key",)

Handler = Callable[[Request], Awaitable[Response]]


def routes(ctx: WebContext) -> list[BaseRoute]:
    def admin(handler: Callable[[Request], Any]) -> Handler:
        async def endpoint(request: Request) -> Response:
            ctx.authenticator.require(request.headers.get("authorization"), "admin")
            if request.method == "POST":
                _same_origin(ctx, request)
            body = await blocking(handler, request)
            return JSONResponse(body, headers={"Cache-Control": "no-store"})

        return endpoint

    return [
        Route(f"{PREFIX}/peers", admin(lambda r: peers(ctx))),
        Route(f"{PREFIX}/routes", admin(lambda r: routes_in_effect(ctx))),
        Route(f"{PREFIX}/associations", admin(lambda r: associations(ctx))),
        Route(f"{PREFIX}/jobs", admin(lambda r: jobs(ctx, r))),
        Route(f"{PREFIX}/jobs/{{id:int}}", admin(lambda r: job(ctx, r))),
        Route(
            f"{PREFIX}/jobs/{{id:int}}/{{action:str}}",
            admin(lambda r: job_action(ctx, r)),
            methods=["POST"],
        ),
        Route(f"{PREFIX}/storage", admin(lambda r: ctx.archive.usage())),
        Route(f"{PREFIX}/settings", admin(lambda r: settings_in_effect(ctx))),
        Route(f"{PREFIX}/relay", admin(lambda r: relay(ctx))),
        Route(f"{PREFIX}/relay/accept", admin(lambda r: relay_accept(ctx, r)), methods=["POST"]),
    ]


def _same_origin(ctx: WebContext, request: Request) -> None:
    """A POST from another web site's page is refused (403): in developer mode there is
    no credential to stop it, and a form or a plain fetch() needs no CORS preflight.
    Browsers send Origin on such requests; other clients send none."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    allowed = {f"{request.url.scheme}://{request.headers.get('host', '')}"}
    allowed |= set(ctx.settings.cors_origins)
    if origin not in allowed and "*" not in allowed:
        raise HTTPError(403, f"cross-origin request from {origin} refused")


def peers(ctx: WebContext) -> dict[str, Any]:
    contacts = ctx.contacts.contacts() if ctx.contacts else {}
    known = [
        {
            "aet": p.aet,
            "host": p.host,
            "port": p.port,
            "last_contact": contacts.get(p.aet),
        }
        for p in ctx.settings.peers
    ]
    names = {p.aet for p in ctx.settings.peers} | {ctx.settings.aet}
    others = [{"aet": aet, "last_contact": c} for aet, c in contacts.items() if aet not in names]
    return {"peers": known, "others": sorted(others, key=lambda o: o["aet"])}


def routes_in_effect(ctx: WebContext) -> dict[str, Any]:
    router = ctx.router
    remote = {i["aet"]: i["site"] for i in relay(ctx).get("imports", [])}
    return {
        "aet": ctx.settings.aet,
        "routes": [
            {"aet": aet, "kind": "relay", "site": remote[aet]}
            if aet in remote
            else {"aet": aet, "kind": "browser"}
            for aet in (router.routes() if router else [])
        ],
    }


def relay(ctx: WebContext) -> dict[str, Any]:
    """The federation as this site sees it (docs/relay.md, "Status"); {} without a relay."""
    return ctx.relay.status() if ctx.relay is not None else {}


def relay_accept(ctx: WebContext, request: Request) -> dict[str, Any]:
    """Trust a site's changed keys: ``?site=B&fingerprint=…`` (the new fingerprint, which
    the administrator compared with site B's own out of band)."""
    if ctx.relay is None:
        raise not_found("this node is not in a federation (no --relay)")
    site = request.query_params.get("site", "")
    fingerprint = request.query_params.get("fingerprint", "")
    try:
        ctx.relay.accept(site, fingerprint)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return ctx.relay.status()


def associations(ctx: WebContext) -> dict[str, Any]:
    return {"associations": ctx.contacts.associations() if ctx.contacts else []}


def jobs(ctx: WebContext, request: Request) -> dict[str, Any]:
    params = request.query_params
    try:
        limit = min(500, max(1, int(params.get("limit", "100"))))
    except ValueError:
        raise bad_request("limit must be a number") from None
    found = ctx.archive.jobs.search(
        status=params.get("status") or None, kind=params.get("kind") or None, limit=limit
    )
    return {"jobs": [j.as_json() for j in found]}


def job(ctx: WebContext, request: Request) -> dict[str, Any]:
    pk = int(request.path_params["id"])
    found = ctx.archive.jobs.get(pk)
    if found is None:
        raise not_found(f"no job {pk}")
    items = [
        {"item": item, "status": status, "reason": reason}
        for item, status, reason in ctx.archive.jobs.items(pk)
    ]
    return {**found.as_json(), "items": items}


def job_action(ctx: WebContext, request: Request) -> dict[str, Any]:
    pk, action = int(request.path_params["id"]), request.path_params["action"]
    if action == "cancel":
        found = ctx.archive.jobs.cancel(pk)
    elif action == "retry":
        found = ctx.archive.jobs.retry(pk)
    else:
        raise HTTPError(404, f"no action {action!r} (cancel, retry)")
    if found is None:
        raise not_found(f"no job {pk}")
    return found.as_json()


def settings_in_effect(ctx: WebContext) -> dict[str, Any]:
    """Every setting, JSON-ready, with secrets replaced by "(redacted)"."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(ctx.settings):
        out[f.name] = _plain(getattr(ctx.settings, f.name))
    out["tokens"] = {
        name: {"permissions": list(entry.get("permissions", [])), "hash": REDACTED}
        for name, entry in ctx.settings.tokens.items()
        if isinstance(entry, dict)
    }
    for name in ("index_url", "blob_url"):
        out[name] = _without_password(str(out[name]))
    out["resolved_index_url"] = _without_password(ctx.settings.resolved_index_url)
    for name in _SECRET_SETTINGS:
        if out.get(name):
            out[name] = REDACTED
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:{REDACTED}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
