"""`isthmus serve`: one archive, its DIMSE port and its HTTP port, started together."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn

from isthmus import collector
from isthmus.archive import Archive, Forwarding, JobWorker, RetryPolicy, parse_rules, retention_kind
from isthmus.archive.events import EventBus
from isthmus.audit import AuditTrail
from isthmus.config import ConfigError, Settings
from isthmus.dimse.forward import SEND_KINDS, store_kind
from isthmus.dimse.scp import start_scp
from isthmus.metrics import Metrics
from isthmus.node.access import AccessControl
from isthmus.node.contacts import Contacts
from isthmus.node.router import AssociationRouter
from isthmus.node.tls import BCP195_CIPHERS, server_context
from isthmus.web.app import create_app
from isthmus.web.context import WebContext
from isthmus.web.limits import Contained, http_server_options

if TYPE_CHECKING:
    from isthmus.relay.site import RelaySite

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


def http_config(ctx: WebContext, app: Any = None, own: bool = False) -> uvicorn.Config:
    """The HTTP server: HTTPS (and so wss:// for the gateway) when a certificate is set.

    HTTPS has the DICOM TLS port's profile (RFC 9325, BCP 195; docs/security.md, "TLS"):
    TLS 1.2 or later (Python's floor for a server context since 3.10) and for TLS 1.2
    only `BCP195_CIPHERS`, ECDHE/DHE with AEAD ciphers; uvicorn's own cipher list let
    CBC suites (ECDHE-RSA-AES128-SHA256, …) through.

    permessage-deflate is off: compressing pixel data made the gateway 20× slower
    (docs/performance.md).  The connection-level limits (docs/security.md, "Limits")
    come from `isthmus.web.limits`.  Requests are parsed by httptools (llhttp) and the
    event loop is uvloop's where it is installed (uvicorn's "auto"): a small request
    costs a third less than on h11 and asyncio's loop (docs/performance.md).

    `own`: a worker's own port (workers.py), on loopback for its siblings: plain HTTP,
    serving `app` (the worker's, whose lifespan the shared port's server runs).
    """
    settings = ctx.settings
    tls = settings.tls_cert and not own
    return uvicorn.Config(
        app or Contained(create_app(ctx)),
        host=settings.host,
        port=settings.http_port,
        log_level="warning",
        lifespan="off" if own else "on",
        loop="auto",
        ws_max_size=64 * 1024 * 1024,
        ws_per_message_deflate=False,
        **http_server_options(settings),
        ssl_certfile=settings.tls_cert if tls else None,  # both or neither (config.load)
        ssl_keyfile=settings.tls_key if tls else None,
        ssl_ciphers=BCP195_CIPHERS,  # TLS 1.2's; TLS 1.3's suites are all AEAD
    )


@dataclass
class Listening:
    """The sockets of a worker process, bound by its supervisor (workers.py): the ports
    the workers share, and the two that reach this worker alone."""

    dicom: socket.socket | None  # the plain DICOM port (None: TLS only)
    dicom_tls: socket.socket | None
    http: socket.socket
    own_dicom: socket.socket | None  # where browser AE titles registered here are routed
    own_http: socket.socket  # plain HTTP on loopback, for the other workers


class Node:
    """An archive with its doors; start() returns once both ports listen.

    A worker process (workers.py) passes its `events` bus and its `listening` sockets;
    only the `primary` one tells UPS subscribers that the node restarted."""

    def __init__(
        self,
        settings: Settings,
        events: EventBus | None = None,
        listening: Listening | None = None,
        primary: bool = True,
    ) -> None:
        check_security(settings)
        self.settings = settings
        self.listening = listening
        self.primary = primary
        self.archive = Archive.from_settings(settings, events)
        # Subscribers of the archive's events: the audit trail and the metrics.
        self.audit = AuditTrail.from_settings(self.archive, settings)
        self.metrics = Metrics(self.archive, self._open_associations)
        self.access = AccessControl(settings)
        self.router: AssociationRouter | None = None  # the plain port, else the TLS one
        self.tls_router: AssociationRouter | None = None
        self.own_router: AssociationRouter | None = None  # a worker's own DICOM port
        self.contacts = Contacts(self.archive.events)
        self.relay: RelaySite | None = None
        self.forwarding, self.worker = _jobs(self.archive, settings, self.access)
        self._http: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None
        self._web: WebContext | None = None

    def start(self, http: bool = True, block: bool = False) -> None:
        if self.settings.check_on_start:
            report = self.archive.check(repair=True)
            if report["partial"] or report["orphans"] or report["missing"]:
                log.warning("archive check repaired: %s", report)
        self._start_dicom()
        self._start_relay()
        self._tell_application("started")
        if self.primary:  # UPS subscribers (PS3.4 CC.2.4.2)
            self.archive.workitems.report_scp_status("RESTARTED")
        self.forwarding.start()
        self.worker.start()
        if not http:
            return
        self._web = ctx = self.web_context()
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

    def _start_dicom(self) -> None:
        """The plain DICOM port, the TLS one (docs/security.md, "DICOM TLS"), or both."""
        settings, bound = self.settings, self.listening
        tls = server_context(settings) if settings.dicom_tls_cert else None
        plain = (
            None
            if settings.dicom_tls_only
            else start_scp(
                self.archive, settings, self.access, listening=bound.dicom if bound else None
            )
        )
        try:
            if tls is not None:
                self.tls_router = start_scp(
                    self.archive,
                    settings,
                    self.access,
                    tls,
                    beside=plain,
                    listening=bound.dicom_tls if bound else None,
                )
            if plain is not None and bound is not None and bound.own_dicom is not None:
                self.own_router = start_scp(
                    self.archive, settings, self.access, beside=plain, listening=bound.own_dicom
                )
        except BaseException:
            if plain is not None:
                plain.shutdown()
                plain.server_close()
            raise
        self.router = plain or self.tls_router

    def _start_relay(self) -> None:
        """Join the federation (docs/relay.md) once the DICOM port listens: the relay
        routes remote AE titles on the plain port."""
        if not self.settings.relay:
            return
        if self.plain_router is None:
            raise ConfigError("the relay routes remote AE titles on the plain DICOM port")
        from isthmus.relay.site import RelaySite

        self.relay = RelaySite(self.settings, self.archive, self.plain_router, self.access)
        self.relay.start()
        from isthmus.p2p.federation import join

        join(self.relay)  # p2p sharing rides the relay (docs/p2p.md, "Discovery")

    def web_context(self) -> WebContext:
        """What the HTTP door serves: this node's archive, DICOM port, metrics, audit log."""
        ctx = WebContext(
            self.settings, self.archive, self.plain_router, self.access, contacts=self.contacts
        )
        ctx.dicom_home = self.own_router
        ctx.metrics = self.metrics
        ctx.audit_log = self.audit.log.path
        ctx.relay = self.relay
        return ctx

    def _open_associations(self) -> int:
        own = getattr(self.router, "own", None)
        return int(getattr(own, "associations", 0))

    def _tell_application(self, state: str) -> None:
        """Application Activity (PS3.15 A.5.3.1): started or stopped."""
        self.archive.activity.audit(
            "application", door="node", local=self.settings.aet, detail={"state": state}
        )

    @property
    def dicom_port(self) -> int:
        return int(self.router.server_address[1]) if self.router else self.settings.dicom_port

    @property
    def plain_router(self) -> AssociationRouter | None:
        """The plain DICOM port, where other doors register routes (None: TLS only)."""
        return None if self.router is self.tls_router else self.router

    @property
    def dicom_tls_port(self) -> int | None:
        """The TLS DICOM port, or None when there is none."""
        return int(self.tls_router.server_address[1]) if self.tls_router else None

    @property
    def http_port(self) -> int:
        if self._http and self._http.servers:
            port: int = self._http.servers[0].sockets[0].getsockname()[1]
            return port
        return self.settings.http_port

    def stop(self) -> None:
        if self.primary and (self._http is not None or self.router is not None):
            self.archive.workitems.report_scp_status("GOING DOWN")  # while channels are open
        if self._http is not None:
            if self._web is not None:  # open UPS channels hand "GOING DOWN" over first
                self._web.ups_channels.drain(self.archive.workitems, timeout=2.0)
            self._http.should_exit = True
            if self._http_thread is not None:
                self._http_thread.join(timeout=10)
            self._http = None
        routers = (self.router, self.tls_router, self.own_router)
        for router in {id(r): r for r in routers if r}.values():
            router.shutdown()
            router.server_close()
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        if self.router is not None:
            self._tell_application("stopped")
        self.router = self.tls_router = self.own_router = None
        self.metrics.close()
        self.audit.close()
        self.forwarding.stop()
        self.worker.stop()
        self.contacts.close()
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


class _Terminated(Exception):
    """SIGTERM (a service manager's stop) arrived while serving."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def run_forever(settings: Settings) -> None:
    """Serve until interrupted (Ctrl+C) or terminated (SIGTERM), printing where
    everything is; either way the node stops in order: the Application Activity
    "stopped" audit message (PS3.15 A.5.3.1), UPS subscribers told GOING DOWN, the
    blob store's spare files removed.

    uvicorn catches SIGTERM while it serves, shuts its server down, and then raises the
    signal again to the handler that was there before it: the default one ended the
    process before the node could stop, so `_on_sigterm` is that handler.  Once the
    node has stopped, the signal is raised once more with its own handler, so that the
    process still ends by SIGTERM, as a service manager expects."""
    node = Node(settings)
    node.start(http=False)
    relay = node.relay.status() if node.relay is not None else None
    print_where(settings, node.dicom_port, node.dicom_tls_port, settings.http_port, relay)
    config = http_config(node.web_context())
    server = uvicorn.Server(config)
    collector.settle()
    terminated = False
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        # uvloop when installed (uvicorn's "auto" loop), as uvicorn.Server.run would
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(server.serve())
    except KeyboardInterrupt:
        pass
    except _Terminated:
        terminated = True
    finally:
        node.stop()
        signal.signal(signal.SIGTERM, previous)
    if terminated:
        signal.raise_signal(signal.SIGTERM)


def print_where(
    settings: Settings,
    dicom_port: int,
    dicom_tls_port: int | None,
    http_port: int,
    relay: dict[str, Any] | None = None,
    workers: Sequence[str] = (),
) -> None:
    """Where everything is, for the person who started the node (`workers`: a line
    about each worker process, workers.py)."""
    print(
        f"Isthmus archive in {settings.data.resolve()}  (index: {_safe_url(settings.resolved_index_url)})"
    )
    if workers:
        print(f"  Workers:       {len(workers)} processes on the ports below, and each on its own:")
        for line in workers:
            print(f"                 {line}")
    if not settings.dicom_tls_only:
        print(f"  DICOM (DIMSE): AE title {settings.aet} on {settings.host}:{dicom_port}")
    if dicom_tls_port is not None:
        print(f"  DICOM TLS:     AE title {settings.aet} on {settings.host}:{dicom_tls_port}")
    base = f"{'https' if settings.tls_cert else 'http'}://{_host(settings.host)}:{http_port}"
    print(f"  HTTP:          {base}/")
    print(f"  DICOMweb:      {base}/dicom-web")
    print(f"  Viewer:        {base}/  (worklist: {base}/?view=worklist)")
    print(f"  Admin page:    {base}/admin.html")
    print(f"  Health:        {base}/healthz, {base}/readyz; metrics: {base}/metrics")
    if relay is not None:
        print(f"  Relay:         site {relay['site']}, fingerprint {relay['fingerprint']}")
        print(f"                 federation status: {base}/api/admin/relay")
    print("Press Ctrl+C to stop.", flush=True)


def _jobs(
    archive: Archive, settings: Settings, access: AccessControl
) -> tuple[Forwarding, JobWorker]:
    """The forwarding rules and the job worker (docs/operations.md, "Forwarding and jobs"):
    scheduling is the core's, the sending the DIMSE door's kind."""
    archive.jobs.policy = RetryPolicy(
        base=settings.job_retry_base,
        max_attempts=settings.job_retry_max_attempts,
        max_time=settings.job_retry_max_time,
    )
    rules = parse_rules(settings.forward, [p.aet for p in settings.peers])
    forwarding = Forwarding(archive, rules, settings.retention_interval)
    send = store_kind(archive, settings, access)
    kinds = {kind: send for kind in SEND_KINDS} | {"retention": retention_kind(archive)}
    worker = JobWorker(
        archive.jobs,
        kinds,
        threads=settings.job_threads,
        lease=settings.job_lease,
        keep_days=settings.job_keep_days,
    )
    return forwarding, worker


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _safe_url(url: str) -> str:
    """An index URL without its password, for printing."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url
