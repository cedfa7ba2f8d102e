"""The archive core: index + blob store behind one API (`Archive`).

Doors import from here only: the Archive, its results (`StoreResult` and its
`StoreOutcome`, `FindResult`, `InstanceRow`, `BulkData`), queries, and the query
vocabulary (levels, unique keys, default return keys, tag names); and the work item
store (`Archive.workitems`, a `WorkItems`; workitems.py lists its API) with its error
(`WorkItemError` with a `UpsStatus`), events (`WorkItemEvent`, `EventType`) and the
well-known subscription UIDs; Modality Performed Procedure Steps
(`Archive.performed_steps`, a `PerformedSteps`, with `PerformedStepError`).
"""

from isthmus.archive.archive import Archive
from isthmus.archive.bulk import BulkData, NoBulkData
from isthmus.archive.events import Event, EventBus
from isthmus.archive.index import InstanceRow
from isthmus.archive.integrity import Integrity
from isthmus.archive.keys import LEVELS, default_return_keys, resolve_tag, unique_key
from isthmus.archive.matching import FindResult, Query, QueryError, query_from_keywords
from isthmus.archive.outcome import StoreOutcome, StoreResult, stow_http_status
from isthmus.archive.performed import (
    MPPS_SOP_CLASS,
    PerformedStep,
    PerformedStepError,
    PerformedSteps,
)
from isthmus.archive.workitem_entry import EntryError, completion, scheduled_workitem
from isthmus.archive.workitem_events import (
    FILTERED_SUBSCRIPTION,
    GLOBAL_SUBSCRIPTION,
    EventType,
    Subscription,
    WorkItemEvent,
)
from isthmus.archive.workitem_rules import (
    CANCELED,
    COMPLETED,
    IN_PROGRESS,
    SCHEDULED,
    UPS_PUSH_SOP_CLASS,
    UpsStatus,
    WorkItemError,
)
from isthmus.archive.workitems import WorkItems

__all__ = [
    "CANCELED",
    "COMPLETED",
    "FILTERED_SUBSCRIPTION",
    "GLOBAL_SUBSCRIPTION",
    "IN_PROGRESS",
    "SCHEDULED",
    "UPS_PUSH_SOP_CLASS",
    "EntryError",
    "EventType",
    "completion",
    "scheduled_workitem",
    "Subscription",
    "UpsStatus",
    "WorkItemError",
    "WorkItemEvent",
    "WorkItems",
    "LEVELS",
    "MPPS_SOP_CLASS",
    "PerformedStep",
    "PerformedStepError",
    "PerformedSteps",
    "Archive",
    "BulkData",
    "Event",
    "EventBus",
    "FindResult",
    "InstanceRow",
    "Integrity",
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
