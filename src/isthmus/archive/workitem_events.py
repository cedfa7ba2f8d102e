"""UPS event reports and who receives them (PS3.4 CC.2.3, CC.2.4, Table CC.2.4-1).

`WorkItemEvent` is one event report for one subscriber AE; `report()` gives the DICOM
JSON an Open Event Channel sends (PS3.18 8.10.5: the N-EVENT-REPORT attributes of
PS3.7 Table 10.3-1 plus the event information).  `recipients` decides, from the
subscription rows, which AE titles hear about a work item:

- a subscription to that work item (``active``), unless it was unsubscribed from
  (a row with ``active`` False overrides a global subscription, CC.2.3.2);
- a global subscription (UID ``1.2.840.10008.5.1.4.34.5``): every work item, existing
  and future; once suspended only the items that existed then (``suspended_after``);
- a filtered global subscription (``…34.5.1``): the same, for the work items whose
  current attributes match its filter (the query matchers over the stored dataset,
  evaluated when the event happens).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from isthmus.archive import workitem_rules as r

GLOBAL_SUBSCRIPTION = "1.2.840.10008.5.1.4.34.5"
FILTERED_SUBSCRIPTION = "1.2.840.10008.5.1.4.34.5.1"
N_EVENT_REPORT = 0x0100


class EventType(IntEnum):
    """Event Type ID (0000,1002) of UPS event reports (PS3.4 Table CC.2.4-1)."""

    STATE_REPORT = 1
    CANCEL_REQUESTED = 2
    PROGRESS_REPORT = 3
    SCP_STATUS_CHANGE = 4
    ASSIGNED = 5


@dataclass(frozen=True)
class WorkItemEvent:
    """One event report for one subscriber (`aet`), as logged in the index."""

    id: int
    aet: str
    workitem_uid: str
    event_type: EventType
    info: dict[str, Any]

    def report(self) -> dict[str, Any]:
        """The Event Report as DICOM JSON (PS3.18 8.10.5.1.1, PS3.7 Table 10.3-1)."""
        return {
            "00000002": r.element("UI", r.UPS_PUSH_SOP_CLASS),
            "00000100": r.element("US", N_EVENT_REPORT),
            "00000110": r.element("US", self.id % 0x10000),
            "00001000": r.element("UI", self.workitem_uid),
            "00001002": r.element("US", int(self.event_type)),
            **dict(sorted(self.info.items())),
        }

    def payload(self) -> dict[str, Any]:
        """The bus payload (JSON) of topic ``ups.<uid>``."""
        return {
            "id": self.id,
            "aet": self.aet,
            "uid": self.workitem_uid,
            "type": int(self.event_type),
            "info": self.info,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> WorkItemEvent:
        return cls(
            int(payload["id"]),
            str(payload["aet"]),
            str(payload["uid"]),
            EventType(int(payload["type"])),
            dict(payload["info"]),
        )


# ------------------------------------------------------------- event information
def state_report(ds: Mapping[str, Any]) -> dict[str, Any]:
    """UPS State Report: state, input readiness, and why it was canceled (if it was)."""
    info = {
        r.PROCEDURE_STEP_STATE: ds.get(r.PROCEDURE_STEP_STATE, r.element("CS")),
        r.INPUT_READINESS: ds.get(r.INPUT_READINESS, r.element("CS")),
    }
    progress = r.items(ds, r.PROGRESS_INFORMATION)
    if r.value(ds, r.PROCEDURE_STEP_STATE) == r.CANCELED and progress:
        for tag in (r.REASON_FOR_CANCELLATION, r.DISCONTINUATION_REASONS):
            if tag in progress[0]:
                info[tag] = progress[0][tag]
    return info


def progress_report(ds: Mapping[str, Any]) -> dict[str, Any]:
    return {r.PROGRESS_INFORMATION: ds.get(r.PROGRESS_INFORMATION, r.element("SQ"))}


def assigned(ds: Mapping[str, Any]) -> dict[str, Any]:
    return {
        r.STATION_NAMES: ds.get(r.STATION_NAMES, r.element("SQ")),
        r.HUMAN_PERFORMERS: ds.get(r.HUMAN_PERFORMERS, r.element("SQ")),
        r.INPUT_READINESS: ds.get(r.INPUT_READINESS, r.element("CS")),
    }


_CANCEL_INFO = (r.REASON_FOR_CANCELLATION, r.DISCONTINUATION_REASONS, "0074100A", "0074100C")


def cancel_requested(request: Mapping[str, Any], requesting_aet: str | None) -> dict[str, Any]:
    """UPS Cancel Requested: who asked, why, and whom to contact (CC.2.2.2)."""
    info = {tag: request[tag] for tag in _CANCEL_INFO if tag in request}
    if requesting_aet:
        info["00741236"] = r.element("AE", requesting_aet)
    return info


def update_events(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> list[tuple[EventType, dict[str, Any]]]:
    """The events an update causes (CC.2.4.2): progress, assignment, readiness."""
    out: list[tuple[EventType, dict[str, Any]]] = []
    if before.get(r.INPUT_READINESS) != after.get(r.INPUT_READINESS):
        out.append((EventType.STATE_REPORT, state_report(after)))
    if before.get(r.PROGRESS_INFORMATION) != after.get(r.PROGRESS_INFORMATION):
        out.append((EventType.PROGRESS_REPORT, progress_report(after)))
    if any(before.get(t) != after.get(t) for t in (r.STATION_NAMES, r.HUMAN_PERFORMERS)):
        out.append((EventType.ASSIGNED, assigned(after)))
    return out


# ------------------------------------------------------------------ recipients
@dataclass(frozen=True)
class Subscription:
    aet: str
    workitem_uid: str
    active: bool
    deletion_lock: bool
    filter: str | None
    suspended_after: int | None

    @property
    def is_global(self) -> bool:
        return self.workitem_uid in (GLOBAL_SUBSCRIPTION, FILTERED_SUBSCRIPTION)


def recipients(
    subscriptions: Iterable[Subscription], workitem_pk: int, uid: str, ds: Mapping[str, Any]
) -> list[str]:
    """AE titles subscribed to the work item (`uid`, row `workitem_pk`) now."""
    chosen: dict[str, bool] = {}
    for sub in subscriptions:
        if sub.workitem_uid == uid:
            chosen[sub.aet] = sub.active  # an explicit row decides for its item
    for sub in subscriptions:
        if not sub.is_global or sub.aet in chosen:
            continue
        if sub.suspended_after is not None and workitem_pk > sub.suspended_after:
            continue
        if sub.filter is not None and not filter_matches(sub.filter, ds):
            continue
        chosen[sub.aet] = True
    return sorted(aet for aet, yes in chosen.items() if yes)


def filter_matches(filter_json: str, ds: Mapping[str, Any]) -> bool:
    from isthmus.archive.workitem_search import compile_keys, matches

    return matches(ds, compile_keys(json.loads(filter_json)))
