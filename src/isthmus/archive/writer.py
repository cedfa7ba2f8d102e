"""Group commit: one thread applies index writes in batches.

Callers from many associations submit a job and wait; the writer drains whatever is
queued, applies all of it in one transaction and commits once, then wakes every
caller.  Nobody is answered before the commit that holds their row is durable.  A
batch that fails is retried job by job so one bad job cannot fail its neighbours.
It also serializes writers, which SQLite needs anyway; with `lock_path` (SQLite, where
several worker processes may write one index: workers.py) it takes an exclusive
`flock` on that file around each transaction.  SQLite's own wait for its write lock
polls, sleeping up to 100 ms between tries, so two processes' writers taking turns
through it spent most of their time asleep; a blocked `flock` wakes as the other
process releases it.  The writer keeps its
connection from one batch to the next while busy, and callers wait on a plain lock:
with small batches (a few associations storing small instances) a pool checkout and
an Event per job cost more than the batch's statements.

The lock file also carries a generation number (its first 8 bytes) for what the
writers cache about the index: a job that makes such caches stale - it deletes rows
whose primary keys are cached, which SQLite gives again to the next row inserted (it
reuses the largest rowid) - calls `changed()`, and every other writer on the file sees
the new number as it next takes the lock and calls `on_stale` before its transaction.
An event says so too (archive.py, PARENTS_CHANGED), but it arrives a little later, or
not at all when a worker's control socket is full; a stale key that now names another
row would file an instance under another study's series.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy.engine import Connection, Engine

Job = Callable[[Connection], Any]
MAX_BATCH = 512


# A connection idle for longer than this is given back to the pool before the next
# batch, whose checkout then tests it (connections.PING_AFTER): a database restarted
# while the archive was quiet costs no failed batch.  Busy, the writer keeps it.
IDLE_SECONDS = 5.0


class _Pending:
    """A submitted job; its lock is held until the job's batch is committed (a plain
    lock, not an Event: released by the writer, acquired by the caller)."""

    __slots__ = ("job", "committed", "result", "error")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.committed = threading.Lock()
        self.committed.acquire()
        self.result: Any = None
        self.error: BaseException | None = None

    def wait(self) -> Any:
        """Block until committed; return the job's result or raise its error."""
        with self.committed:
            pass
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommitWriter:
    """Runs write jobs on one thread, committing batches of them together."""

    def __init__(
        self,
        engine: Engine,
        on_failure: Callable[[], None] | None = None,
        lock_path: str | os.PathLike[str] | None = None,
        on_stale: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.on_failure = on_failure
        self.on_stale = on_stale
        self._generation: int | None = None  # the lock file's, as this writer last saw it
        self._lock_fd = (
            os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            if lock_path is not None
            else None
        )
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="isthmus-index-writer", daemon=True)
        self._closed = False
        # The writer thread's connection, kept from batch to batch (a checkout from the
        # pool per batch costs more than a small batch's statements), and when it was
        # last used.
        self._conn: Connection | None = None
        self._used = 0.0
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

    def changed(self) -> None:
        """Within a job: the other writers on the lock file must drop what they cache
        (`on_stale`) before their next transaction.  Counted before this one commits, so
        a crash in between costs them a cache, never a stale key.  Nothing to do
        without a lock file (one writer, or PostgreSQL, which never reuses a key)."""
        fd = self._lock_fd
        if fd is None:
            return
        self._generation = _generation(fd) + 1
        os.pwrite(fd, self._generation.to_bytes(8, "little"), 0)

    def depth(self) -> int:
        """Jobs waiting for the writer thread (approximate; for the metrics)."""
        return self._queue.qsize()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=30)
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _run(self) -> None:
        try:
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
        finally:
            self._release()

    def _apply(self, batch: list[_Pending]) -> None:
        with self._exclusive():
            self._apply_locked(batch)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """The other processes' writers wait while this one writes (see the module's
        docstring)."""
        fd = self._lock_fd
        if fd is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            generation = _generation(fd)
            if generation != self._generation:
                self._generation = generation
                if self.on_stale is not None:
                    self.on_stale()
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _apply_locked(self, batch: list[_Pending]) -> None:
        try:
            conn = self._connection()
            with conn.begin():
                results = [p.job(conn) for p in batch]
            self._used = time.monotonic()
            for p, result in zip(batch, results, strict=True):
                p.result = result
        except BaseException:
            self._release()  # rolled back; the retries and the next batch check out anew
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
            p.committed.release()

    def _connection(self) -> Connection:
        """The writer thread's connection: kept while busy, from the pool after a pause."""
        conn = self._conn
        if conn is not None and (conn.invalidated or time.monotonic() - self._used > IDLE_SECONDS):
            self._release()
            conn = None
        if conn is None:
            conn = self._conn = self.engine.connect()
        return conn

    def _release(self) -> None:
        """Give the writer's connection back to the pool (which drops a broken one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection: the pool has discarded it
                pass


def _generation(fd: int) -> int:
    """The generation number in the lock file (0 while none was written)."""
    return int.from_bytes(os.pread(fd, 8, 0), "little")
