"""Running the programs under test: timed commands and servers that always stop.

Every command is bounded by a timeout; every server is stopped (SIGTERM, then
SIGKILL) when its context ends, even after an error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from isthmus.testing.dcmtk import dcmtk_env as dcmtk_env  # re-exported for the benchmarks
from isthmus.testing.net import free_port, wait_for_port

DCMTK_BIN = Path("/usr/bin")  # the venv's bin/ has pynetdicom apps of the same names
CLK_TCK = os.sysconf("SC_CLK_TCK")


class CommandFailed(RuntimeError):
    """A command exited non-zero or timed out; the message holds its stderr tail."""


def dcmtk(tool: str) -> str:
    return str(DCMTK_BIN / tool)


def run(
    cmd: Sequence[str],
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    capture: bool = False,
) -> tuple[float, str]:
    """Run `cmd`, return (wall seconds, stdout+stderr if captured); raise CommandFailed."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            list(cmd),
            cwd=cwd,
            env=env or dcmtk_env(),
            timeout=timeout,
            stdout=subprocess.PIPE,  # DCMTK's tools log their errors to stdout
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"{Path(cmd[0]).name} timed out after {timeout} s") from exc
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        tail = (proc.stdout or "").strip().splitlines()[-5:]
        raise CommandFailed(f"{Path(cmd[0]).name} exited {proc.returncode}: " + " | ".join(tail))
    return elapsed, (proc.stdout or "") if capture else ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` and the processes it
    started (`isthmus serve --workers N`), their threads included."""
    stats = _stats()
    family, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        family.add(parent)
        todo.extend(p for p, (ppid, _) in stats.items() if ppid == parent and p not in family)
    return sum(stats[p][1] for p in family if p in stats) / CLK_TCK


def machine_busy() -> float:
    """Core-seconds the whole machine has spent running anything so far (user, nice,
    system, interrupts; not idle, I/O wait or the hypervisor's steal), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / CLK_TCK


def _stats() -> dict[int, tuple[int, int]]:
    """Every process's (parent, user + system ticks), from /proc."""
    out: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return out


class Server:
    """A server process started in the background and stopped at the end."""

    name = "server"
    aet = ""
    dicom_port = 0
    http_port = 0

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dcmtk_env()

    def start(self, timeout: float = 60.0) -> Server:
        log = open(self.workdir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        try:
            for port in (self.dicom_port, self.http_port):
                if port:
                    wait_for_port(port, timeout=timeout)
                if self.proc.poll() is not None:
                    raise CommandFailed(
                        f"{self.name} exited {self.proc.returncode} at start; "
                        f"see {self.workdir / (self.name + '.log')}"
                    )
        except BaseException:
            self.stop()
            raise
        return self

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc else 0.0

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.proc = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StoreSCP(Server):
    """DCMTK `storescp` writing every received instance to a folder (one association)."""

    name = "storescp"
    aet = "BENCHSCP"

    def __init__(self, workdir: Path, port: int | None = None, extra: Sequence[str] = ()) -> None:
        super().__init__(workdir)
        self.dicom_port = port or free_port()
        self.extra = list(extra)
        self.output = workdir / "received"
        self.output.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            dcmtk("storescp"),
            "-aet",
            self.aet,
            "-od",
            str(self.output),
            *self.extra,
            str(self.dicom_port),
        ]

    def count(self) -> int:
        return sum(1 for p in self.output.iterdir() if p.is_file())
