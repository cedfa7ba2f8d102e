"""DIMSE-N plumbing of the acceptor and the service table (PS3.7 10.3), with pynetdicom
and hand-made messages: what is not served gets the standard's answer, responses the
archive did not wait for are dropped, and the workflow services obey access control."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import (
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    StorageCommitmentPushModel,
    UnifiedProcedureStepPush,
    Verification,
)

from isthmus.dicom.ul import pdata, transport
from isthmus.dimse import messages as msg
from isthmus.dimse.requestor import Requestor
from isthmus.server import Node

from .support import peer

WELL_KNOWN = "1.2.840.10008.1.20.1.1"
IMPLICIT = "1.2.840.10008.1.2"


def _associate(node: Node, *sop_classes: str, aet: str = "NSCU") -> Any:
    ae = AE(ae_title=aet)
    for sop_class in sop_classes:
        ae.add_requested_context(sop_class)
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.settings.aet)
    assert assoc.is_established
    return assoc


def test_operations_a_sop_class_does_not_define_are_unrecognized(dimse_node: Node) -> None:
    assoc = _associate(dimse_node, UnifiedProcedureStepPush, StorageCommitmentPushModel)
    try:
        status = assoc.send_n_delete(UnifiedProcedureStepPush, str(generate_uid()))
        assert status.Status == 0x0211
        report = Dataset()
        report.TransactionUID = generate_uid()
        status, _ = assoc.send_n_event_report(report, 1, StorageCommitmentPushModel, WELL_KNOWN)
        assert status.Status == 0x0211  # we send event reports, we do not take them
    finally:
        assoc.release()


def test_contexts_of_unknown_sop_classes_are_refused_and_the_rest_accepted(
    dimse_node: Node,
) -> None:
    ae = AE(ae_title="NSCU")
    ae.add_requested_context("1.2.826.0.1.3680043.10.1386.99.1")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", dimse_node.dicom_port, ae_title=dimse_node.settings.aet)
    try:
        assert [cx.abstract_syntax for cx in assoc.rejected_contexts] == [
            "1.2.826.0.1.3680043.10.1386.99.1"
        ]
        assert [cx.abstract_syntax for cx in assoc.accepted_contexts] == [
            ModalityPerformedProcedureStep
        ]
    finally:
        assoc.release()


def test_a_response_nobody_waits_for_is_dropped_and_the_association_goes_on(
    dimse_node: Node,
) -> None:
    requestor = Requestor(peer(dimse_node), "NSCU", [(Verification, [IMPLICIT])]).open()
    try:
        assert requestor.sock is not None
        stray = msg.encode_command(
            {
                msg.AFFECTED_SOP_CLASS: Verification,
                msg.COMMAND_FIELD: msg.N_EVENT_REPORT_RSP,
                msg.MESSAGE_ID_RESPONDED: 7,
                msg.DATASET_TYPE: msg.NO_DATASET,
                msg.STATUS: 0,
            }
        )
        echo = msg.encode_command(
            {
                msg.AFFECTED_SOP_CLASS: Verification,
                msg.COMMAND_FIELD: msg.C_ECHO_RQ,
                msg.MESSAGE_ID: 8,
                msg.DATASET_TYPE: msg.NO_DATASET,
            }
        )
        transport.send_all(
            requestor.sock,
            [
                *pdata.fragment(1, stray, True, requestor.max_pdu),
                *pdata.fragment(1, echo, True, requestor.max_pdu),
            ],
        )
        _kind, body = transport.read_pdu(requestor.sock)
        ((_context, _header, payload),) = pdata.split_pdvs(memoryview(body))
        reply = msg.decode_command(payload)
        assert msg.us(reply, msg.COMMAND_FIELD) == msg.C_ECHO_RSP  # the first answer: the echo's
        assert msg.us(reply, msg.MESSAGE_ID_RESPONDED) == 8
    finally:
        requestor.release()


@pytest.mark.parametrize(
    ("sop_class", "send"),
    [
        pytest.param(
            StorageCommitmentPushModel,
            lambda a: a.send_n_action(_commit(), 1, StorageCommitmentPushModel, WELL_KNOWN)[0],
            id="storage-commitment",
        ),
        pytest.param(
            ModalityPerformedProcedureStep,
            lambda a: a.send_n_create(
                _named(), ModalityPerformedProcedureStep, str(generate_uid())
            )[0],
            id="mpps",
        ),
        pytest.param(
            UnifiedProcedureStepPush,
            lambda a: a.send_n_create(_named(), UnifiedProcedureStepPush, str(generate_uid()))[0],
            id="ups",
        ),
        pytest.param(
            ModalityWorklistInformationFind,
            lambda a: next(iter(a.send_c_find(_named(), ModalityWorklistInformationFind)))[0],
            id="worklist",
        ),
    ],
)
def test_workflow_services_refuse_unknown_callers_when_known_is_required(
    start_node: Callable[..., Node], sop_class: str, send: Callable[[Any], Dataset]
) -> None:
    rules = {"commit": "known", "mpps": "known", "ups": "known", "worklist": "known"}
    node = start_node(access=rules)
    assoc = _associate(node, sop_class, aet="STRANGER")
    try:
        assert send(assoc).Status == 0x0124
    finally:
        assoc.release()
    assert node.archive.performed_steps.for_workitem("none") == []
    assert node.archive.workitems.search({}) == []


def _commit() -> Dataset:
    ds = Dataset()
    ds.TransactionUID = generate_uid()
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = generate_uid()
    ds.ReferencedSOPSequence = [item]
    return ds


def _named() -> Dataset:
    ds = Dataset()
    ds.PatientID = "P1"
    return ds


def test_n_create_without_an_instance_uid_is_answered_with_the_one_the_archive_chose(
    dimse_node: Node,
) -> None:
    from isthmus.archive import scheduled_workitem

    from .test_acceptor_protocol import EXPLICIT_LE, RawAssociation, command, encoded
    from .test_scp_properties import send_message

    entry = {"patient_id": "P1", "start": "202601020930", "label": "no uid given"}
    data = encoded(Dataset.from_json(scheduled_workitem(entry)))
    assoc = RawAssociation(dimse_node, [(1, UnifiedProcedureStepPush, [EXPLICIT_LE])])
    request = command(
        AffectedSOPClassUID=UnifiedProcedureStepPush,
        CommandField=msg.N_CREATE_RQ,
        MessageID=3,
        CommandDataSetType=0x0000,
    )
    send_message(assoc, 1, request, data)
    rsp, _data = assoc.message()
    assert (rsp.CommandField, rsp.Status) == (msg.N_CREATE_RSP, 0x0000)
    uid = str(rsp.AffectedSOPInstanceUID)
    assert dimse_node.archive.workitems.state(uid) == "SCHEDULED"
    assoc.release()
