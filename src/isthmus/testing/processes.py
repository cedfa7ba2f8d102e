"""Stopping the processes tests and benchmarks start: the way an operator would (SIGINT,
which `isthmus serve` handles as a clean shutdown), then for good when that takes too long,
or at once (SIGKILL: a crash)."""

from __future__ import annotations

import signal
import subprocess

GRACE = 30.0  # seconds a process may take to stop cleanly


def stop(proc: subprocess.Popen[bytes] | None, grace: float = GRACE) -> None:
    """SIGINT, then SIGKILL after `grace` seconds; returns once the process is gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        kill(proc)


def kill(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL (no chance to clean up, as in a crash); returns once the process is gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=GRACE)
