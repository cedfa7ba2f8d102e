"""The blob store interface: what the archive needs from a place that keeps bytes.

Two implementations: files under a folder (`storage.FileBlobStore`, the default) and
objects in an S3-compatible bucket (`s3.S3BlobStore`); `storage.open_blob_store`
opens one from its URL.  Both keep the same promises: a key names a complete,
durable blob or nothing; a failure raises OSError (`BlobStoreUnavailable` when the
store cannot be reached, so the archive can tell a sender to try later).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Protocol

_KEY_RE = re.compile(r"^[0-9a-zA-Z][0-9a-zA-Z._-]*(/[0-9a-zA-Z][0-9a-zA-Z._-]*)*$")


class BlobStore(Protocol):
    """What the archive needs from a place that keeps bytes."""

    def put(self, key: str, chunks: Iterable[bytes | memoryview], sync: bool = True) -> int:
        """Write a complete blob; returns its size.  Replaces an existing key.

        With sync=False the blob is complete and visible but may not survive a power
        loss until `sync(key)` returns.
        """

    def sync(self, key: str) -> None:
        """Make a blob written with sync=False durable."""

    def open(self, key: str) -> BinaryIO:
        """Open a blob for reading (raises KeyError if absent)."""

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None:
        """Remove a blob; absent keys are ignored."""

    def keys(self) -> Iterator[str]:
        """Every complete blob's key."""

    def sizes(self) -> Iterator[tuple[str, int]]:
        """Every complete blob's key and size (one listing, for `Archive.check`)."""

    def local_path(self, key: str) -> str:
        """A path on this machine holding the blob (for libraries that want one);
        NoLocalPath from a store that keeps none."""

    def modified(self, key: str) -> float:
        """When the blob was written (POSIX time; raises KeyError if absent), so that
        `Archive.check` leaves alone what another process may be about to index."""

    def sweep(self, older_than: float = 0.0) -> int:
        """Remove leftovers of interrupted writes; returns how many.  A leftover another
        live process may still be writing is kept until it is `older_than` seconds old."""

    def close(self) -> None:
        """Release what the store holds open (the file store's spare files)."""

    def check(self) -> None:
        """Raise OSError when the store cannot be reached or written (readiness)."""


class BlobStoreUnavailable(OSError):
    """The store cannot be reached or keeps failing (after its bounded retries): a
    transient condition, reported to senders as out of resources (PS3.4 B.2.3 0xA700)."""


class NoLocalPath(OSError):
    """The store keeps no files on this machine (S3): read the blob with `open`."""


def check_key(key: str) -> str:
    """Refuse keys that could escape the store (``..``, absolute paths, odd characters)."""
    if not _KEY_RE.match(key) or ".." in key:
        raise ValueError(f"invalid blob key {key!r}")
    return key
