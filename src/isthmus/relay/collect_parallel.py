"""The first hop of a transfer over several associations at once.

A device sends the C-STORE sub-operations of one C-GET one after the other, each
answered only once the instance is durable in the transfer (an object PUT and a
JetStream PubAck: two round trips to the cloud services).  Far from those services,
that wait - not the bytes - bounds one association.  So a Study Root retrieve at
STUDY or SERIES level is first listed with C-FIND (PS3.4 C.4.1: SERIES level under
the study, then IMAGE level under each series, every key above the level single
valued) and its instances are retrieved with one IMAGE-level C-GET each, on WORKERS
associations in parallel.  Counts are added up and the final status is the honest
sum (PS3.4 C.4.3.1.3).  Anything else (Patient Root, IMAGE level, a study too small,
a device whose C-FIND fails) is one C-GET as before (collect.py).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset

from isthmus.config import Peer
from isthmus.dicom.status import (
    OUT_OF_RESOURCES_SUB_OPERATIONS,
    SUB_OPERATIONS_WITH_FAILURES,
    SUCCESS,
    Category,
    category,
)
from isthmus.dimse import scu
from isthmus.dimse.requestor import AssociationFailed
from isthmus.relay.collect import AddInstance, collect_by_get, open_device, store_handler

log = logging.getLogger(__name__)
# Associations with the device at once: each instance waits for its PUT and its PubAck,
# a round trip to the cloud services each, so over a WAN the source's pace is WORKERS
# instances per two round trips.  dcmqrscp allows 16 by default; an association a
# device with a lower limit refuses only leaves its share to the others.
WORKERS = 8
MIN_INSTANCES = 8  # fewer go in one C-GET


def collect(
    device: Peer,
    calling_aet: str,
    identifier: Dataset,
    model: str,
    add: AddInstance,
    expect: Any,
    cancel: threading.Event | None = None,
    skip: Callable[[str], bool] | None = None,
) -> scu.RetrieveReport:
    """Retrieve what `identifier` names into `add`, on WORKERS associations when it
    can be listed; `expect(n)` is told the number of instances (for "remaining").
    Listed instances for which `skip(SOP Instance UID)` holds are not retrieved (a
    transfer resumed after a restart sent them already: relay/resume.py); they count
    in `expect` but not in the report."""
    listed = _instances(device, calling_aet, identifier, model)
    if listed is None or len(listed) < MIN_INSTANCES:

        def progress(remaining: int, completed: int, failed: int, warning: int) -> None:
            expect(remaining + completed + failed + warning)

        return collect_by_get(device, calling_aet, identifier, model, add, progress, cancel)
    expect(len(listed))
    todo = [i for i in listed if skip is None or not skip(str(i.SOPInstanceUID))]
    work: queue.Queue[Dataset] = queue.Queue()
    for item in todo:
        work.put(item)
    reports: list[scu.RetrieveReport] = []
    errors: list[Exception] = []
    threads = [
        threading.Thread(
            target=_worker,
            args=(device, calling_aet, add, work, cancel, reports, errors),
            name=f"relay-get-{n}",
            daemon=True,
        )
        for n in range(min(WORKERS, len(todo)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors and (cancel is not None and cancel.is_set() or not reports):
        raise errors[0]
    return _total(reports, [item.SOPInstanceUID for item in _drain(work)], errors)


def _instances(
    device: Peer, calling_aet: str, identifier: Dataset, model: str
) -> list[Dataset] | None:
    """One IMAGE-level identifier per instance, or None when not listed here."""
    level = str(identifier.get("QueryRetrieveLevel", ""))
    study = identifier.get("StudyInstanceUID")
    if model != "STUDY" or level not in ("STUDY", "SERIES") or not isinstance(study, str):
        return None
    try:
        if level == "STUDY":
            series = [str(s.SeriesInstanceUID) for s in _find(device, calling_aet, study, None)]
        else:
            value = identifier.get("SeriesInstanceUID")
            series = [value] if isinstance(value, str) else [str(v) for v in value or []]
        listed = []
        for uid in series:
            for match in _find(device, calling_aet, study, uid):
                item = Dataset()
                item.QueryRetrieveLevel = "IMAGE"
                item.StudyInstanceUID = study
                item.SeriesInstanceUID = uid
                item.SOPInstanceUID = str(match.SOPInstanceUID)
                listed.append(item)
        return listed
    except (scu.SCUError, AttributeError) as exc:
        log.info("relay: %s not listed (%s): one C-GET", device, exc)
        return None


def _find(device: Peer, calling_aet: str, study: str, series: str | None) -> list[Dataset]:
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES" if series is None else "IMAGE"
    query.StudyInstanceUID = study
    query.SeriesInstanceUID = "" if series is None else series
    if series is not None:
        query.SOPInstanceUID = ""
    return scu.find(device, query, "STUDY", calling_aet)


def _worker(
    device: Peer,
    calling_aet: str,
    add: AddInstance,
    work: queue.Queue[Dataset],
    cancel: threading.Event | None,
    reports: list[scu.RetrieveReport],
    errors: list[Exception],
) -> None:
    """C-GET instances from `work` one by one on an association of its own."""
    try:
        requestor = open_device(device, "STUDY", calling_aet)
    except AssociationFailed as exc:
        errors.append(exc)
        return
    on_store = store_handler(add)
    try:
        while not (cancel is not None and cancel.is_set()):
            try:
                item = work.get_nowait()
            except queue.Empty:
                return
            try:
                report = requestor.get(item, on_store, cancel=cancel)
            except AssociationFailed as exc:
                work.put(item)  # not retrieved: counted failed at the end
                errors.append(exc)
                return
            if report.status != SUCCESS and not (report.completed or report.warning):
                report.failed = max(report.failed, 1)
                report.failed_uids = report.failed_uids or [str(item.SOPInstanceUID)]
            reports.append(report)
        errors.append(AssociationFailed("cancelled"))
    finally:
        requestor.release()


def _drain(work: queue.Queue[Dataset]) -> list[Dataset]:
    left = []
    while True:
        try:
            left.append(work.get_nowait())
        except queue.Empty:
            return left


def _total(
    reports: list[scu.RetrieveReport], never: list[str], errors: list[Exception]
) -> scu.RetrieveReport:
    """The sum of the C-GETs; instances never retrieved count failed."""
    total = scu.RetrieveReport()
    for report in reports:
        total.completed += report.completed
        total.failed += report.failed
        total.warning += report.warning
        total.failed_uids += report.failed_uids
    total.failed += len(never)
    total.failed_uids += never
    failures = [r.status for r in reports if category(r.status) is Category.FAILURE]
    if total.failed and not total.completed and not total.warning:
        total.status = failures[0] if failures else int(OUT_OF_RESOURCES_SUB_OPERATIONS)
    elif total.failed or total.warning:
        total.status = int(SUB_OPERATIONS_WITH_FAILURES)
    if errors:
        log.warning("relay: %d C-GET association(s) failed: %s", len(errors), errors[0])
    return total
