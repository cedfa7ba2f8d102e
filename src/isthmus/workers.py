"""`isthmus serve --workers N`: N worker processes serving one archive on the same ports.

A Python process runs Python code on one core at a time (its interpreter lock), and
receiving an instance is CPU work - parsing, indexing, answering - so one process
cannot use a second core (docs/performance.md, "Issue 10's rows").  The process the
user starts becomes a supervisor: it opens the archive once (migrations, the start-up
check), binds the DICOM and HTTP ports, and starts N workers ("spawn": fresh
interpreters that inherit nothing but the sockets).  Every worker accepts on the same
listening sockets, as nginx's and uvicorn's workers do, and the kernel hands each new
connection to one of them.  A worker is a whole node on the one index and blob store:
the several-processes design of docs/scaling.md, on one machine.  Besides the shared
ports each worker has a DICOM port and a loopback HTTP port of its own, on which the
other workers reach it (a browser's AE title lives on the worker it registered with).

Events cross workers through PostgreSQL when the index is there, otherwise through the
supervisor (archive/events_workers.py), which also learns from each control socket
that its worker is ready, or gone.  A worker that dies is started again (what it had
acknowledged is durable, docs/architecture.md "Ingest"; its unfinished stores leave
nothing the archive's check does not remove); Ctrl+C or SIGTERM stops them all.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import selectors
import signal
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from multiprocessing.context import SpawnProcess
from typing import Any

from isthmus import collector
from isthmus.archive import Archive
from isthmus.archive.events_workers import EVENT, MAX_EVENT, READY, EventRelay, WorkerEventBus
from isthmus.config import ConfigError, Settings

log = logging.getLogger(__name__)

READY_TIMEOUT = 120.0  # seconds for a worker to open the archive and listen
STOP_TIMEOUT = 20.0  # seconds for a worker to finish its associations and requests
QUICK_DEATH = 10.0  # a worker that dies sooner than this after starting...
MAX_QUICK_DEATHS = 5  # ...this many times in a row stops the node: it cannot start
BACKLOG = 1024


def worker_count(settings: Settings) -> int:
    """How many workers `settings` asks for (0: one per core)."""
    return settings.workers or (os.cpu_count() or 1)


@dataclass
class WorkerPlan:
    """What one worker is given: its number, the sockets, how to reach its siblings."""

    number: int
    workers: int
    dicom: socket.socket | None
    dicom_tls: socket.socket | None
    http: socket.socket
    own_dicom: socket.socket | None
    own_http: socket.socket
    control: socket.socket | None = None
    siblings: dict[str, str] = field(default_factory=dict)  # name → own HTTP base URL
    restarted: bool = False  # started again after it died: it checks the archive


def serve_workers(settings: Settings) -> int:
    """Supervise `worker_count(settings)` workers until interrupted; the exit status."""
    from isthmus.server import check_security, print_where

    check_security(settings)
    if settings.relay:
        raise ConfigError("the relay runs in one process: serve a federated site with --workers 1")
    count = worker_count(settings)
    _prepare(settings)
    plans = _bind(settings, count)
    supervisor = Supervisor(settings, plans)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    try:
        supervisor.start()
        first = plans[0]
        tls_port = first.dicom_tls.getsockname()[1] if first.dicom_tls else None
        dicom_port = first.dicom.getsockname()[1] if first.dicom else settings.dicom_port
        own = [_own_ports(plan) for plan in plans]
        print_where(settings, dicom_port, tls_port, first.http.getsockname()[1], workers=own)
        return supervisor.run()
    finally:
        supervisor.stop()


def _prepare(settings: Settings) -> None:
    """Open the archive once before any worker does: its migrations, the start-up check
    (no worker stores anything yet, so every leftover is a crash's and is repaired)."""
    archive = Archive.from_settings(settings)
    try:
        if settings.check_on_start:
            report = archive.check(repair=True)
            if report["partial"] or report["orphans"] or report["missing"]:
                log.warning("archive check repaired: %s", report)
    finally:
        archive.close()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.setblocking(False)  # a worker woken for a connection another one took goes on
    return sock


def _bind(settings: Settings, count: int) -> list[WorkerPlan]:
    """The shared ports and each worker's own (any free port), bound here once: a
    restarted worker gets the same ones, so other workers' routes to it stay right."""
    host = settings.host
    dicom = None if settings.dicom_tls_only else _listen(host, settings.dicom_port)
    dicom_tls = _listen(host, settings.dicom_tls_port) if settings.dicom_tls_cert else None
    http = _listen(host, settings.http_port)
    plans = [
        WorkerPlan(
            number,
            count,
            dicom,
            dicom_tls,
            http,
            _listen(host, 0) if dicom is not None else None,
            _listen("127.0.0.1", 0),
        )
        for number in range(count)
    ]
    urls = {_name(p.number): f"http://127.0.0.1:{p.own_http.getsockname()[1]}" for p in plans}
    for plan in plans:
        plan.siblings = {name: url for name, url in urls.items() if name != _name(plan.number)}
    return plans


def _own_ports(plan: WorkerPlan) -> str:
    """Where one worker alone is reached (its siblings use these; so may an operator)."""
    http = plan.own_http.getsockname()
    dicom = f"DICOM port {plan.own_dicom.getsockname()[1]}, " if plan.own_dicom else ""
    return f"{_name(plan.number)}: {dicom}HTTP http://{http[0]}:{http[1]}/"


def _name(number: int) -> str:
    return f"w{number}"


class Supervisor:
    """Starts the workers, passes their events on, restarts the ones that die."""

    def __init__(self, settings: Settings, plans: list[WorkerPlan]) -> None:
        self.settings = settings
        self.plans = plans
        self.processes: dict[int, SpawnProcess] = {}
        self.started_at: dict[int, float] = {}
        self.quick_deaths = 0
        self.events = EventRelay()
        self.selector = selectors.DefaultSelector()
        self._stopping = threading.Event()
        self._wake_read, self._wake = socket.socketpair()
        self.selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._context = multiprocessing.get_context("spawn")

    def request_stop(self, _signum: int = 0, _frame: Any = None) -> None:
        """Signal handler (SIGINT, SIGTERM): stop at the loop's next turn."""
        self._stopping.set()
        try:
            self._wake.send(b"x")
        except OSError:
            pass

    def start(self) -> None:
        """Start every worker and wait until each listens (or one fails)."""
        for plan in self.plans:
            self._spawn(plan)
        waiting = set(self.processes)
        deadline = time.monotonic() + READY_TIMEOUT
        while waiting and not self._stopping.is_set():
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers {sorted(waiting)} did not start in time")
            for number, message in self._poll(1.0):
                if message == READY:
                    waiting.discard(number)
                elif not message:
                    code = self.processes[number].exitcode
                    raise RuntimeError(f"worker {number} failed to start (exit status {code})")

    def run(self) -> int:
        """Until asked to stop: events passed on, dead workers started again."""
        while not self._stopping.is_set():
            for number, message in self._poll(1.0):
                if not message and not self._stopping.is_set():
                    if not self._restart(number):
                        return 1
        return 0

    def stop(self) -> None:
        """Ask every worker to stop (SIGINT: it finishes what it serves), then wait."""
        self._stopping.set()
        for process in self.processes.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self.processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker %s did not stop in time: killed", process.name)
                process.kill()
                process.join(5)
        self.processes.clear()

    # ----------------------------------------------------------------- inside
    def _spawn(self, plan: WorkerPlan, restarted: bool = False) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for end in (ours, theirs):
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MAX_EVENT)
        process = self._context.Process(
            target=worker_main,
            args=(self.settings, replace(plan, control=theirs, restarted=restarted)),
            name=f"isthmus-{_name(plan.number)}",
            daemon=False,
        )
        process.start()
        theirs.close()
        self.processes[plan.number] = process
        self.started_at[plan.number] = time.monotonic()
        self.events.controls[plan.number] = ours
        self.selector.register(ours, selectors.EVENT_READ, plan.number)

    def _poll(self, timeout: float) -> list[tuple[int, bytes]]:
        """Control messages that arrived (b"" when a worker's socket closed); events are
        passed on to the other workers here."""
        got: list[tuple[int, bytes]] = []
        for key, _ in self.selector.select(timeout):
            if key.data is None:  # woken by request_stop
                self._wake_read.recv(64)
                continue
            number: int = key.data
            try:
                message = self.events.controls[number].recv(MAX_EVENT + 1)
            except OSError:
                message = b""
            if message.startswith(EVENT):
                self.events.relay(number, message)
                continue
            if not message:
                self._forget(number)
            got.append((number, message))
        return got

    def _forget(self, number: int) -> None:
        control = self.events.controls.pop(number)
        self.selector.unregister(control)
        control.close()
        process = self.processes[number]
        process.join(5)

    def _restart(self, number: int) -> bool:
        """Start worker `number` again; False when it keeps dying at once."""
        process = self.processes[number]
        lived = time.monotonic() - self.started_at[number]
        self.quick_deaths = self.quick_deaths + 1 if lived < QUICK_DEATH else 0
        log.warning("worker %d exited (status %s): starting it again", number, process.exitcode)
        if self.quick_deaths >= MAX_QUICK_DEATHS:
            log.error("workers keep exiting at start: stopping")
            return False
        self._spawn(self.plans[number], restarted=True)
        return True


def worker_main(settings: Settings, plan: WorkerPlan) -> None:
    """A worker process: a node on the plan's sockets until SIGINT or the supervisor
    goes away."""
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s {_name(plan.number)} %(name)s: %(message)s",
    )
    if settings.log_level != "debug":  # as the command does (cli.py)
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # each sibling's /metrics
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the node is up (then: stop)
    from isthmus.server import Listening, Node

    assert plan.control is not None
    control = plan.control
    sqlite = settings.resolved_index_url.startswith("sqlite")
    bus = WorkerEventBus(control, plan.workers - 1) if sqlite else None
    listening = Listening(plan.dicom, plan.dicom_tls, plan.http, plan.own_dicom, plan.own_http)
    # The supervisor checked the archive before the first workers started; a worker
    # started again after a crash checks it for what that crash left (its siblings'
    # stores in progress are spared: Archive.check, SHARED_GRACE).
    check = settings.check_on_start and plan.restarted
    node = Node(replace(settings, check_on_start=check), bus, listening, primary=plan.number == 0)
    stop = threading.Event()
    try:
        node.start(http=False)
        ctx = node.web_context()
        ctx.worker = _name(plan.number)
        ctx.siblings = plan.siblings
        http = WorkerHTTP(ctx, plan)
        http.start()
        collector.settle()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        watcher = threading.Thread(
            target=_watch, args=(control, bus, stop), name="isthmus-supervisor", daemon=True
        )
        watcher.start()
        control.send(READY)
        stop.wait()
        http.stop()
    finally:
        node.stop()


def _watch(control: socket.socket, bus: WorkerEventBus | None, stop: threading.Event) -> None:
    """Read what the supervisor sends: other workers' events; end of file when it is
    gone, and then this worker stops too."""
    while True:
        try:
            message = control.recv(MAX_EVENT + 1)
        except OSError:
            message = b""
        if not message:
            stop.set()
            return
        if bus is not None and message.startswith(EVENT):
            bus.received(message)


class WorkerHTTP:
    """The worker's HTTP servers, on one event loop in a thread of their own: the shared
    port and the worker's own (its siblings proxy WebSockets there)."""

    def __init__(self, ctx: Any, plan: WorkerPlan) -> None:
        import uvicorn

        from isthmus.server import http_config
        from isthmus.web.app import create_app
        from isthmus.web.limits import Contained

        app = Contained(create_app(ctx))  # one app; the shared port's server runs its lifespan
        shared = http_config(ctx, app)
        own = http_config(ctx, app, own=True)
        self.servers = [uvicorn.Server(shared), uvicorn.Server(own)]
        self.sockets = [plan.http, plan.own_http]
        self.loop_factory = shared.get_loop_factory()
        self.thread = threading.Thread(target=self._run, name="isthmus-http", daemon=True)
        self.failed: BaseException | None = None

    def start(self) -> None:
        self.thread.start()
        while not all(s.started for s in self.servers) and self.thread.is_alive():
            time.sleep(0.02)
        if not self.thread.is_alive():
            raise RuntimeError(f"the HTTP server did not start: {self.failed}")

    def stop(self) -> None:
        for server in self.servers:
            server.should_exit = True
        self.thread.join(STOP_TIMEOUT)

    def _run(self) -> None:
        import asyncio

        async def both() -> None:
            await asyncio.gather(
                *(
                    s.serve(sockets=[sock])
                    for s, sock in zip(self.servers, self.sockets, strict=True)
                )
            )

        try:
            with asyncio.Runner(loop_factory=self.loop_factory) as runner:
                runner.run(both())
        except BaseException as exc:  # reported by start()
            self.failed = exc
