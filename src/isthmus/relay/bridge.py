"""The relay bridge: the small central service of seed 002 (docs/relay.md, "Bridge API").

It enrols sites (their public keys, against a one-time secret), keeps the directory
(sites, keys, exported AE titles; relay/bridge_state.py), publishes it to NATS
(relay/bridge_publish.py) and signs object-store URLs scoped to one transfer
(relay/bridge_urls.py).  It holds no key that opens a payload.  Its state is in the
database only, so several processes may serve one PostgreSQL database.

HTTP API (JSON; errors are ``{"error": "…"}`` with a 4xx/5xx status):

- ``POST /api/relay/enrol`` {site, secret, keys}, signed with the keys being enrolled
  → {site, nats, fingerprint, bridge_key}
- ``PUT /api/relay/exports`` (signed) {exports: [Export.to_json()]} → {exports}
- ``GET /api/relay/directory`` → {sites: [signed SiteEntry.to_json()]} (public data only)
- ``POST /api/relay/urls`` (signed) {transfer, names, method} → {urls: {name: url}, expires}
- ``DELETE /api/relay/transfers/{transfer}`` (signed) → {deleted: n}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from obstore.exceptions import BaseError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from isthmus.config import ConfigError, is_loopback
from isthmus.node.tls import BCP195_CIPHERS
from isthmus.relay.bridge_publish import DirectoryPublisher, connect
from isthmus.relay.bridge_state import BridgeState, Refused, parse_keys
from isthmus.relay.bridge_urls import UrlSigner
from isthmus.relay.names import BadName, TransferId
from isthmus.relay.signing import (
    SIGNATURE_HEADER,
    SITE_HEADER,
    TIME_HEADER,
    fresh,
    public_bytes,
    request_message,
    sign_entry,
    verify_signature,
)

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # bytes of a request body (the largest: 1000 object names)


@dataclass(frozen=True)
class BridgeSettings:
    """What `isthmus bridge serve` needs."""

    index_url: str  # sqlite:///DIR/bridge.db or postgresql://…
    nats_url: str  # the bridge's own connection
    blob_url: str  # s3://bucket/prefix
    public_nats: str  # the NATS URL sites are told to use
    host: str = "127.0.0.1"
    http_port: int = 8450
    poll: float = 1.0  # seconds between comparisons of the database with the bucket
    reconcile: float = 10.0  # seconds between reads of the bucket itself
    public_url: str = ""  # what sites are told (https:// behind a TLS proxy)
    tls_cert: str = ""  # PEM files: the bridge speaks HTTPS itself
    tls_key: str = ""


def check_transport(settings: BridgeSettings) -> None:
    """Refuse to serve beyond loopback in clear: enrolment secrets and pre-signed URLs
    travel in request bodies.  HTTPS here (`tls_cert`) or at a proxy (`public_url`
    https://…) is required."""
    if is_loopback(settings.host) or settings.tls_cert:
        return
    if settings.public_url.startswith("https://"):
        return
    raise ConfigError(
        f"refusing to serve the bridge on {settings.host} over plain HTTP: give --tls-cert "
        "and --tls-key, or --public-url https://… when a TLS proxy is in front"
    )


class Bridge:
    """The bridge's parts, shared by the request handlers."""

    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        self.state = BridgeState(settings.index_url)
        self.signer = UrlSigner(settings.blob_url)
        self.directory_key = self.state.directory_key()
        self.publisher: DirectoryPublisher | None = None

    async def changed(self) -> None:
        """Publish now what a request changed (the poll would, within a second)."""
        if self.publisher is not None:
            try:
                await self.publisher.sync()
            except Exception as exc:  # the poll retries; the change is in the database
                log.warning("directory not published yet: %s", exc)


def create_bridge_app(bridge: Bridge) -> Starlette:
    """The Starlette app; its lifespan connects NATS and runs the directory publisher."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        nc = await connect(bridge.settings.nats_url, "isthmus-bridge")
        stop = asyncio.Event()
        bridge.publisher = DirectoryPublisher(nc, bridge.state.entries, bridge.directory_key)
        await bridge.changed()  # the directory at start (else the poll will)
        task = asyncio.create_task(
            bridge.publisher.run(stop, bridge.settings.poll, bridge.settings.reconcile)
        )
        try:
            yield
        finally:
            stop.set()
            await task
            await nc.close()
            bridge.state.close()

    def handler(
        func: Callable[[Bridge, Request], Awaitable[Any]],
    ) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                return JSONResponse(await func(bridge, request))
            except Refused as exc:
                return JSONResponse({"error": exc.message, **exc.detail}, exc.status)
            except Exception as exc:  # the database or the store failed: say so, briefly
                log.exception("bridge request %s %s failed", request.method, request.url.path)
                return JSONResponse({"error": f"bridge failure: {type(exc).__name__}"}, 503)

        return endpoint

    routes = [
        Route("/api/relay/enrol", handler(enrol), methods=["POST"]),
        Route("/api/relay/exports", handler(put_exports), methods=["PUT"]),
        Route("/api/relay/directory", handler(directory), methods=["GET"]),
        Route("/api/relay/urls", handler(urls), methods=["POST"]),
        Route("/api/relay/transfers/{transfer}", handler(delete_transfer), methods=["DELETE"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


# ------------------------------------------------------------------- handlers
async def enrol(bridge: Bridge, request: Request) -> dict[str, Any]:
    """A site's first contact: its keys against its one-time secret, the request signed
    with the Ed25519 key being registered (proof that the site holds it)."""
    body = await read_body(request)
    doc = _json_object(body)
    site, secret = doc.get("site"), doc.get("secret")
    if not isinstance(site, str) or not isinstance(secret, str):
        raise Refused(400, "enrolment needs {site, secret, keys}")
    keys = parse_keys(doc.get("keys"))
    if request.headers.get(SITE_HEADER) != site:
        raise Refused(403, f"the enrolment request is not signed as {site!r}")
    _check_signature(request, body, keys)
    account = await run_in_threadpool(bridge.state.enrol, site, secret, keys)
    log.info("site %s enrolled (fingerprint %s)", site, keys.fingerprint)
    await bridge.changed()
    return {
        "site": account.name,
        "nats": bridge.settings.public_nats,
        "fingerprint": keys.fingerprint,
        "bridge_key": public_bytes(bridge.directory_key).hex(),
    }


async def put_exports(bridge: Bridge, request: Request) -> dict[str, Any]:
    site, body = await authenticate(bridge, request)
    docs = _json_object(body).get("exports")
    done = await run_in_threadpool(bridge.state.set_exports, site, docs)
    log.info("site %s exports %s", site, [e.aet for e in done])
    await bridge.changed()
    return {"exports": [e.to_json() for e in done]}


async def directory(bridge: Bridge, _request: Request) -> dict[str, Any]:
    entries = await run_in_threadpool(bridge.state.entries)
    key = bridge.directory_key
    return {"sites": [sign_entry(key, entries[name].to_json()) for name in sorted(entries)]}


async def urls(bridge: Bridge, request: Request) -> dict[str, Any]:
    site, body = await authenticate(bridge, request)
    doc = _json_object(body)
    transfer = doc.get("transfer")
    # checks the request (400) and the asker's part in the transfer (403), signs locally
    signed = bridge.signer.sign(site, transfer, doc.get("names"), str(doc.get("method")))  # type: ignore[arg-type]
    await _check_parties(bridge, transfer)  # then: no URL while either site is revoked
    return {"urls": signed, "expires": bridge.signer.lifetime}


async def delete_transfer(bridge: Bridge, request: Request) -> dict[str, Any]:
    site, _body = await authenticate(bridge, request)
    transfer = request.path_params["transfer"]
    try:
        count = await run_in_threadpool(bridge.signer.delete_transfer, site, transfer)
    except BaseError as exc:
        raise Refused(503, f"the object store failed: {str(exc).splitlines()[0][:200]}") from None
    return {"deleted": count}


# --------------------------------------------------------------------- checks
async def authenticate(bridge: Bridge, request: Request) -> tuple[str, bytes]:
    """The enrolled, unrevoked site that signed this request, and the body it signed."""
    body = await read_body(request)
    site = request.headers.get(SITE_HEADER, "")
    account = await run_in_threadpool(bridge.state.account, site) if site else None
    if account is None or account.keys is None:
        raise Refused(403, f"site {site!r} is not enrolled")
    if account.revoked:
        raise Refused(403, f"site {site!r} is revoked")
    _check_signature(request, body, account.keys)
    return site, body


def _check_signature(request: Request, body: bytes, keys: Any) -> None:
    when = request.headers.get(TIME_HEADER, "")
    if not fresh(when):
        raise Refused(403, "request time is more than 300 s from the bridge's clock")
    message = request_message(request.method, request.url.path, when, body)
    if not verify_signature(keys, message, request.headers.get(SIGNATURE_HEADER, "")):
        raise Refused(403, "bad request signature")


async def _check_parties(bridge: Bridge, transfer: Any) -> None:
    """Both sites of a transfer are enrolled and not revoked (a revoked site's
    transfers stop: its peer gets no more URLs for them either)."""
    try:
        tid = TransferId.parse(transfer)
    except BadName as exc:
        raise Refused(400, str(exc)) from None
    for name in (tid.source, tid.destination):
        account = await run_in_threadpool(bridge.state.account, name)
        if account is None or not account.enrolled:
            raise Refused(403, f"site {name!r} of transfer {transfer} is not enrolled")
        if account.revoked:
            raise Refused(403, f"site {name!r} of transfer {transfer} is revoked")


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, refused (413) past `limit` bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        raise Refused(400, "request body is not JSON") from None
    if not isinstance(doc, dict):
        raise Refused(400, "request body must be a JSON object")
    return doc


# --------------------------------------------------------------------- server
class BridgeServer:
    """The bridge on uvicorn, in a thread (`start`/`stop`) or in the foreground (`run`)."""

    def __init__(self, settings: BridgeSettings) -> None:
        check_transport(settings)
        self.bridge = Bridge(settings)
        config = uvicorn.Config(
            create_bridge_app(self.bridge),
            host=settings.host,
            port=settings.http_port,
            log_level="warning",
            lifespan="on",
            timeout_keep_alive=30,
            ssl_certfile=settings.tls_cert or None,
            ssl_keyfile=settings.tls_key or None,
            ssl_ciphers=BCP195_CIPHERS,  # TLS 1.2's, as Isthmus's HTTPS (server.http_config)
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def run(self) -> bool:
        """Serve in the foreground until SIGINT/SIGTERM; False if it could not start."""
        self.server.run()
        return bool(self.server.started)

    def start(self, timeout: float = 30.0) -> BridgeServer:
        self._thread = threading.Thread(target=self.server.run, name="isthmus-bridge", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            self.stop()
            raise RuntimeError(f"the bridge could not start on port {self.port}")
        return self

    @property
    def port(self) -> int:
        if self.server.servers:
            port: int = self.server.servers[0].sockets[0].getsockname()[1]
            return port
        return self.bridge.settings.http_port

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
