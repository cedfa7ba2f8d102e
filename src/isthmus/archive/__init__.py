"""The archive core: index + blob store behind one API (`Archive`).

Doors import from here only: the Archive, its activity (the facts doors publish for the
audit trail and the metrics, activity.py), its results (`StoreResult` and its
`StoreOutcome`, `Staged` for the two-step store of a request of many instances, `FindResult`, `InstanceRow`, `BulkData`, `BlobStoreUnavailable`), queries, and the query
vocabulary (levels, unique keys, default return keys, tag names); the
de-identification options (`DeidentificationOptions`, isthmus.deid) that
`Archive.deidentify*` take; the work item store (`Archive.workitems`, a `WorkItems`; workitems.py lists its API)
with its error (`WorkItemError` with a `UpsStatus`), events (`WorkItemEvent`,
`EventType`) and the well-known subscription UIDs; Modality Performed Procedure Steps
(`Archive.performed_steps`, a `PerformedSteps`, with `PerformedStepError`); the relay's
transfers received (`Archive.relay_transfers`, a `RelayTransfers`, with its rows
`RelayTransfer` and `RelayDelivery`); the share links of peer-to-peer sharing
(`Archive.shares`, a `Shares`, with `Share` and `ShareRefused`); the persistent jobs (`Jobs`,
`JobWorker`, the kinds' `RunningJob`, `Retry`, `Fail`) with the forwarding rules that
queue them.
"""

from isthmus.archive.activity import Activity, Transfer
from isthmus.archive.archive import Archive, Staged
from isthmus.archive.blob import BlobStoreUnavailable
from isthmus.archive.bulk import BulkData, NoBulkData
from isthmus.archive.deidentify import DeidentifiedStudies
from isthmus.archive.events import Event, EventBus
from isthmus.archive.forwarding import Forwarding, ForwardRule, parse_rules, retention_kind
from isthmus.archive.index import InstanceRow
from isthmus.archive.integrity import Integrity
from isthmus.archive.job_worker import JobWorker
from isthmus.archive.jobs import Fail, Job, JobKind, Jobs, Retry, RetryPolicy, RunningJob
from isthmus.archive.keys import LEVELS, default_return_keys, resolve_tag, unique_key
from isthmus.archive.matching import FindResult, Query, QueryError, query_from_keywords
from isthmus.archive.outcome import StoreOutcome, StoreResult, StoreWarning, stow_http_status
from isthmus.archive.performed import (
    MPPS_SOP_CLASS,
    PerformedStep,
    PerformedStepError,
    PerformedSteps,
)
from isthmus.archive.relay_transfers import RelayDelivery, RelayTransfer, RelayTransfers
from isthmus.archive.shares import Share, ShareRefused, Shares
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
from isthmus.deid import DeidentificationOptions, DeidentificationOptionsError, Excluded

__all__ = [
    "Share",
    "ShareRefused",
    "Shares",
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
    "Activity",
    "MPPS_SOP_CLASS",
    "PerformedStep",
    "PerformedStepError",
    "PerformedSteps",
    "Archive",
    "BlobStoreUnavailable",
    "BulkData",
    "DeidentifiedStudies",
    "Event",
    "EventBus",
    "Excluded",
    "Fail",
    "FindResult",
    "ForwardRule",
    "Forwarding",
    "InstanceRow",
    "Job",
    "JobKind",
    "JobWorker",
    "Jobs",
    "Integrity",
    "NoBulkData",
    "DeidentificationOptions",
    "DeidentificationOptionsError",
    "Query",
    "QueryError",
    "RelayDelivery",
    "RelayTransfer",
    "RelayTransfers",
    "Retry",
    "RetryPolicy",
    "RunningJob",
    "StoreOutcome",
    "Staged",
    "StoreResult",
    "StoreWarning",
    "Transfer",
    "default_return_keys",
    "parse_rules",
    "query_from_keywords",
    "resolve_tag",
    "retention_kind",
    "stow_http_status",
    "unique_key",
]
