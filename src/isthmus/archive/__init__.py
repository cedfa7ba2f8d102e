"""The archive core: index + blob store behind one API (`Archive`).

Doors import from here only: the Archive, its results (`StoreResult` and its
`StoreOutcome`, `FindResult`, `InstanceRow`, `BulkData`), queries, the query
vocabulary (levels, unique keys, default return keys, tag names), and the persistent
jobs (`Jobs`, `JobWorker`, the kinds' `RunningJob`, `Retry`, `Fail`) with the
forwarding rules that queue them.
"""

from isthmus.archive.archive import Archive
from isthmus.archive.bulk import BulkData, NoBulkData
from isthmus.archive.events import Event, EventBus
from isthmus.archive.forwarding import Forwarding, ForwardRule, parse_rules, retention_kind
from isthmus.archive.index import InstanceRow
from isthmus.archive.job_worker import JobWorker
from isthmus.archive.jobs import Fail, Job, JobKind, Jobs, Retry, RetryPolicy, RunningJob
from isthmus.archive.keys import LEVELS, default_return_keys, resolve_tag, unique_key
from isthmus.archive.matching import FindResult, Query, QueryError, query_from_keywords
from isthmus.archive.outcome import StoreOutcome, StoreResult, stow_http_status

__all__ = [
    "LEVELS",
    "Archive",
    "BulkData",
    "Event",
    "EventBus",
    "Fail",
    "FindResult",
    "ForwardRule",
    "Forwarding",
    "InstanceRow",
    "Job",
    "JobKind",
    "JobWorker",
    "Jobs",
    "NoBulkData",
    "Query",
    "QueryError",
    "Retry",
    "RetryPolicy",
    "RunningJob",
    "StoreOutcome",
    "StoreResult",
    "default_return_keys",
    "parse_rules",
    "query_from_keywords",
    "resolve_tag",
    "retention_kind",
    "stow_http_status",
    "unique_key",
]
