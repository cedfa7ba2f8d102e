"""Group commit: one thread applies index writes in batches.

Callers from many associations submit a job and wait; the writer drains whatever is
queued, applies all of it in one transaction and commits once, then wakes every
caller.  Nobody is answered before the commit that holds their row is durable.  A
batch that fails is retried job by job so one bad job cannot fail its neighbours.
It also serializes writers, which SQLite needs anyway.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection, Engine

Job = Callable[[Connection], Any]
MAX_BATCH = 512


class _Pending:
    __slots__ = ("job", "done", "result", "error")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def wait(self) -> Any:
        """Block until committed; return the job's result or raise its error."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommitWriter:
    """Runs write jobs on one thread, committing batches of them together."""

    def __init__(self, engine: Engine, on_failure: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.on_failure = on_failure
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="isthmus-index-writer", daemon=True)
        self._closed = False
        self._thread.start()

    def run(self, job: Job) -> Any:
        """Apply `job(conn)` in a committed transaction and return its result."""
        return self.submit(job).wait()

    def submit(self, job: Job) -> _Pending:
        """Queue `job`; the caller may work meanwhile and then `wait()` for its commit."""
        if self._closed:
            raise RuntimeError("index writer is closed")
        pending = _Pending(job)
        self._queue.put(pending)
        return pending

    def depth(self) -> int:
        """Jobs waiting for the writer thread (approximate; for the metrics)."""
        return self._queue.qsize()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._apply(batch)
            if stop:
                return

    def _apply(self, batch: list[_Pending]) -> None:
        try:
            with self.engine.begin() as conn:
                results = [p.job(conn) for p in batch]
            for p, result in zip(batch, results, strict=True):
                p.result = result
        except BaseException:
            if self.on_failure is not None:
                self.on_failure()
            for p in batch:
                try:
                    with self.engine.begin() as conn:
                        p.result = p.job(conn)
                except BaseException as exc:  # reported to the caller that submitted it
                    p.error = exc
                    if self.on_failure is not None:
                        self.on_failure()  # caches may hold keys of rolled-back rows
        for p in batch:
            p.done.set()
