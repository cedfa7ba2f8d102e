"""The file blob store (the default) and `open_blob_store`, which opens a store by URL.

The archive addresses blobs by opaque keys; no door ever sees a file path.  The
file store writes each blob atomically (temporary file, fsync, rename, fsync of the
directory), so a key either names a complete, durable blob or nothing.

The temporary file is usually a spare, an empty file made ahead in the `.spare` folder
by a thread of the store (`spare_files.py`: creating a file can cost more than the
rest of a small blob's write), renamed into the key's folder once written.

Several processes may share one store (docs/scaling.md).  A temporary file is named
after the machine and process writing it, so that `sweep` removes at once what a dead
process of this machine left, and what another machine left only after a grace period;
a process's own are never swept (they are being written, or spares).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import urlparse

from isthmus.archive import direct_io
from isthmus.archive.blob import BlobStore, BlobStoreUnavailable, NoLocalPath, check_key
from isthmus.archive.spare_files import SpareFiles

__all__ = [
    "BlobStore",
    "BlobStoreUnavailable",
    "FileBlobStore",
    "NoLocalPath",
    "check_key",
    "open_blob_store",
]

_T = TypeVar("_T")
_TMP_SUFFIX = ".partial"
_SPARE_SUFFIX = ".spare"  # an empty file made ahead (spare_files.py); a write's, once taken
# Where the store keeps its spare files (spare_files.py): under the root, so that a
# rename names a spare as any blob.  Not a key's folder: keys start with a UID.
SPARE_FOLDER = ".spare"
# This machine, in temporary file names (`sweep` tells its own leftovers from others').
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# Numbers temporary files apart: one count for every store of the process (two stores
# of one process may share a folder, as two archives of one test do).
_SERIAL = itertools.count()
_TMP_RE = re.compile(r"\.(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)\.[0-9a-f]+(\.partial|\.spare)$")


class FileBlobStore:
    """Blobs as files under one folder, written atomically and fsynced."""

    def __init__(self, root: str | os.PathLike[str], fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._direct = fsync  # around the page cache: only what is fsynced gains by it
        # Paths as strings on the hot path: pathlib's objects cost a tenth of a small
        # instance's store (building, then converting for every system call).
        self._root = str(self.root)
        self._folders: set[str] = set()
        self._spares = SpareFiles(
            os.path.join(self._root, SPARE_FOLDER), _spare_name, direct=self._direct
        )

    def _ensure_folder(self, folder: str) -> None:
        """Create a folder (and parents) once; new entries are fsynced in their parent."""
        if folder in self._folders:
            return
        missing = []
        probe = folder
        while probe != self._root and not os.path.exists(probe):
            missing.append(probe)
            probe = os.path.dirname(probe)
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(path)
            if self.fsync:
                _fsync_dir(os.path.dirname(path))
        if len(self._folders) > 100_000:
            self._folders.clear()
        self._folders.add(folder)

    def _path(self, key: str) -> str:
        return f"{self._root}/{check_key(key)}"

    def put(self, key: str, chunks: Iterable[bytes | memoryview], sync: bool = True) -> int:
        path = self._path(key)
        folder = os.path.dirname(path)
        self._ensure_folder(folder)
        spare = self._spares.take()  # an empty file made ahead, if one is ready
        file, tmp = spare if spare is not None else (None, _temporary_name(path))
        size = 0
        try:
            if file is None:
                file = self._create(tmp)
            try:
                size = file.write_all(chunks)
                if self.fsync and sync:
                    os.fsync(file.fd)
            finally:
                os.close(file.fd)
            self._rename(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        if self.fsync and sync:
            _fsync_dir(folder)
        return size

    def _rename(self, tmp: str, path: str) -> None:
        """Name the written blob (a spare was written in the spare folder, not in the
        key's, which a concurrent delete may have removed meanwhile)."""
        self._again_if_folder_gone(os.path.dirname(path), lambda: os.replace(tmp, path))

    def _again_if_folder_gone(self, folder: str, action: Callable[[], _T]) -> _T:
        """`action`, tried again (up to three times) after making `folder` anew when a
        concurrent delete just removed it, empty."""
        for _attempt in range(3):
            try:
                return action()
            except FileNotFoundError:
                self._folders.discard(folder)
                self._ensure_folder(folder)
        return action()

    def close(self) -> None:
        self._spares.close()

    def sync(self, key: str) -> None:
        if not self.fsync:
            return
        path = self._path(key)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(os.path.dirname(path))

    def _create(self, tmp: str) -> direct_io.DirectFile:
        """Create the temporary file, for direct writes when the blob is to be fsynced
        (`direct_io`); if a concurrent delete just removed its (empty) folder, make the
        folder again."""
        return self._again_if_folder_gone(os.path.dirname(tmp), lambda: self._open_new(tmp))

    def _open_new(self, tmp: str) -> direct_io.DirectFile:
        file = direct_io.create(tmp, direct=self._direct)
        self._direct = file.direct  # a file system that refuses it once is not asked again
        return file

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError as exc:
            raise KeyError(key) from exc

    def size(self, key: str) -> int:
        try:
            return os.stat(self._path(key)).st_size
        except FileNotFoundError as exc:
            raise KeyError(key) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        folder = os.path.dirname(path)
        while folder != self._root:  # drop folders left empty (a deleted study's)
            try:
                os.rmdir(folder)
            except OSError:
                break
            self._folders.discard(folder)
            folder = os.path.dirname(folder)

    def keys(self) -> Iterator[str]:
        for dirpath, _dirs, files in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            for name in files:
                if not name.endswith((_TMP_SUFFIX, _SPARE_SUFFIX)):
                    yield name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")

    def modified(self, key: str) -> float:
        try:
            return os.stat(self._path(key)).st_mtime
        except FileNotFoundError as exc:
            raise KeyError(key) from exc

    def sizes(self) -> Iterator[tuple[str, int]]:
        for key in self.keys():
            try:
                yield key, os.stat(self._path(key)).st_size
            except FileNotFoundError:
                continue  # deleted while listing

    def local_path(self, key: str) -> str:
        return self._path(key)

    def sweep(self, older_than: float = 0.0) -> int:
        count = 0
        limit = time.time() - older_than
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if not name.endswith((_TMP_SUFFIX, _SPARE_SUFFIX)):
                    continue
                path = Path(dirpath, name)
                if _ours(name):
                    continue  # being written, or a spare (spare_files.py)
                if _abandoned(name) or _older(path, limit):
                    path.unlink(missing_ok=True)
                    count += 1
        return count

    def check(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK | os.X_OK):
            raise OSError(f"blob store {self.root} is not a writable folder")

    def usage(self) -> tuple[int, int]:
        """(free bytes, total bytes) of the file system holding the store."""
        total, _used, free = shutil.disk_usage(self.root)
        return free, total


def _temporary_name(path: str, suffix: str = _TMP_SUFFIX) -> str:
    """`path` and this machine, process and a serial number (`_TMP_RE`)."""
    return f"{path}.{_HOST}-{os.getpid()}.{next(_SERIAL):x}{suffix}"


def _spare_name() -> str:
    """A spare's name: a temporary file's, of this machine and process (a function, not
    a method: the spares' thread must not keep the store alive)."""
    return _temporary_name("blob", _SPARE_SUFFIX)


def _ours(name: str) -> bool:
    """A temporary file of this very process."""
    match = _TMP_RE.search(name)
    return match is not None and match["host"] == _HOST and int(match["pid"]) == os.getpid()


def _abandoned(name: str) -> bool:
    """A temporary file of a process of this machine that no longer runs."""
    match = _TMP_RE.search(name)
    if match is None or match["host"] != _HOST:
        return match is None  # the name of no live writer: an older version's leftover
    pid = int(match["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def _older(path: Path, limit: float) -> bool:
    try:
        return path.stat().st_mtime < limit
    except FileNotFoundError:
        return False


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_blob_store(url: str, durable: bool = True) -> BlobStore:
    """Blob store from a URL: ``file:///path`` (or a bare path), or
    ``s3://bucket/prefix`` (`isthmus.archive.s3`: endpoint, credentials, parameters)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return FileBlobStore(parsed.path if parsed.scheme else url, fsync=durable)
    if parsed.scheme == "s3":
        from isthmus.archive.s3 import open_s3_blob_store

        return open_s3_blob_store(url)
    raise ValueError(f"unsupported blob store URL {url!r} (use file:///path or s3://bucket/prefix)")
