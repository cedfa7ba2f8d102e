"""Pre-signed object-store URLs, scoped to one transfer (docs/relay.md, "Bridge API").

Routers hold no storage credentials (issue 11): for each object of a transfer they ask
the bridge, which signs a URL (S3 SigV4 query signing, `obstore.sign`) for exactly one
method and one key, `object_key("", transfer, name)` under the bridge's
``s3://bucket/prefix``, valid LIFETIME seconds.  Who may ask for what follows from the
transfer id `<source>.<destination>.<id>`: the source writes (PUT) and may remove
(DELETE) its objects, source and destination may read them (GET).  The store is built
as the archive's S3 blob store builds it (`isthmus.archive.s3.open_s3_blob_store`:
endpoint and credentials from the standard AWS variables).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

import obstore

from isthmus.archive.s3 import open_s3_blob_store
from isthmus.relay.bridge_state import Refused
from isthmus.relay.names import BadName, TransferId, check_object_name
from isthmus.relay.objects import object_key

LIFETIME = 300.0  # seconds a URL stays valid (a PUT must start within it)
MAX_NAMES = 1000  # URLs per request
Method = Literal["PUT", "GET", "DELETE"]
METHODS: tuple[Method, ...] = ("PUT", "GET", "DELETE")


class UrlSigner:
    """Signs URLs for the objects of transfers, and removes a finished transfer's."""

    def __init__(self, blob_url: str, lifetime: float = LIFETIME) -> None:
        if not blob_url.startswith("s3://"):
            raise ValueError(f"--blob-url {blob_url!r}: the bridge needs s3://bucket/prefix")
        self.blobs = open_s3_blob_store(blob_url)
        self.lifetime = lifetime

    def sign(self, site: str, transfer: str, names: list[str], method: str) -> dict[str, str]:
        """{name: URL} for `site`, if the transfer is its to use that way (else Refused)."""
        chosen = _method(method)
        tid = _transfer(transfer)
        allowed = {"PUT": {tid.source}, "DELETE": {tid.source}}.get(
            chosen, {tid.source, tid.destination}
        )
        if site not in allowed:
            raise Refused(403, f"site {site!r} may not {chosen} objects of transfer {transfer}")
        keys = [object_key("", transfer, _name(n)) for n in _names(names)]
        urls = obstore.sign(self.blobs.store, chosen, keys, timedelta(seconds=self.lifetime))
        return dict(zip(names, urls, strict=True))

    def delete_transfer(self, site: str, transfer: str) -> int:
        """Remove every object of `transfer` (its source or destination asks); the count."""
        tid = _transfer(transfer)
        if site not in {tid.source, tid.destination}:
            raise Refused(403, f"site {site!r} is not part of transfer {transfer}")
        prefix = object_key("", transfer, "")
        paths = [
            meta["path"]
            for batch in obstore.list(self.blobs.store, prefix=prefix, chunk_size=1000)
            for meta in batch
        ]
        if paths:
            obstore.delete(self.blobs.store, paths)
        return len(paths)


def _method(method: str) -> Method:
    for known in METHODS:
        if method == known:
            return known
    raise Refused(400, f"method must be one of {list(METHODS)}, not {method!r}")


def _transfer(transfer: object) -> TransferId:
    try:
        return TransferId.parse(transfer)  # type: ignore[arg-type]
    except BadName as exc:
        raise Refused(400, str(exc)) from None


def _names(names: object) -> list[str]:
    if not isinstance(names, list) or not names or len(names) > MAX_NAMES:
        raise Refused(400, f"names must be a list of 1 to {MAX_NAMES} object names")
    return names


def _name(name: object) -> str:
    try:
        return check_object_name(name)  # type: ignore[arg-type]
    except BadName as exc:
        raise Refused(400, str(exc)) from None
