"""Persistent jobs in the index (SQLite and PostgreSQL): claim with a lease, take over an
abandoned job, retry with backoff up to a bound, honest final status, cancel, retry."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from io import BytesIO

from isthmus.archive import Archive, Fail, JobWorker, Retry, RetryPolicy, RunningJob
from isthmus.testing.generate import StudySpec, study


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def clocked(archive: Archive) -> Clock:
    clock = Clock()
    archive.jobs.clock = clock
    return clock


def run(archive: Archive, kind: Callable[[RunningJob], None]) -> bool:
    """Claim and run one due job of kind "test" in this thread."""
    return JobWorker(archive.jobs, {"test": kind}, threads=0).run_one()


def test_items_all_done_make_a_completed_job(archive: Archive) -> None:
    clocked(archive)
    pk = archive.jobs.enqueue("test", ["a", "b", "c"])

    def kind(job: RunningJob) -> None:
        assert sorted(job.pending()) == ["a", "b", "c"]
        for item in job.pending():
            job.done(item)

    assert run(archive, kind)
    job = archive.jobs.get(pk)
    assert job is not None
    assert job.status == "completed"
    assert job.counts == {"total": 3, "done": 3, "failed": 0, "pending": 0}
    assert job.error is None and job.finished_at is not None


def test_some_failed_items_make_a_partial_job_with_the_reasons(archive: Archive) -> None:
    clocked(archive)
    pk = archive.jobs.enqueue("test", ["a", "b", "c"])

    def kind(job: RunningJob) -> None:
        job.done("a")
        job.failed("b", "refused: 0xA700")  # "c" is never reported

    run(archive, kind)
    job = archive.jobs.get(pk)
    assert job is not None
    assert job.status == "partial"
    assert job.counts["done"] == 1 and job.counts["failed"] == 2
    assert {"item": "b", "reason": "refused: 0xA700"} in job.failures
    assert {"item": "c", "reason": "not attempted"} in job.failures
    assert job.error is not None and "0xA700" in job.error


def test_nothing_done_is_a_failed_job_and_fail_keeps_its_reason(archive: Archive) -> None:
    clocked(archive)
    first = archive.jobs.enqueue("test", ["a"])
    run(archive, lambda job: job.failed("a", "no"))
    second = archive.jobs.enqueue("test", ["a"])

    def unknown(job: RunningJob) -> None:
        raise Fail("destination 'X' is not a known peer")

    run(archive, unknown)
    one, two = archive.jobs.get(first), archive.jobs.get(second)
    assert one is not None and one.status == "failed"
    assert two is not None and two.status == "failed"
    assert two.error == "destination 'X' is not a known peer"
    assert two.counts["failed"] == 1 and two.counts["pending"] == 0


def test_retry_backs_off_exponentially_then_gives_up_with_the_reason(archive: Archive) -> None:
    clock = clocked(archive)
    archive.jobs.policy = RetryPolicy(base=10, cap=1000, max_attempts=4, max_time=10_000)
    pk = archive.jobs.enqueue("test", ["a"])

    def down(job: RunningJob) -> None:
        raise Retry("cannot connect to PACS2")

    delays = []
    for _attempt in range(3):
        assert run(archive, down)
        job = archive.jobs.get(pk)
        assert job is not None and job.status == "queued"
        assert job.error == "cannot connect to PACS2"
        delays.append((job.not_before - clock.now).total_seconds())
        assert not run(archive, down), "not due before its backoff"
        clock.advance(delays[-1])
    assert delays == [10, 20, 40]
    assert run(archive, down)
    job = archive.jobs.get(pk)
    assert job is not None and job.status == "failed" and job.attempts == 4
    assert job.error == "gave up after 4 attempts: cannot connect to PACS2"
    assert job.failures == [{"item": "a", "reason": "cannot connect to PACS2"}]


def test_retry_is_bounded_in_total_time(archive: Archive) -> None:
    clock = clocked(archive)
    archive.jobs.policy = RetryPolicy(base=100, cap=100, max_attempts=1000, max_time=250)
    pk = archive.jobs.enqueue("test", ["a"])

    def down(job: RunningJob) -> None:
        raise Retry("down")

    for _ in range(10):
        if not run(archive, down):
            clock.advance(100)
    job = archive.jobs.get(pk)
    assert job is not None and job.status == "failed"
    assert job.attempts == 4  # at 0, 100, 200 s queued again; at 300 s past the bound


def test_a_job_whose_lease_ran_out_is_taken_over_with_its_pending_items(archive: Archive) -> None:
    clock = clocked(archive)
    pk = archive.jobs.enqueue("test", ["a", "b", "c"])
    crashed = archive.jobs.claim("process-1", ["test"], lease=30)
    assert crashed is not None and crashed.id == pk
    crashed.done("a")
    crashed.flush()
    crashed.done("b")  # reported, not yet written: then process 1 dies
    assert archive.jobs.claim("process-2", ["test"], lease=30) is None, "lease still held"
    clock.advance(31)
    taken = archive.jobs.claim("process-2", ["test"], lease=30)
    assert taken is not None and taken.id == pk
    assert sorted(taken.pending()) == ["b", "c"]
    for item in taken.pending():
        taken.done(item)
    assert archive.jobs.finish(taken) == "completed"


def test_writing_reported_items_renews_the_lease(archive: Archive) -> None:
    clock = clocked(archive)
    archive.jobs.enqueue("test", ["a", "b"])
    job = archive.jobs.claim("process-1", ["test"], lease=30)
    assert job is not None
    clock.advance(25)
    job.done("a")
    job.flush()
    clock.advance(25)  # 50 s after the claim, 25 s after the report was written
    assert archive.jobs.claim("process-2", ["test"], lease=30) is None


def test_concurrent_claimers_get_each_job_once(archive: Archive) -> None:
    clocked(archive)
    pks = {archive.jobs.enqueue("test", [str(n)]) for n in range(6)}
    got: list[int] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while True:
            job = archive.jobs.claim(name, ["test"], lease=60)
            if job is None:
                if not any(j.status == "queued" for j in archive.jobs.search()):
                    return
                continue
            with lock:
                got.append(job.id)

    threads = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == sorted(pks)


def test_merge_adds_items_to_the_queued_job_and_pushes_its_start(archive: Archive) -> None:
    clock = clocked(archive)
    first = archive.jobs.enqueue("test", ["a"], label="r", subject="s1", delay=5, merge=True)
    clock.advance(3)
    again = archive.jobs.enqueue("test", ["b"], label="r", subject="s1", delay=5, merge=True)
    other = archive.jobs.enqueue("test", ["c"], label="r", subject="s2", delay=5, merge=True)
    assert again == first and other != first
    job = archive.jobs.get(first)
    assert job is not None and job.counts["total"] == 2
    assert job.not_before == clock.now + timedelta(seconds=5)
    clock.advance(4)
    assert archive.jobs.claim("w", ["test"], lease=60) is None, "the study has not settled"


def test_cancel_a_queued_job_at_once_and_a_running_one_at_its_next_item(
    archive: Archive,
) -> None:
    clocked(archive)
    queued = archive.jobs.enqueue("test", ["a"])
    job = archive.jobs.cancel(queued)
    assert job is not None and job.status == "cancelled"
    assert not run(archive, lambda job: None)

    running = archive.jobs.enqueue("test", ["a", "b", "c"])

    def kind(job: RunningJob) -> None:
        for item in job.pending():
            if job.cancelled():
                return
            job.done(item)
            archive.jobs.cancel(job.id)

    run(archive, kind)
    after = archive.jobs.get(running)
    assert after is not None and after.status == "cancelled"
    assert after.counts["done"] == 1 and after.counts["pending"] == 2


def test_retry_of_a_finished_job_runs_its_failed_items_again(archive: Archive) -> None:
    clocked(archive)
    pk = archive.jobs.enqueue("test", ["a", "b"])

    def first(job: RunningJob) -> None:
        job.done("a")
        job.failed("b", "refused")

    run(archive, first)
    job = archive.jobs.retry(pk)
    assert job is not None and job.status == "queued" and job.counts["pending"] == 1
    seen: list[str] = []

    def second(job: RunningJob) -> None:
        seen.extend(job.pending())
        for item in job.pending():
            job.done(item)

    run(archive, second)
    assert seen == ["b"]
    final = archive.jobs.get(pk)
    assert final is not None and final.status == "completed"


def test_a_stopping_worker_gives_the_job_back(archive: Archive) -> None:
    clocked(archive)
    pk = archive.jobs.enqueue("test", ["a", "b"])
    worker = JobWorker(archive.jobs, {}, threads=0)

    def kind(job: RunningJob) -> None:
        job.stopping.set()  # what JobWorker.stop() does
        job.done("a")
        job.done("b")

    worker.kinds["test"] = kind
    worker.run_one()
    job = archive.jobs.get(pk)
    assert job is not None and job.status == "queued" and job.attempts == 0
    assert job.counts["done"] == 1 and job.counts["pending"] == 1


def test_purge_deletes_old_finished_jobs_but_keeps_proof_of_forwarding(archive: Archive) -> None:
    clock = clocked(archive)
    (ds,) = study(StudySpec(patient_id="PURGE", instances_per_series=1))
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    assert archive.store(buffer.getvalue()).ok
    stored_study = str(ds.StudyInstanceUID)
    kept = archive.jobs.enqueue("forward", ["x"], label="r", subject=stored_study)
    gone = archive.jobs.enqueue("forward", ["y"], label="r", subject="1.2.3.deleted")
    moved = archive.jobs.enqueue("move", ["z"])
    running = archive.jobs.enqueue("test", ["w"])
    worker = JobWorker(archive.jobs, {"forward": lambda j: None, "move": lambda j: None}, 0)
    while worker.run_one():
        pass
    assert archive.jobs.claim("w", ["test"], lease=10**9) is not None
    clock.advance(29 * 86400)
    assert archive.jobs.purge(30) == 0
    clock.advance(2 * 86400)
    assert archive.jobs.purge(30) == 2
    assert {j.id for j in archive.jobs.search()} == {kept, running}
    assert archive.jobs.items(gone) == [] and archive.jobs.items(moved) == []
