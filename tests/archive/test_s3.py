"""The S3 blob store against a real S3 server (SeaweedFS): whole objects or nothing,
ranged reads, bounded failures, the standard AWS configuration (no index involved)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from isthmus.archive.blob import BlobStoreUnavailable, NoLocalPath
from isthmus.archive.s3 import S3BlobStore, open_s3_blob_store
from isthmus.testing.net import free_port
from isthmus.testing.seaweedfs import ACCESS_KEY, SECRET_KEY, TemporarySeaweedFS


@pytest.fixture
def store(seaweedfs: TemporarySeaweedFS) -> S3BlobStore:
    return open_s3_blob_store(seaweedfs.url())


def test_put_open_size_keys_and_delete(store: S3BlobStore) -> None:
    size = store.put("ab/cd/one.dcm", [b"head", memoryview(b"-body-"), bytearray(b"tail")])
    assert size == 14 and store.size("ab/cd/one.dcm") == 14
    with store.open("ab/cd/one.dcm") as fh:
        assert fh.read() == b"head-body-tail"
    store.put("top.dcm", [b"x"])
    assert sorted(store.keys()) == ["ab/cd/one.dcm", "top.dcm"]
    assert dict(store.sizes()) == {"ab/cd/one.dcm": 14, "top.dcm": 1}
    store.delete("ab/cd/one.dcm")
    store.delete("ab/cd/one.dcm")  # absent keys are ignored
    assert list(store.keys()) == ["top.dcm"]
    with pytest.raises(KeyError):
        store.open("ab/cd/one.dcm")
    with pytest.raises(KeyError):
        store.size("ab/cd/one.dcm")


def test_each_prefix_is_a_store_of_its_own(seaweedfs: TemporarySeaweedFS) -> None:
    one, two = open_s3_blob_store(seaweedfs.url()), open_s3_blob_store(seaweedfs.url())
    one.put("ab/k.dcm", [b"one"])
    assert list(two.keys()) == [] and list(one.keys()) == ["ab/k.dcm"]


def test_put_replaces_an_existing_object(store: S3BlobStore) -> None:
    store.put("k.dcm", [b"old contents"])
    store.put("k.dcm", [b"new"])
    with store.open("k.dcm") as fh:
        assert fh.read() == b"new"


def test_reads_seek_anywhere_in_a_large_object(store: S3BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # past the head read at open and the buffer
    store.put("big.dcm", [data[:100], memoryview(data)[100:]])
    with store.open("big.dcm") as fh:
        assert fh.seekable()
        fh.seek(2 * 1024 * 1024 + 5)
        assert fh.read(1000) == data[2 * 1024 * 1024 + 5 : 2 * 1024 * 1024 + 1005]
        assert fh.tell() == 2 * 1024 * 1024 + 1005
        fh.seek(-10, os.SEEK_END)
        assert fh.read() == data[-10:]
        fh.seek(3)
        assert fh.read(4) == data[3:7]  # from the head fetched at open
        fh.seek(0)
        assert fh.read() == data
        assert fh.read(10) == b""


def test_an_empty_object_reads_as_empty(store: S3BlobStore) -> None:
    store.put("ab/empty.dcm", [b""])
    with store.open("ab/empty.dcm") as fh:
        assert fh.read() == b"" and store.size("ab/empty.dcm") == 0


def test_local_path_is_refused_cleanly(store: S3BlobStore) -> None:
    store.put("k.dcm", [b"x"])
    with pytest.raises(NoLocalPath, match="open"):
        store.local_path("k.dcm")


def test_keys_that_could_escape_the_prefix_are_refused(store: S3BlobStore) -> None:
    for key in ("../escape.dcm", "/abs", "a//b"):
        with pytest.raises(ValueError):
            store.put(key, [b"x"])


def test_an_unreachable_store_fails_clearly_after_bounded_retries_then_fast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Keys given, so that no credential lookup goes beyond loopback (no instance metadata).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    port = free_port()  # nothing listens there
    store = open_s3_blob_store(f"s3://bucket/p?endpoint=http://127.0.0.1:{port}&retry_timeout=1")
    with pytest.raises(BlobStoreUnavailable, match="S3 PUT ab/k.dcm failed"):
        store.put("ab/k.dcm", [b"x"])
    # Presumed down now: the next calls are not retried, so many fail fast (a C-MOVE).
    with pytest.raises(BlobStoreUnavailable, match="S3 GET ab/k.dcm .not retried"):
        store.open("ab/k.dcm")
    store.delete("ab/k.dcm")  # logged, not raised: check() removes what stays


def test_credentials_come_from_the_shared_credentials_file_profile(
    seaweedfs: TemporarySeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "credentials").write_text(
        f"[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing\n\n"
        f"[archive]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    (tmp_path / "config").write_text("[profile archive]\nregion = us-east-1\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "archive")
    store = open_s3_blob_store(seaweedfs.url(retry_timeout=1))
    store.put("ab/k.dcm", [b"signed with the profile's keys"])
    assert store.open("ab/k.dcm").read() == b"signed with the profile's keys"
    monkeypatch.setenv("AWS_PROFILE", "default")  # wrong keys: a clear failure
    with pytest.raises(BlobStoreUnavailable):
        open_s3_blob_store(seaweedfs.url(retry_timeout=1)).put("ab/k.dcm", [b"x"])


def test_url_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown"):
        open_s3_blob_store("s3://bucket/p?colour=blue")
    with pytest.raises(ValueError, match="no bucket"):
        open_s3_blob_store("s3:///p")
    with pytest.raises(ValueError, match="retry_timeout"):
        open_s3_blob_store("s3://bucket/p?retry_timeout=soon")
    store = open_s3_blob_store("s3://bucket/some/prefix/?endpoint=http://127.0.0.1:9&region=eu-x")
    assert (store.bucket, store.prefix, store.endpoint) == (
        "bucket",
        "some/prefix",
        "http://127.0.0.1:9",
    )


UPLOAD = textwrap.dedent("""
    import os, sys
    from isthmus.archive.s3 import open_s3_blob_store
    store = open_s3_blob_store(sys.argv[1])
    data = bytearray(os.urandom(1 << 20)) * 400  # 400 MiB: takes seconds to send
    print("sending", flush=True)
    store.put("ab/killed.dcm", [data])
    print("sent", flush=True)
""")


def test_a_process_killed_mid_upload_leaves_no_object(seaweedfs: TemporarySeaweedFS) -> None:
    url = seaweedfs.url()
    child = subprocess.Popen(
        [sys.executable, "-c", UPLOAD, url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "sending"
        time.sleep(1.5)  # hashing and sending 400 MiB takes several seconds
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    store = open_s3_blob_store(url)
    assert list(store.keys()) == []
    with pytest.raises(KeyError):
        store.open("ab/killed.dcm")
