"""Modality Performed Procedure Steps (MPPS, PS3.4 Annex F) in the index.

`Archive.performed_steps` is a `PerformedSteps`.  The MPPS door (DIMSE N-CREATE /
N-SET) calls it with DICOM JSON and maps `PerformedStepError.status` (a DIMSE status)
to its response; the rules of PS3.4 F.7.2 run here:

- N-CREATE (F.7.2.1): the step begins IN PROGRESS (0x0106 otherwise); the attributes
  of Table F.7.2-1 with N-CREATE type 1 must have a value (0x0120 missing attribute,
  0x0121 missing value); a UID used before is 0x0111.
- N-SET (F.7.2.2): an unknown step is 0x0112; once COMPLETED or DISCONTINUED a step
  may no longer be updated (0x0110, Error ID 0xA710); attributes Table F.7.2-1 marks
  "Not allowed" for N-SET are refused (0x0106); the status may only become IN
  PROGRESS, COMPLETED or DISCONTINUED (0x0106); and a step becomes COMPLETED or
  DISCONTINUED only with its end date and time (and, for COMPLETED, the Performed
  Series Sequence) present (0x0110: F.7.2.2.2 leaves the code to the SCP).

A step is linked to the work item it performs (PS3.4 Annex CC, the Modality Worklist
mapping in workitems.py): the Scheduled Step Attributes Sequence names the request by
Study Instance UID, Accession Number and Requested Procedure ID, which the MWL door
answers from the work item's Referenced Request Sequence; one matching work item is
the link (`workitem_uid`), none or several leave the step unlinked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from isthmus.archive import index as idx
from isthmus.archive.matching import QueryError
from isthmus.archive.workitem_rules import element, items, value
from isthmus.archive.workitems import WorkItems

log = logging.getLogger(__name__)

IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
MAY_NO_LONGER_BE_UPDATED = 0xA710  # Error ID of PS3.4 F.7.2.2 (status 0x0110)

STATUS = "00400252"  # Performed Procedure Step Status
SOP_INSTANCE_UID = "00080018"
SCHEDULED_STEP_ATTRIBUTES = "00400270"
STUDY_INSTANCE_UID = "0020000D"
ACCESSION_NUMBER = "00080050"
REQUESTED_PROCEDURE_ID = "00401001"
END_DATE, END_TIME = "00400250", "00400251"
PERFORMED_SERIES = "00400340"

# Table F.7.2-1: N-CREATE type 1 (must have a value).
_CREATE_TYPE_1 = {
    SCHEDULED_STEP_ATTRIBUTES: "Scheduled Step Attributes Sequence",
    "00400253": "Performed Procedure Step ID",
    "00400241": "Performed Station AE Title",
    "00400244": "Performed Procedure Step Start Date",
    "00400245": "Performed Procedure Step Start Time",
    STATUS: "Performed Procedure Step Status",
    "00080060": "Modality",
}
# Table F.7.2-1: attributes N-SET may not change ("Not allowed").
_NOT_SETTABLE = {
    SOP_INSTANCE_UID: "SOP Instance UID",
    "00080016": "SOP Class UID",
    SCHEDULED_STEP_ATTRIBUTES: "Scheduled Step Attributes Sequence",
    "00100010": "Patient's Name",
    "00100020": "Patient ID",
    "00100030": "Patient's Birth Date",
    "00100040": "Patient's Sex",
    "00400253": "Performed Procedure Step ID",
    "00400241": "Performed Station AE Title",
    "00400244": "Performed Procedure Step Start Date",
    "00400245": "Performed Procedure Step Start Time",
    "00080060": "Modality",
    "00200010": "Study ID",
}
_FINAL_REQUIRED = {
    COMPLETED: {END_DATE: "End Date", END_TIME: "End Time", PERFORMED_SERIES: "Performed Series"},
    DISCONTINUED: {END_DATE: "End Date", END_TIME: "End Time"},
}


class PerformedStepError(Exception):
    """A refused MPPS operation: its DIMSE status (and Error ID), and why in words."""

    def __init__(self, status: int, reason: str, error_id: int | None = None) -> None:
        super().__init__(f"0x{status:04X}: {reason}")
        self.status, self.reason, self.error_id = status, reason, error_id


@dataclass
class PerformedStep:
    uid: str
    status: str
    workitem_uid: str | None
    dataset: dict[str, Any]


class PerformedSteps:
    """MPPS instances in the archive's index, linked to work items."""

    def __init__(self, engine: Engine, workitems: WorkItems) -> None:
        self.engine = engine
        self.workitems = workitems

    def create(
        self, uid: str, dataset: Mapping[str, Any], source_aet: str | None = None
    ) -> PerformedStep:
        """N-CREATE (F.7.2.1): a new IN PROGRESS step, linked to its work item if found."""
        ds = {k: v for k, v in dataset.items() if k != SOP_INSTANCE_UID}
        for tag, name in _CREATE_TYPE_1.items():
            if tag not in ds:
                raise PerformedStepError(0x0120, f"{name} ({tag}) is missing")
            if not (ds[tag] or {}).get("Value"):
                raise PerformedStepError(0x0121, f"{name} ({tag}) has no value")
        status = str(value(ds, STATUS)).strip()
        if status != IN_PROGRESS:
            raise PerformedStepError(0x0106, f"a step begins IN PROGRESS, not {status!r}")
        ds[SOP_INSTANCE_UID] = element("UI", uid)
        workitem = self._workitem_for(ds)
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    idx.performed_step.insert().values(
                        sop_instance_uid=uid,
                        status=status,
                        version=1,
                        workitem_uid=workitem,
                        source_aet=source_aet,
                        metadata=json.dumps(ds, sort_keys=True),
                        created_at=now,
                        updated_at=now,
                    )
                )
        except sa.exc.IntegrityError:
            raise PerformedStepError(0x0111, f"performed procedure step {uid} exists") from None
        return PerformedStep(uid, status, workitem, ds)

    def update(self, uid: str, changes: Mapping[str, Any]) -> PerformedStep:
        """N-SET (F.7.2.2): replace the given attributes of an IN PROGRESS step.  The UPDATE
        is guarded by the row's version: when two N-SETs race, the later one is checked
        again against what the first wrote (a finished step: 0x0110)."""
        for tag, name in _NOT_SETTABLE.items():
            if tag in changes:
                raise PerformedStepError(0x0106, f"{name} ({tag}) may not be set by N-SET")
        for _ in range(20):
            with self.engine.begin() as conn:
                step, version = self._get(conn, uid)
                ds = self._checked(step, changes)
                status = str(value(ds, STATUS)).strip()
                t = idx.performed_step.c
                done = conn.execute(
                    idx.performed_step.update()
                    .where(t.sop_instance_uid == uid, t.version == version)
                    .values(
                        status=status,
                        version=version + 1,
                        metadata=json.dumps(ds, sort_keys=True),
                        updated_at=datetime.now(UTC),
                    )
                )
                if done.rowcount == 1:
                    return PerformedStep(uid, status, step.workitem_uid, ds)
        raise PerformedStepError(0x0110, f"performed procedure step {uid} changes too often")

    @staticmethod
    def _checked(step: PerformedStep, changes: Mapping[str, Any]) -> dict[str, Any]:
        """The step's dataset after `changes`, if F.7.2.2 allows them."""
        if step.status != IN_PROGRESS:
            raise PerformedStepError(
                0x0110,
                f"the step is {step.status}: it may no longer be updated",
                MAY_NO_LONGER_BE_UPDATED,
            )
        ds = {**step.dataset, **changes}
        status = str(value(ds, STATUS) or "").strip()
        if status not in (IN_PROGRESS, COMPLETED, DISCONTINUED):
            raise PerformedStepError(0x0106, f"{status!r} is not a step status")
        for tag, name in _FINAL_REQUIRED.get(status, {}).items():
            if not (ds.get(tag) or {}).get("Value"):
                raise PerformedStepError(0x0110, f"{status} needs the {name} ({tag})")
        return ds

    def get(self, uid: str) -> PerformedStep:
        with self.engine.connect() as conn:
            return self._get(conn, uid)[0]

    def for_workitem(self, workitem_uid: str) -> list[PerformedStep]:
        """The steps that perform a work item, oldest first."""
        t = idx.performed_step.c
        query = (
            sa.select(t.sop_instance_uid, t.status, t.workitem_uid, t.metadata)
            .where(t.workitem_uid == workitem_uid)
            .order_by(t.pk)
        )
        with self.engine.connect() as conn:
            return [PerformedStep(u, s, w, json.loads(m)) for u, s, w, m in conn.execute(query)]

    def _get(self, conn: sa.Connection, uid: str) -> tuple[PerformedStep, int]:
        t = idx.performed_step.c
        row = conn.execute(
            sa.select(t.status, t.workitem_uid, t.metadata, t.version).where(
                t.sop_instance_uid == uid
            )
        ).first()
        if row is None:
            raise PerformedStepError(0x0112, f"no performed procedure step {uid}")
        return PerformedStep(uid, row[0], row[1], json.loads(row[2])), row[3]

    def _workitem_for(self, ds: Mapping[str, Any]) -> str | None:
        """The one work item whose request the first scheduled step names, or None."""
        steps = items(ds, SCHEDULED_STEP_ATTRIBUTES)
        if not steps:
            return None
        step = steps[0]
        keys = {}
        for tag, keyword in (
            (STUDY_INSTANCE_UID, "StudyInstanceUID"),
            (ACCESSION_NUMBER, "AccessionNumber"),
            (REQUESTED_PROCEDURE_ID, "RequestedProcedureID"),
        ):
            given = value(step, tag)
            if given:
                keys[f"ReferencedRequestSequence.{keyword}"] = str(given)
        if not keys:
            return None
        try:
            found = self.workitems.search(keys, limit=2)
        except QueryError as exc:
            log.info("MPPS: cannot look for its work item: %s", exc)
            return None
        if len(found) != 1:
            log.info("MPPS: %d work items match its scheduled step; not linked", len(found))
            return None
        uid = value(found[0], SOP_INSTANCE_UID)
        return str(uid) if uid else None
