"""Requests for state another worker holds (`isthmus serve --workers N`, workers.py).

Each worker keeps some state in memory - an association announced to a browser, a
p2p fetch in progress, its metrics - and the shared HTTP port hands a request to any
worker.  So ids of such state name their worker ("w1.<token>"), and a worker asked
about another's passes the request on to that worker's own plain-HTTP port on
loopback (`WebContext.siblings`), with the caller's credentials, so that the holder
admits the caller itself.  A request passed on carries `VIA_HEADER` and is never
passed on again.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping

import httpx
from starlette.requests import Request

log = logging.getLogger(__name__)

# Set on a passed-on request (to the worker that passed it on).
VIA_HEADER = "x-isthmus-worker"
TIMEOUT = 10.0  # seconds for a sibling's answer


def new_id(worker: str, nbytes: int = 18) -> str:
    """A random id, prefixed with this worker's name when there are workers."""
    token = secrets.token_urlsafe(nbytes)  # no "." in it
    return f"{worker}.{token}" if worker else token


def holder_of(
    ident: str, worker: str, siblings: Mapping[str, str], headers: Mapping[str, str]
) -> str | None:
    """The base URL of the sibling `ident` belongs to, or None (no worker prefix, this
    worker's own, an unknown worker, or passed on already)."""
    name, dot, _ = ident.partition(".")
    if not dot or not worker or name == worker or VIA_HEADER in headers:
        return None
    return siblings.get(name)


async def ask(
    request: Request, base_url: str, params: Mapping[str, str] | None = None
) -> httpx.Response:
    """The same GET (path, query, Authorization), answered by the sibling at
    `base_url`.  Raises httpx.HTTPError when it cannot be reached."""
    headers = {VIA_HEADER: "1"}
    if "authorization" in request.headers:
        headers["authorization"] = request.headers["authorization"]
    query = dict(request.query_params) | dict(params or {})
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        return await client.get(f"{base_url}{request.url.path}", params=query, headers=headers)
