"""The job worker: threads of `isthmus serve` that claim and run due jobs (jobs.py).

Each thread claims one due job of the registered kinds at a time, runs its kind's
`run`, and ends it the way `run` ended: returned (the final status from the items),
`Retry` (back to the queue with backoff), `Fail`, or `Stopped` (the worker stops: the
job goes back untouched).  Once an hour one thread purges old finished jobs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping

from isthmus.archive.jobs import Fail, JobKind, Jobs, Retry, RunningJob, Stopped

log = logging.getLogger(__name__)


class JobWorker:
    """Threads that claim and run due jobs of the registered kinds (`isthmus serve`)."""

    def __init__(
        self,
        jobs: Jobs,
        kinds: Mapping[str, JobKind] | None = None,
        threads: int = 2,
        lease: float = 60.0,
        poll: float = 1.0,
        keep_days: float = 30.0,
    ) -> None:
        self.jobs = jobs
        self.keep_days = keep_days  # finished jobs are purged after this (Jobs.purge)
        self._next_purge = time.monotonic() + 60.0
        self.kinds: dict[str, JobKind] = dict(kinds or {})
        self.threads = threads
        self.lease = lease
        self.poll = poll
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[int, RunningJob] = {}
        self._lock = threading.Lock()

    def start(self) -> JobWorker:
        for n in range(self.threads):
            thread = threading.Thread(target=self._loop, name=f"isthmus-jobs-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; running jobs go back to the queue at their next item."""
        self._stop.set()
        self.jobs.wakeup.set()
        with self._lock:
            for job in self._running.values():
                job.stopping.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._purge_now_and_then()
                ran = self.run_one()
            except Exception:
                log.exception("jobs: worker error")
                ran = False
            if not ran:
                self.jobs.wakeup.wait(self.poll)
                self.jobs.wakeup.clear()

    def _purge_now_and_then(self) -> None:
        with self._lock:
            if time.monotonic() < self._next_purge:
                return
            self._next_purge = time.monotonic() + 3600.0
        purged = self.jobs.purge(self.keep_days)
        if purged:
            log.info("jobs: %d finished jobs older than %g days purged", purged, self.keep_days)

    def run_one(self) -> bool:
        """Claim and run one job; False when none was due."""
        job = self.jobs.claim(self.owner, list(self.kinds), self.lease)
        if job is None:
            return False
        with self._lock:
            self._running[job.id] = job
        try:
            self._run(job)
        finally:
            with self._lock:
                self._running.pop(job.id, None)
        return True

    def _run(self, job: RunningJob) -> None:
        try:
            if self._stop.is_set():
                raise Stopped()
            self.kinds[job.kind](job)
        except Stopped:
            self.jobs.release(job)
            return
        except Retry as exc:
            state = self.jobs.retry_later(job, str(exc))
            log.info("job %d (%s): %s, %s", job.id, job.kind, exc, state)
            return
        except Fail as exc:
            self.jobs.fail(job, str(exc))
            log.warning("job %d (%s) failed: %s", job.id, job.kind, exc)
            return
        except Exception as exc:
            log.exception("job %d (%s) raised", job.id, job.kind)
            self.jobs.retry_later(job, f"internal error: {exc}")
            return
        status = self.jobs.finish(job)
        log.info("job %d (%s %s): %s", job.id, job.kind, job.label, status)
