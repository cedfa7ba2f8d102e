"""Modality Performed Procedure Step SCP (PS3.4 Annex F) with pynetdicom as MPPS SCU.

The step is created IN PROGRESS, linked to the work item whose request it names,
completed once; the F.7.2 rules give their statuses.  Both backends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from isthmus.archive import scheduled_workitem
from isthmus.server import Node

from .support import mpps_in_progress


@pytest.fixture
def mpps(module_node: Node) -> Iterator[Any]:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", module_node.dicom_port, ae_title=module_node.settings.aet)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        assoc.release()


def _scheduled(node: Node) -> tuple[str, str, str]:
    """A work item of a new request: (work item UID, study UID, accession)."""
    study, accession = str(generate_uid()), "A" + generate_uid()[-10:]
    entry = {
        "patient_id": "P1",
        "patient_name": "DOE^JANE",
        "accession": accession,
        "requested_procedure_id": "RP1",
        "procedure": "CT CHEST",
        "modality": "CT",
        "station_aet": "MODALITY",
        "start": "202601020930",
        "study_uid": study,
    }
    created = node.archive.workitems.create(scheduled_workitem(entry))
    return created.uid, study, accession


def _completed(status: str = "COMPLETED", series: bool = True) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20260102"
    ds.PerformedProcedureStepEndTime = "0950"
    item = Dataset()
    item.SeriesInstanceUID = generate_uid()
    item.PerformingPhysicianName = ""
    item.ProtocolName = "CHEST"
    item.OperatorsName = ""
    item.SeriesDescription = ""
    item.RetrieveAETitle = ""
    item.ReferencedImageSequence = []
    ds.PerformedSeriesSequence = [item] if series else []
    return ds


def _create(assoc: Any, ds: Dataset, uid: str | None = None) -> tuple[int, str]:
    uid = uid or str(generate_uid())
    status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
    return int(status.Status), uid


def _set(assoc: Any, ds: Dataset, uid: str) -> Dataset:
    status, _ = assoc.send_n_set(ds, ModalityPerformedProcedureStep, uid)
    return status


def test_step_is_created_linked_to_its_work_item_and_completed_once(
    module_node: Node, mpps: Any
) -> None:
    workitem, study, accession = _scheduled(module_node)
    status, uid = _create(mpps, mpps_in_progress(study, accession))
    assert status == 0x0000
    steps = module_node.archive.performed_steps
    assert steps.get(uid).status == "IN PROGRESS"
    assert [s.uid for s in steps.for_workitem(workitem)] == [uid]
    assert _set(mpps, _completed(), uid).Status == 0x0000
    assert steps.get(uid).status == "COMPLETED"
    again = _set(mpps, _completed("DISCONTINUED"), uid)
    assert again.Status == 0x0110
    assert again.ErrorID == 0xA710  # may no longer be updated (F.7.2.2)
    assert steps.get(uid).status == "COMPLETED"


def test_step_naming_no_known_request_is_kept_unlinked(module_node: Node, mpps: Any) -> None:
    status, uid = _create(mpps, mpps_in_progress(str(generate_uid()), "NOSUCH"))
    assert status == 0x0000
    assert module_node.archive.performed_steps.get(uid).workitem_uid is None


def test_create_refusals_have_the_standards_statuses(module_node: Node, mpps: Any) -> None:
    _w, study, accession = _scheduled(module_node)
    finished = mpps_in_progress(study, accession)
    finished.PerformedProcedureStepStatus = "COMPLETED"
    assert _create(mpps, finished)[0] == 0x0106  # begins IN PROGRESS only
    no_modality = mpps_in_progress(study, accession)
    del no_modality.Modality
    assert _create(mpps, no_modality)[0] == 0x0120  # missing attribute
    empty_id = mpps_in_progress(study, accession)
    empty_id.PerformedProcedureStepID = ""
    assert _create(mpps, empty_id)[0] == 0x0121  # missing attribute value
    status, uid = _create(mpps, mpps_in_progress(study, accession))
    assert status == 0x0000
    assert _create(mpps, mpps_in_progress(study, accession), uid)[0] == 0x0111  # duplicate


def test_set_refusals_have_the_standards_statuses(module_node: Node, mpps: Any) -> None:
    assert _set(mpps, _completed(), str(generate_uid())).Status == 0x0112  # no such instance
    _w, study, accession = _scheduled(module_node)
    _status, uid = _create(mpps, mpps_in_progress(study, accession))
    assert _set(mpps, _completed(series=False), uid).Status == 0x0110  # no performed series
    moved = Dataset()
    moved.Modality = "MR"
    assert _set(mpps, moved, uid).Status == 0x0106  # not allowed in N-SET
    bad = Dataset()
    bad.PerformedProcedureStepStatus = "PAUSED"
    assert _set(mpps, bad, uid).Status == 0x0106
    assert module_node.archive.performed_steps.get(uid).status == "IN PROGRESS"
