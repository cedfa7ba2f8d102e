"""The archive core: index + blob store behind one API (`Archive`)."""

from isthmus.archive.archive import Archive, StoreResult
from isthmus.archive.index import InstanceRow
from isthmus.archive.matching import FindResult, Query, QueryError, query_from_keywords

__all__ = [
    "Archive",
    "StoreResult",
    "InstanceRow",
    "Query",
    "QueryError",
    "FindResult",
    "query_from_keywords",
]
