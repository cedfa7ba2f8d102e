"""Writing a new file around the page cache (`O_DIRECT`), for blobs that are fsynced.

A durable blob is written, then fsynced before its store is acknowledged.  Written the
ordinary way, its bytes are first copied into the page cache and the fsync then writes
them back from there, in the caller's time: on the machines measured here that writeback
cost about 1.3 ms of CPU and 2–3 ms of wall time per 525 KB CT image, against 0.3 ms and
about 1 ms when the same bytes go straight from an aligned buffer to the device
(docs/performance.md, "Issue 10's rows").  The fsync that follows still makes the file's
size, its blocks and its name durable, and flushes the device's cache: the promise is the
same, only the copy through the cache is gone.

`O_DIRECT` wants the buffer, the length and the file offset aligned to the device's
logical block; `ALIGN` (4096) covers every common device.  The bytes pass through one
staging buffer per thread; the last block is padded with zeros and the file then cut to
its true length.  A file system that refuses direct I/O (older tmpfs, some FUSE ones)
gets the ordinary path; the file store stops asking after the first refusal.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading
from collections.abc import Iterable

ALIGN = 4096
STAGING = 1 << 20  # bytes staged per write: a multiple of ALIGN
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
_DIRECT = getattr(os, "O_DIRECT", 0)  # Linux (and a few others) only
_local = threading.local()


def _staging() -> mmap.mmap:
    """This thread's staging buffer (anonymous memory: page-aligned)."""
    buffer: mmap.mmap | None = getattr(_local, "buffer", None)
    if buffer is None:
        buffer = _local.buffer = mmap.mmap(-1, STAGING)
    return buffer


class DirectFile:
    """A new file opened for direct writes, or for ordinary ones where direct I/O is
    refused; `write_all` writes the chunks and returns the size."""

    def __init__(self, fd: int, direct: bool) -> None:
        self.fd, self.direct = fd, direct

    def write_all(self, chunks: Iterable[bytes | memoryview]) -> int:
        if not self.direct:
            return _write_chunks(self.fd, chunks)
        buffer = _staging()
        with memoryview(buffer) as view:
            size = used = 0
            for chunk in chunks:
                data = memoryview(chunk).cast("B")
                while data:
                    n = min(len(data), STAGING - used)
                    view[used : used + n] = data[:n]
                    used, data, size = used + n, data[n:], size + n
                    if used == STAGING:
                        self._write(view[:used])
                        used = 0
            if used:
                padded = -(-used // ALIGN) * ALIGN
                view[used:padded] = bytes(padded - used)
                self._write(view[:padded])
                os.ftruncate(self.fd, size)
        return size

    def _write(self, block: memoryview) -> None:
        """Write an aligned block; a short write or a refusal finishes it the ordinary way."""
        written = 0
        if self.direct:
            try:
                written = os.write(self.fd, block)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
        if written < len(block):
            self._ordinary()
            _write_chunks(self.fd, [block[written:]])

    def _ordinary(self) -> None:
        if self.direct:
            flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~_DIRECT)
            self.direct = False


def create(path: os.PathLike[str] | str, direct: bool, mode: int = 0o640) -> DirectFile:
    """Create (or truncate) `path` for writing, directly if asked and the file system
    allows it (EINVAL otherwise: then ordinarily)."""
    if direct and _DIRECT:
        try:
            return DirectFile(os.open(path, _FLAGS | _DIRECT, mode), direct=True)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return DirectFile(os.open(path, _FLAGS, mode), direct=False)


def _write_chunks(fd: int, chunks: Iterable[bytes | memoryview]) -> int:
    """Ordinary writes of every chunk (writev, continuing after short writes)."""
    pending = [memoryview(c).cast("B") for c in chunks]
    size = sum(len(c) for c in pending)
    while pending:
        written = os.writev(fd, pending)
        while pending and written >= len(pending[0]):
            written -= len(pending[0])
            pending.pop(0)
        if pending and written:
            pending[0] = pending[0][written:]
    return size
