"""Where a transfer's sealed objects live: the object store, under `transfers/<transfer>/`.

Routers hold no storage credentials: they reach the bucket through URLs pre-signed by
the bridge for one transfer (`PresignedObjects`, relay/enrolment.py).  The bridge, and
tests, may reach it directly (`S3Objects`).  Both speak this protocol; every object is
an envelope (relay/crypto.py), so the store only ever sees ciphertext.
"""

from __future__ import annotations

from typing import Protocol


class ObjectsUnavailable(ConnectionError):
    """The object store did not take or give an object (after bounded retries)."""


class MissingObject(LookupError):
    """No such object (never written, deleted behind the relay's back, or swept)."""


class TransferObjects(Protocol):
    """The objects of transfers; `transfer` is `<source>.<destination>.<id>`."""

    def put(self, transfer: str, name: str, data: bytes) -> None:
        """Store one object; durable in the object store when this returns."""

    def get(self, transfer: str, name: str) -> bytes:
        """One whole object; MissingObject or ObjectsUnavailable."""

    def delete_transfer(self, transfer: str) -> None:
        """Remove every object of a finished (or abandoned) transfer."""


def object_key(prefix: str, transfer: str, name: str) -> str:
    """The key of one object in the bucket (after the store's own prefix)."""
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    return f"{base}transfers/{transfer}/{name}"
