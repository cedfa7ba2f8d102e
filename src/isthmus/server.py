"""`isthmus serve`: one archive, its DIMSE port and its HTTP port, started together."""

from __future__ import annotations

import asyncio
import logging
import threading
from types import TracebackType

import uvicorn

from isthmus.archive import Archive
from isthmus.config import ConfigError, Settings
from isthmus.dimse.scp import start_scp
from isthmus.node.access import AccessControl
from isthmus.node.router import AssociationRouter
from isthmus.web.app import create_app
from isthmus.web.context import WebContext
from isthmus.web.limits import Contained, http_server_options

log = logging.getLogger(__name__)


def check_security(settings: Settings) -> None:
    """Refuse to listen beyond loopback without authentication (docs/security.md)."""
    if not settings.on_loopback and not settings.tokens and not _has_oidc(settings):
        raise ConfigError(
            f"refusing to serve on {settings.host}: bound beyond loopback, Isthmus needs "
            "authentication configured (API tokens in the config file; see docs/security.md)"
        )


def _has_oidc(settings: Settings) -> bool:
    return bool(settings.oidc_issuer)


def http_config(ctx: WebContext) -> uvicorn.Config:
    """The HTTP server: HTTPS (and so wss:// for the gateway) when a certificate is set.

    permessage-deflate is off: compressing pixel data made the gateway 20× slower
    (docs/performance.md).  The connection-level limits (docs/security.md, "Limits")
    come from `isthmus.web.limits`.
    """
    settings = ctx.settings
    return uvicorn.Config(
        Contained(create_app(ctx)),
        host=settings.host,
        port=settings.http_port,
        log_level="warning",
        lifespan="on",
        ws_max_size=64 * 1024 * 1024,
        ws_per_message_deflate=False,
        **http_server_options(settings),
        ssl_certfile=settings.tls_cert or None,  # both or neither (config.load checks)
        ssl_keyfile=settings.tls_key or None,
    )


class Node:
    """An archive with its doors; start() returns once both ports listen."""

    def __init__(self, settings: Settings) -> None:
        check_security(settings)
        self.settings = settings
        self.archive = Archive.from_settings(settings)
        self.access = AccessControl(settings)
        self.router: AssociationRouter | None = None
        self._http: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None

    def start(self, http: bool = True, block: bool = False) -> None:
        if self.settings.check_on_start:
            report = self.archive.check(repair=True)
            if report["partial"] or report["orphans"] or report["missing"]:
                log.warning("archive check repaired: %s", report)
        self.router = start_scp(self.archive, self.settings, self.access)
        self.archive.workitems.report_scp_status("RESTARTED")  # UPS subscribers (PS3.4 CC.2.4.2)
        if not http:
            return
        ctx = WebContext(self.settings, self.archive, self.router, self.access)
        config = http_config(ctx)
        self._http = uvicorn.Server(config)
        if block:
            try:
                self._http.run()
            finally:
                self.stop()
            return
        self._http_thread = threading.Thread(
            target=self._http.run, name="isthmus-http", daemon=True
        )
        self._http_thread.start()
        while not self._http.started and self._http_thread.is_alive():
            threading.Event().wait(0.02)
        if not self._http.started:
            raise RuntimeError(f"HTTP server could not start on port {self.settings.http_port}")

    @property
    def dicom_port(self) -> int:
        return int(self.router.server_address[1]) if self.router else self.settings.dicom_port

    @property
    def http_port(self) -> int:
        if self._http and self._http.servers:
            port: int = self._http.servers[0].sockets[0].getsockname()[1]
            return port
        return self.settings.http_port

    def stop(self) -> None:
        if self._http is not None or self.router is not None:  # while channels are open
            self.archive.workitems.report_scp_status("GOING DOWN")
        if self._http is not None:
            self._http.should_exit = True
            if self._http_thread is not None:
                self._http_thread.join(timeout=10)
            self._http = None
        if self.router is not None:
            self.router.shutdown()
            self.router.server_close()
            self.router = None
        self.archive.close()

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def run_forever(settings: Settings) -> None:
    """Serve until interrupted, printing where everything is."""
    node = Node(settings)
    node.start(http=False)
    print(
        f"Isthmus archive in {settings.data.resolve()}  (index: {_safe_url(settings.resolved_index_url)})"
    )
    print(f"  DICOM (DIMSE): AE title {settings.aet} on {settings.host}:{node.dicom_port}")
    base = (
        f"{'https' if settings.tls_cert else 'http'}://{_host(settings.host)}:{settings.http_port}"
    )
    print(f"  HTTP:          {base}/")
    print(f"  DICOMweb:      {base}/dicom-web")
    print(f"  Viewer:        {base}/")
    print("Press Ctrl+C to stop.", flush=True)
    ctx = WebContext(settings, node.archive, node.router, node.access)
    server = uvicorn.Server(http_config(ctx))
    try:
        asyncio.run(server.serve())
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _safe_url(url: str) -> str:
    """An index URL without its password, for printing."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url
