"""The file blob store: atomic, durable writes under opaque keys (no index involved)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus.archive.s3 import S3BlobStore
from isthmus.archive.storage import SPARE_FOLDER, FileBlobStore, check_key, open_blob_store


@pytest.fixture
def store(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


def files_under(root: Path) -> list[str]:
    """The files under the store's root, but for its spare files."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.parent != root / SPARE_FOLDER
    )


def test_put_open_size_keys_and_delete(store: FileBlobStore) -> None:
    size = store.put("ab/cd/one.dcm", [b"head", memoryview(b"-body-"), bytearray(b"tail")])
    assert size == 14 and store.size("ab/cd/one.dcm") == 14
    with store.open("ab/cd/one.dcm") as fh:
        assert fh.read() == b"head-body-tail"
    store.put("top.dcm", [b"x"])
    assert sorted(store.keys()) == ["ab/cd/one.dcm", "top.dcm"]
    store.delete("ab/cd/one.dcm")
    store.delete("ab/cd/one.dcm")  # absent keys are ignored
    assert list(store.keys()) == ["top.dcm"]
    with pytest.raises(KeyError):
        store.open("ab/cd/one.dcm")
    with pytest.raises(KeyError):
        store.size("ab/cd/one.dcm")


def test_put_replaces_an_existing_blob(store: FileBlobStore) -> None:
    store.put("k.dcm", [b"old contents"])
    store.put("k.dcm", [b"new"])
    with store.open("k.dcm") as fh:
        assert fh.read() == b"new"


def test_a_folder_emptied_by_delete_can_be_written_again(store: FileBlobStore) -> None:
    store.put("s1/a/1.dcm", [b"1"])
    store.delete("s1/a/1.dcm")
    store.put("s1/a/2.dcm", [b"2"])
    assert list(store.keys()) == ["s1/a/2.dcm"]


@pytest.mark.parametrize(
    "key",
    ["../escape.dcm", "/etc/passwd", "a/../../b", "a//b", "", ".hidden", "a b", "a/", "x/../y"],
)
def test_keys_that_could_escape_the_store_are_refused(store: FileBlobStore, key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)
    with pytest.raises(ValueError):
        store.put(key, [b"x"])


def test_interrupted_write_leaves_neither_blob_nor_partial_file(store: FileBlobStore) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"first part"
        raise OSError("the sender went away")

    with pytest.raises(OSError):
        store.put("ab/broken.dcm", chunks())
    assert list(store.keys()) == []
    assert not [f for f in files_under(store.root) if f.endswith(".partial")]


def test_sweep_removes_partial_files_that_keys_never_list(store: FileBlobStore) -> None:
    store.put("ab/ok.dcm", [b"complete"])
    (store.root / "ab" / "ok.dcm.999.1.partial").write_bytes(b"half")
    (store.root / "crashed.dcm.1.2.partial").write_bytes(b"half")
    assert list(store.keys()) == ["ab/ok.dcm"]
    assert store.sweep() == 2
    assert files_under(store.root) == ["ab/ok.dcm"]
    assert store.sweep() == 0


def test_blob_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(f"file://{tmp_path / 'a'}"), FileBlobStore)
    assert isinstance(open_blob_store(str(tmp_path / "b")), FileBlobStore)
    assert (tmp_path / "a").is_dir() and (tmp_path / "b").is_dir()
    assert isinstance(
        open_blob_store("s3://bucket/prefix?endpoint=http://127.0.0.1:9"), S3BlobStore
    )
    with pytest.raises(ValueError, match="s3://bucket"):
        open_blob_store("ftp://host/folder")


def test_put_recreates_a_folder_a_concurrent_delete_removed(store: FileBlobStore) -> None:
    store.put("ab/cd/one.dcm", [b"1"])  # the folder is now known to the store
    # Another thread's delete empties and removes the folder behind this one's back.
    Path(store.local_path("ab/cd/one.dcm")).unlink()
    Path(store.local_path("ab/cd/one.dcm")).parent.rmdir()
    assert store.put("ab/cd/three.dcm", [b"3"]) == 1
    assert store.open("ab/cd/three.dcm").read() == b"3"
