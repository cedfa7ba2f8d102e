"""Group commit: many callers, one writer thread, batches that fail job by job."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from tests.archive.conftest import engine_with

from isthmus.archive.writer import GroupCommitWriter

meta = sa.MetaData()
rows = sa.Table("writer_test", meta, sa.Column("n", sa.Integer, primary_key=True))


@pytest.fixture
def engine(index_url: str) -> Iterator[sa.Engine]:
    with engine_with(index_url, meta) as eng:
        yield eng


@pytest.fixture
def writer(engine: sa.Engine) -> Iterator[GroupCommitWriter]:
    w = GroupCommitWriter(engine)
    try:
        yield w
    finally:
        w.close()


def stored(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return sorted(n for (n,) in conn.execute(sa.select(rows.c.n)))


def test_jobs_from_many_threads_are_all_committed(
    engine: sa.Engine, writer: GroupCommitWriter
) -> None:
    results: dict[int, int] = {}

    def submit(n: int) -> None:
        def job(conn: sa.Connection) -> int:
            conn.execute(rows.insert().values(n=n))
            return n

        results[n] = writer.run(job)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {n: n for n in range(64)}
    assert stored(engine) == list(range(64))


def test_a_failing_job_fails_alone_and_its_batch_neighbours_commit(
    engine: sa.Engine, writer: GroupCommitWriter
) -> None:
    busy, gate = threading.Event(), threading.Event()

    def occupy(conn: sa.Connection) -> None:
        busy.set()
        gate.wait(60)

    first = threading.Thread(target=writer.run, args=(occupy,))
    first.start()
    assert busy.wait(30)  # the writer is busy: the jobs below queue up
    outcomes: dict[int, object] = {}

    def submit(n: int) -> None:
        def job(conn: sa.Connection) -> int:
            conn.execute(rows.insert().values(n=n))
            if n == 3:
                raise RuntimeError("job 3 is broken")
            return n

        try:
            outcomes[n] = writer.run(job)
        except RuntimeError as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for _ in range(3000):  # all six wait, to be taken as one batch
        if writer._queue.qsize() == 6:
            break
        threading.Event().wait(0.01)
    gate.set()
    for t in [first, *threads]:
        t.join(60)
    assert isinstance(outcomes.pop(3), RuntimeError)
    assert outcomes == {0: 0, 1: 1, 2: 2, 4: 4, 5: 5}
    assert stored(engine) == [0, 1, 2, 4, 5]


def test_a_closed_writer_refuses_jobs(writer: GroupCommitWriter) -> None:
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.run(lambda conn: None)


def test_a_job_commits_after_the_database_dropped_the_writers_connection(
    engine: sa.Engine, writer: GroupCommitWriter
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("a SQLite connection cannot be dropped from outside")
    backend = writer.run(lambda conn: conn.exec_driver_sql("SELECT pg_backend_pid()").scalar())
    with engine.connect() as conn:
        conn.execute(sa.select(sa.func.pg_terminate_backend(backend)))

    def job(conn: sa.Connection) -> int:
        conn.execute(rows.insert().values(n=1))
        return 1

    assert writer.run(job) == 1
    assert stored(engine) == [1]


def test_writers_sharing_a_lock_file_take_turns(engine: sa.Engine, tmp_path) -> None:
    """Two writers (as of two worker processes: flock excludes open files, not only
    processes) on one lock file: the second's batch waits for the first's commit."""
    lock = tmp_path / "index.sqlite-writer.lock"
    first, second = (
        GroupCommitWriter(engine, lock_path=lock),
        GroupCommitWriter(engine, lock_path=lock),
    )
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []

    def slow(conn: sa.Connection) -> None:
        inside.set()
        release.wait(30)
        order.append("first")
        conn.execute(rows.insert().values(n=1))

    def quick(conn: sa.Connection) -> None:
        order.append("second")
        conn.execute(rows.insert().values(n=2))

    try:
        pending = first.submit(slow)
        assert inside.wait(30)
        waiting = second.submit(quick)
        assert not waiting.committed.acquire(timeout=0.5)  # held back by the lock
        release.set()
        pending.wait()
        waiting.wait()
        assert order == ["first", "second"]
        assert stored(engine) == [1, 2]
    finally:
        release.set()
        first.close()
        second.close()


def test_a_writer_hears_before_its_next_transaction_that_another_on_its_lock_file_changed(
    engine: sa.Engine, tmp_path
) -> None:
    """`changed()` in a job of one writer: the other writer on the lock file calls its
    `on_stale` as it next takes the lock, before its job runs; the writer that said it
    does not (its own cache is its caller's to clear)."""
    lock = tmp_path / "index.sqlite-writer.lock"
    heard: list[str] = []
    first = GroupCommitWriter(engine, lock_path=lock, on_stale=lambda: heard.append("first"))
    second = GroupCommitWriter(engine, lock_path=lock, on_stale=lambda: heard.append("second"))
    try:
        first.run(lambda conn: None)
        second.run(lambda conn: None)
        heard.clear()  # each saw the file for the first time
        first.run(lambda conn: first.changed())
        first.run(lambda conn: None)
        assert heard == []
        second.run(lambda conn: heard.append("job"))
        assert heard == ["second", "job"]
        second.run(lambda conn: None)
        assert heard == ["second", "job"]
    finally:
        first.close()
        second.close()


def test_a_sqlite_file_index_has_a_writer_lock_and_other_indexes_none() -> None:
    from isthmus.archive.index import create_engine, writer_lock_path

    assert writer_lock_path(create_engine("sqlite:////srv/isthmus/index.sqlite")) == (
        "/srv/isthmus/index.sqlite-writer.lock"
    )
    assert writer_lock_path(create_engine("sqlite://")) is None
    assert writer_lock_path(create_engine("postgresql://u@127.0.0.1/db")) is None
