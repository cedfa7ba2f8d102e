"""Transfer objects straight in an S3 bucket, with credentials (the bridge, and tests).

Routers use pre-signed URLs instead (docs/relay.md); this is the other implementation
of `TransferObjects`, on the archive's S3 client (`isthmus.archive.s3`: endpoint,
region and credentials from the standard AWS variables; requests time out and are
retried with backoff for a bounded time, ``?retry_timeout=…&timeout=…`` in the URL).
Every object is one PUT: S3 shows it whole or not at all, and durable once answered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import obstore
from obstore.exceptions import BaseError, NotFoundError

from isthmus.archive.s3 import open_s3_blob_store
from isthmus.relay.objects import MissingObject, ObjectsUnavailable, object_key

log = logging.getLogger(__name__)


class S3Objects:
    """`TransferObjects` in ``s3://bucket/prefix`` (objects at ``prefix/transfers/…``)."""

    def __init__(self, blob_url: str) -> None:
        self.blobs = open_s3_blob_store(blob_url)

    def __repr__(self) -> str:
        return f"S3Objects({self.blobs!r})"

    def put(self, transfer: str, name: str, data: bytes) -> None:
        key = object_key("", transfer, name)
        with _errors(f"PUT {key}"):
            self.blobs.put(key, [data])

    def get(self, transfer: str, name: str) -> bytes:
        key = object_key("", transfer, name)
        with _errors(f"GET {key}"):
            return bytes(obstore.get(self.blobs.store, key).bytes())

    def names(self, transfer: str) -> list[str]:
        """The names of a transfer's objects (tests, housekeeping)."""
        prefix = object_key("", transfer, "")
        with _errors(f"LIST {prefix}"):
            return sorted(
                meta["path"][len(prefix) :]
                for batch in obstore.list(self.blobs.store, prefix=prefix, chunk_size=1000)
                for meta in batch
            )

    def delete_transfer(self, transfer: str) -> None:
        """Delete every object of the transfer; what S3 refuses now stays (logged)."""
        try:
            names = self.names(transfer)
            with _errors(f"DELETE transfers/{transfer}"):
                for name in names:
                    obstore.delete(self.blobs.store, object_key("", transfer, name))
        except ObjectsUnavailable as exc:
            log.warning("objects of transfer %s not deleted: %s", transfer, exc)


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """Not found → MissingObject; anything else, after the client's bounded retries →
    ObjectsUnavailable, saying what failed."""
    try:
        yield
    except (FileNotFoundError, NotFoundError, KeyError):
        raise MissingObject(f"S3 {what}: no such object") from None
    except (BaseError, OSError) as exc:
        summary = str(exc).split("\n", 1)[0][:300]
        raise ObjectsUnavailable(f"S3 {what} failed: {summary}") from exc
