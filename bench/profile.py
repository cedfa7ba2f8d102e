"""Sampling profiles of the Isthmus server with py-spy (optional: `pip install py-spy`).

`Recorder` attaches to a running server for the duration of a `with` block and
writes the collapsed stacks (`.txt`, one sampler only, to disturb the server
little; `flamegraph.pl` or speedscope.app draw them); `summary()`
reads the stacks back and names where the time went: the functions with the most
samples on top of the stack (self) and anywhere on it (inclusive), per thread.
"""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class Recorder:
    def __init__(self, pid: int, stem: Path, rate: int = 250, gil: bool = False) -> None:
        """`gil`: sample only the thread holding the interpreter lock (py-spy --gil), so
        that shares are of the CPU the interpreter spends, not of threads waiting."""
        self.pid, self.stem, self.rate, self.gil = pid, stem, rate, gil
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Recorder:
        exe = py_spy()
        if exe is None:
            print("py-spy not installed: no profile (pip install py-spy)", file=sys.stderr)
            return self
        self.procs.append(
            subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(self.pid),
                    "--rate",
                    str(self.rate),
                    "--threads",
                    "--format",
                    "raw",
                    "--output",
                    str(self.stem.with_suffix(".txt")),
                    "--nonblocking",
                    *(["--gil"] if self.gil else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        import time

        time.sleep(1.0)  # py-spy needs a moment to attach
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def summary(self, top: int = 15) -> dict[str, Any]:
        path = self.stem.with_suffix(".txt")
        if not path.exists():
            return {}
        return summarize(path.read_text(), top)


def summarize(collapsed: str, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[_thread(frames[0])] += n
        own[_short(frames[-1])] += n
        for frame in set(_short(f) for f in frames[1:]):
            inclusive[frame] += n

    def share(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100.0 * v / total, 1)) for k, v in counter.most_common(top)]

    return {
        "samples": total,
        "threads_pct": share(threads),
        "self_pct": share(own),
        "inclusive_pct": share(inclusive),
    }


def _thread(frame: str) -> str:
    """'thread (4460): Thread-12 (process_request_thread)' → 'Thread-N (process_request_thread)'."""
    name = re.sub(r"^thread \(\d+\): ", "", frame)
    return re.sub(r"\d+", "N", name)


def _short(frame: str) -> str:
    """'handle (pynetdicom/dul.py:123)' → 'handle (pynetdicom/dul.py)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = where.split("/")
    return f"{name} ({'/'.join(parts[-2:])})" if where else name


@contextmanager
def maybe_record(enabled: bool, server: Any, stem: Path, into: dict[str, Any]) -> Iterator[None]:
    """Record `server` with py-spy during the block if `enabled` and it is Isthmus.

    The summary lands in `into["profile"]`; the collapsed stacks in `stem`.txt.
    """
    if not enabled or getattr(server, "name", "") != "isthmus" or server.proc is None:
        yield
        return
    with Recorder(server.proc.pid, stem) as rec:
        yield
    into["profile"] = rec.summary()
