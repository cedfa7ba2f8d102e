"""Empty files created ahead of need, so that storing a blob does not wait for one.

Creating a file is the dearest system call of a blob's write on some file systems: on
the benchmark machines' ext4 `open(O_CREAT)` took 0.1–0.9 ms of CPU (the allocator
looks past every inode freed in the last half minute, and an archive that receives
also deletes), against 20 µs for the rename that names the blob.  A C-STORE
association waits for each instance's write before it answers and the sender waits
for the answer, so that time was a third of the association's in the one-association
row of `make bench` (py-spy, docs/performance.md).

`SpareFiles` keeps up to `count` empty files ready, made by a thread of its own while
the association receives the next instance; `take` hands one out at once (or None
when none is ready: the caller creates its file itself, as before).  A spare is an
ordinary temporary file of the store, named by the caller's `name` (this machine and
process, so that `FileBlobStore.sweep` knows a dead process's spares from a live
one's); the thread renews the spares' modification times, so that a sweep by another
machine's process (which waits for a grace period) never takes a live one.  Nothing
in a spare is data: a crash leaves empty temporary files that a sweep removes.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable

from isthmus.archive import direct_io

#: Seconds between renewals of the spares' modification times (a sweep's grace for
#: other machines' temporary files is ten minutes: archive.SHARED_GRACE).
RENEW_EVERY = 60.0


class SpareFiles:
    """Up to `count` empty files in `folder`, created ahead by a thread (started by
    the first `take`, stopped by `close` or when this object is collected)."""

    def __init__(self, folder: str, name: Callable[[], str], direct: bool, count: int = 8) -> None:
        self._state = _State(folder, name, direct, count)
        self._started = False
        weakref.finalize(self, self._state.close)

    def take(self) -> tuple[direct_io.DirectFile, str] | None:
        """A ready empty file open for writing and its path, or None if none is ready."""
        if not self._started:
            self._started = True
            self._state.start()
        return self._state.take()

    def close(self) -> None:
        """Stop making spares and remove those not taken."""
        self._state.close()


class _State:
    """What the filling thread shares with `SpareFiles` (the thread holds no reference
    to the `SpareFiles` itself, so that collecting it stops the thread)."""

    def __init__(self, folder: str, name: Callable[[], str], direct: bool, count: int) -> None:
        self.folder, self.name, self.direct, self.count = folder, name, direct, count
        self.ready: collections.deque[tuple[direct_io.DirectFile, str]] = collections.deque()
        self.wake = threading.Condition()
        self.closed = False
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        with self.wake:
            if self.closed or self.thread is not None:
                return
            self.thread = threading.Thread(target=self.fill, name="isthmus-spare-files")
            self.thread.daemon = True
            self.thread.start()

    def take(self) -> tuple[direct_io.DirectFile, str] | None:
        with self.wake:
            spare = self.ready.popleft() if self.ready else None
            self.wake.notify()
        return spare

    def fill(self) -> None:
        """Keep `count` spares ready until closed; renew their times now and then.  A
        failure to create one (a full disk, the folder gone) is left to the writers,
        who then create their own files and report what the file system says."""
        renewed = time.monotonic()
        while True:
            with self.wake:
                while (
                    not self.closed
                    and len(self.ready) >= self.count
                    and time.monotonic() - renewed < RENEW_EVERY
                ):
                    self.wake.wait(RENEW_EVERY)
                if self.closed:
                    return
                if time.monotonic() - renewed >= RENEW_EVERY:
                    self.renew()
                    renewed = time.monotonic()
                wanted = len(self.ready) < self.count
            if wanted and not self.add():
                with self.wake:
                    if not self.closed:
                        self.wake.wait(RENEW_EVERY)

    def add(self) -> bool:
        path = os.path.join(self.folder, self.name())
        try:
            os.makedirs(self.folder, exist_ok=True)
            file = direct_io.create(path, direct=self.direct)
        except OSError:
            return False
        with self.wake:
            if not self.closed:
                self.ready.append((file, path))
                return True
        _discard(file, path)
        return True

    def renew(self) -> None:
        """Touch every spare (with the lock held: a spare's descriptor is closed, and
        its number may be reused, only after it has been taken)."""
        for file, _path in self.ready:
            with contextlib.suppress(OSError):
                os.utime(file.fd)

    def close(self) -> None:
        with self.wake:
            self.closed = True
            spares, self.ready = list(self.ready), collections.deque()
            self.wake.notify_all()
        for file, path in spares:
            _discard(file, path)


def _discard(file: direct_io.DirectFile, path: str) -> None:
    with contextlib.suppress(OSError):
        os.close(file.fd)
    with contextlib.suppress(OSError):
        os.unlink(path)
