"""Empty files made ahead of the writes that take them (isthmus.archive.spare_files)."""

from __future__ import annotations

import gc
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from isthmus.archive import spare_files
from isthmus.archive.spare_files import SpareFiles
from isthmus.archive.storage import SPARE_FOLDER, FileBlobStore


def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait (bounded) for the filling thread to do what it is there for."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the spare files' thread did not get there"
        time.sleep(0.01)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "spares"


@pytest.fixture
def spares(folder: Path) -> Iterator[SpareFiles]:
    serial = itertools.count()
    made = SpareFiles(str(folder), lambda: f"s.{next(serial)}.spare", direct=False, count=3)
    yield made
    made.close()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def start(spares: SpareFiles) -> None:
    """The first take starts the thread (and may already get a spare: given back)."""
    spare = spares.take()
    if spare is not None:
        os.close(spare[0].fd)
        os.unlink(spare[1])


def test_the_first_take_starts_a_thread_that_keeps_count_files_ready(
    spares: SpareFiles, folder: Path
) -> None:
    assert names(folder) == []  # nothing made before it is asked for
    start(spares)
    eventually(lambda: len(names(folder)) == 3)
    spare = spares.take()
    assert spare is not None
    file, path = spare
    os.write(file.fd, b"written")
    os.close(file.fd)
    assert Path(path).parent == folder and Path(path).read_bytes() == b"written"
    eventually(lambda: len(names(folder)) == 4)  # three spares again, and the taken one


def test_close_removes_the_spares_not_taken(spares: SpareFiles, folder: Path) -> None:
    start(spares)
    eventually(lambda: len(names(folder)) == 3)
    spares.close()
    assert names(folder) == []
    assert spares.take() is None


def test_collecting_the_spare_files_stops_their_thread_and_removes_them(folder: Path) -> None:
    made = SpareFiles(str(folder), lambda: f"s.{time.monotonic_ns()}.spare", direct=False)
    start(made)
    eventually(lambda: len(names(folder)) == 8)
    del made
    gc.collect()
    assert names(folder) == []
    eventually(lambda: "isthmus-spare-files" not in {t.name for t in threading.enumerate()})


def test_spares_waiting_long_are_touched_so_that_another_machines_sweep_keeps_them(
    spares: SpareFiles, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spare_files, "RENEW_EVERY", 0.05)
    start(spares)
    eventually(lambda: len(names(folder)) == 3)
    for name in names(folder):
        os.utime(folder / name, (1_000_000, 1_000_000))  # as if made long ago
    eventually(lambda: all((folder / n).stat().st_mtime > 1_000_000 for n in names(folder)))


def test_a_store_writes_blobs_through_spares_and_its_sweep_spares_its_own(
    tmp_path: Path,
) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    store.put("s/1.dcm", [b"first"])
    spare_folder = tmp_path / "blobs" / SPARE_FOLDER
    eventually(lambda: len(names(spare_folder)) == 8)
    for n in range(20):
        store.put(f"s/{n}.dcm", [b"blob %d" % n])
    assert sorted(store.keys()) == sorted(f"s/{n}.dcm" for n in range(20))
    assert all(store.open(f"s/{n}.dcm").read() == b"blob %d" % n for n in range(20))
    eventually(lambda: len(names(spare_folder)) == 8)
    assert all(name.endswith(".spare") for name in names(spare_folder))
    assert store.sweep() == 0  # this process's spares are not leftovers
    (spare_folder / "blob.00000000-1.1.spare").touch()  # another machine's, long gone
    os.utime(spare_folder / "blob.00000000-1.1.spare", (1_000_000, 1_000_000))
    assert store.sweep(older_than=600) == 1
    store.close()
    assert names(spare_folder) == []


def test_a_store_no_longer_referenced_stops_its_spares_thread(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    store.put("s/1.dcm", [b"first"])
    spare_folder = tmp_path / "blobs" / SPARE_FOLDER
    eventually(lambda: len(names(spare_folder)) == 8)
    del store
    gc.collect()
    assert names(spare_folder) == []
