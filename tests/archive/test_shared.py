"""Several archives (as several processes would) on one PostgreSQL index and one blob
folder: concurrent migrations, the same instance stored by two at once, a delete by one
seen by the other's cached parents, and check() leaving the others' work alone."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from isthmus.archive import Archive, Staged, StoreOutcome
from isthmus.archive import index as idx
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.postgres import TemporaryPostgres


@pytest.fixture
def pg_url(postgres: TemporaryPostgres) -> str:
    return postgres.create_database("x_" + uuid.uuid4().hex[:12])


@pytest.fixture
def pair(pg_url: str, tmp_path: Path) -> Iterator[tuple[Archive, Archive]]:
    """Two archives on one index and one blob folder."""
    blobs = f"file://{tmp_path / 'blobs'}"
    one, two = Archive(pg_url, blobs), Archive(pg_url, blobs)
    try:
        yield one, two
    finally:
        one.close()
        two.close()


def blob_count(archive: Archive) -> int:
    return sum(1 for _ in archive.blobs.keys())


def together(*work: object) -> None:
    """Run callables at the same moment, each on its own thread."""
    start = threading.Barrier(len(work))
    errors: list[BaseException] = []

    def run(job: object) -> None:
        start.wait()
        try:
            job()  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors


def test_migrations_run_by_processes_starting_together_apply_once(pg_url: str) -> None:
    engines = [idx.create_engine(pg_url) for _ in range(4)]
    versions: list[int] = []
    try:
        together(*(lambda e=e: versions.append(idx.migrate(e)) for e in engines))
        assert versions == [len(idx.MIGRATIONS)] * 4
        with engines[0].connect() as conn:
            applied = [v for (v,) in conn.execute(sa.select(idx.schema_version.c.version))]
        assert sorted(applied) == list(range(1, len(idx.MIGRATIONS) + 1))
    finally:
        for engine in engines:
            engine.dispose()


@pytest.mark.parametrize("duplicates", ["keep", "overwrite"])
def test_the_same_instances_stored_by_two_archives_at_once_end_as_one_each(
    pg_url: str, tmp_path: Path, duplicates: str
) -> None:
    paths = write_study(StudySpec(instances_per_series=40), tmp_path / "in")
    data = [p.read_bytes() for p in paths]
    blobs = f"file://{tmp_path / 'blobs'}"
    archives = [Archive(pg_url, blobs, duplicates=duplicates) for _ in range(2)]
    outcomes: list[str] = []

    def send(archive: Archive) -> None:
        results = [None] * len(data)

        def one(i: int) -> None:
            results[i] = archive.store(data[i]).status  # type: ignore[call-overload]

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(data))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        outcomes.extend(str(r) for r in results)

    try:
        together(*(lambda a=a: send(a) for a in archives))
        assert len(outcomes) == 80
        assert set(outcomes) <= {"stored", "duplicate", "overwritten"}, outcomes
        assert archives[0].counts()["image"] == 40
        assert blob_count(archives[0]) == 40
        assert archives[1].check(grace=0) == {
            "partial": 0,
            "orphans": 0,
            "missing": 0,
            "instances": 40,
        }
    finally:
        for archive in archives:
            archive.close()


def test_a_study_deleted_by_one_archive_can_be_stored_again_by_the_other(
    pair: tuple[Archive, Archive], tmp_path: Path
) -> None:
    one, two = pair
    paths = write_study(StudySpec(instances_per_series=3), tmp_path / "in")
    first, *rest = (p.read_bytes() for p in paths)
    assert one.store(first).status == "stored"  # one caches the parents' keys
    uid = one.instances()[0].study_instance_uid
    assert two.delete(uid) == 1  # two deletes them
    for data in rest:  # one files the next instances under new parents
        assert one.store(data).status == "stored"
    assert one.counts() == {"patient": 1, "study": 1, "series": 1, "image": 2}
    assert [r.study_instance_uid for r in two.instances()] == [uid, uid]


def test_check_leaves_young_blobs_and_temporary_files_of_other_processes_alone(
    pair: tuple[Archive, Archive],
) -> None:
    one, two = pair
    assert one.shared() and two.shared()
    one.blobs.put("ab/cd/in-flight.dcm", [b"a blob whose row is not committed yet"])
    folder = Path(one.blobs.local_path("ab/cd/in-flight.dcm")).parent
    elsewhere = folder / "x.dcm.0123abcd-4242.beef.partial"  # another machine's write
    elsewhere.write_bytes(b"half")
    mine = folder / f"y.dcm.{_host()}-{os.getpid()}.beef.partial"  # a live process's write
    mine.write_bytes(b"half")

    report = two.check()  # one is open: a shared archive, a grace period
    assert (report["orphans"], report["partial"]) == (0, 0)
    assert elsewhere.exists() and mine.exists()
    assert one.blobs.size("ab/cd/in-flight.dcm") > 0

    old = time.time() - 3600
    os.utime(elsewhere, (old, old))
    os.utime(one.blobs.local_path("ab/cd/in-flight.dcm"), (old, old))
    report = two.check()
    assert (report["orphans"], report["partial"]) == (1, 1)
    assert not elsewhere.exists() and mine.exists()


def test_a_staged_blob_a_check_elsewhere_removed_during_a_long_request_is_not_acknowledged(
    pair: tuple[Archive, Archive], tmp_path: Path
) -> None:
    """A STOW-RS body that takes longer than SHARED_GRACE to arrive: its first staged
    blob looks like a crash's orphan to a check another process runs meanwhile (a
    worker started again, a process joining) and is removed.  Committed as it was, the
    instance would be acknowledged with a row and no blob; it is refused instead, and
    no row is left."""
    one, two = pair
    path = write_study(StudySpec(patient_id="SHARED-LONG", instances_per_series=1), tmp_path)[0]
    staged = one.stage(path.read_bytes())
    assert isinstance(staged, Staged)
    old = time.time() - 3600  # the body began to arrive an hour ago
    os.utime(one.blobs.local_path(staged.key), (old, old))
    staged = replace(staged, staged_at=staged.staged_at - 3600)
    assert two.check()["orphans"] == 1  # another process's check, meanwhile

    [result] = one.commit([staged])
    assert result.outcome is StoreOutcome.PROCESSING_FAILURE, result
    assert not one.instances(sop_uid=result.sop_instance_uid)
    assert two.check(grace=0)["missing"] == 0


def test_check_removes_at_once_what_a_dead_process_of_this_machine_left(
    pair: tuple[Archive, Archive],
) -> None:
    one, _two = pair
    one.blobs.put("ab/cd/x.dcm", [b"x"])
    folder = Path(one.blobs.local_path("ab/cd/x.dcm")).parent
    dead = folder / f"z.dcm.{_host()}-{_dead_pid()}.beef.partial"
    dead.write_bytes(b"half")
    assert one.check()["partial"] == 1
    assert not dead.exists()


def test_check_of_an_archive_nobody_else_has_open_repairs_at_once(
    pg_url: str, tmp_path: Path
) -> None:
    archive = Archive(pg_url, f"file://{tmp_path / 'blobs'}")
    try:
        assert not archive.shared()
        archive.blobs.put("ab/cd/orphan.dcm", [b"no row"])
        assert archive.check()["orphans"] == 1
    finally:
        archive.close()


def _host() -> str:
    from isthmus.archive import storage

    return storage._HOST


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1
