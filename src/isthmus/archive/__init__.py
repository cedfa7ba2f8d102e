"""The archive core: index + blob store behind one API (`Archive`).

Doors import from here only: the Archive, its results (`StoreResult` and its
`StoreOutcome`, `FindResult`, `InstanceRow`, `BulkData`, `BlobStoreUnavailable`), queries, and the query
vocabulary (levels, unique keys, default return keys, tag names).
"""

from isthmus.archive.archive import Archive
from isthmus.archive.blob import BlobStoreUnavailable
from isthmus.archive.bulk import BulkData, NoBulkData
from isthmus.archive.events import Event, EventBus
from isthmus.archive.index import InstanceRow
from isthmus.archive.keys import LEVELS, default_return_keys, resolve_tag, unique_key
from isthmus.archive.matching import FindResult, Query, QueryError, query_from_keywords
from isthmus.archive.outcome import StoreOutcome, StoreResult, stow_http_status

__all__ = [
    "LEVELS",
    "Archive",
    "BlobStoreUnavailable",
    "BulkData",
    "Event",
    "EventBus",
    "FindResult",
    "InstanceRow",
    "NoBulkData",
    "Query",
    "QueryError",
    "StoreOutcome",
    "StoreResult",
    "default_return_keys",
    "query_from_keywords",
    "resolve_tag",
    "stow_http_status",
    "unique_key",
]
