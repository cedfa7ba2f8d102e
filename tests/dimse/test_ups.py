"""UPS over DIMSE (PS3.4 Annex CC) with pynetdicom as UPS SCU and as event receiver.

pynetdicom creates, claims, updates and completes work items (Push, Pull), subscribes
a receiving AE (Watch) that gets each event as an N-EVENT-REPORT on an association
the archive requests, and searches with C-FIND.  The state machine's refusals come
with the standard's statuses, and a claim from DIMSE racing one from UPS-RS has
exactly one winner.  Both backends, one node (DIMSE and HTTP) per module.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    UnifiedProcedureStepEvent,
    UnifiedProcedureStepPull,
    UnifiedProcedureStepPush,
    UnifiedProcedureStepWatch,
)

from isthmus.archive import completion, scheduled_workitem
from isthmus.config import Peer, Settings
from isthmus.server import Node
from isthmus.testing.net import free_port

RECEIVER = "WATCHER"
LATE = "LATECOMER"  # a subscriber peer not listening when its first event happens
LATE_PORT = free_port()
GLOBAL = "1.2.840.10008.5.1.4.34.5"
CT_HEAD = ("P5-08000", "SRT", "CT of head")


class Receiver:
    """A pynetdicom AE accepting UPS Event N-EVENT-REPORTs (the archive as SCP, role
    selection), keeping (work item UID, event type, state) of each."""

    def __init__(self, aet: str = RECEIVER, port: int | None = None) -> None:
        self.port = port or free_port()
        self.events: queue.Queue[tuple[str, int, str | None]] = queue.Queue()
        self.reasons: dict[str, str] = {}  # work item UID → last Reason For Cancellation
        ae = AE(ae_title=aet)
        ae.add_supported_context(UnifiedProcedureStepEvent, scu_role=False, scp_role=True)
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, self.on)]
        )

    def on(self, event: Any) -> tuple[int, None]:
        info = event.event_information
        state = info.get("ProcedureStepState")
        uid = str(event.request.AffectedSOPInstanceUID)
        if "ReasonForCancellation" in info:
            self.reasons[uid] = str(info.ReasonForCancellation)
        self.events.put((uid, int(event.request.EventTypeID), state))
        return 0x0000, None

    def about(self, uid: str, count: int) -> list[tuple[int, str | None]]:
        """The next `count` events about `uid` (others are skipped)."""
        out: list[tuple[int, str | None]] = []
        while len(out) < count:
            got, event_type, state = self.events.get(timeout=30)
            if got == uid:
                out.append((event_type, state))
        return out


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()


@pytest.fixture(scope="module")
def node(
    module_index_url: str, tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[Node]:
    settings = Settings(
        data=tmp_path_factory.mktemp("ups-dimse"),
        dicom_port=free_port(),
        http_port=free_port(),
        index_url=module_index_url,
        check_on_start=False,
        peers=(Peer(RECEIVER, "127.0.0.1", receiver.port), Peer(LATE, "127.0.0.1", LATE_PORT)),
    )
    with Node(settings) as running:
        yield running


@pytest.fixture
def scu(node: Node) -> Iterator[Any]:
    ae = AE(ae_title="PERFORMER")
    for sop_class in (
        UnifiedProcedureStepPush,
        UnifiedProcedureStepPull,
        UnifiedProcedureStepWatch,
    ):
        ae.add_requested_context(sop_class)
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.settings.aet)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        assoc.release()


def _workitem(**changes: str) -> Dataset:
    entry = {
        "patient_id": "P1",
        "patient_name": "DOE^JANE",
        "modality": "CT",
        "station_aet": "CT01",
        "start": "202601020930",
        "label": "CT head",
        **changes,
    }
    return Dataset.from_json(scheduled_workitem(entry))


def _create(scu: Any, ds: Dataset | None = None) -> tuple[int, str]:
    uid = str(generate_uid())
    status, _ = scu.send_n_create(ds or _workitem(), UnifiedProcedureStepPush, uid)
    return int(status.Status), uid


def _action(scu: Any, sop_class: str, uid: str, action: int, **attributes: Any) -> int:
    info = Dataset()
    for keyword, value in attributes.items():
        setattr(info, keyword, value)
    status, _ = scu.send_n_action(info, action, sop_class, uid)
    return int(status.Status)


def _state(scu: Any, uid: str, state: str, transaction: str) -> int:
    return _action(
        scu,
        UnifiedProcedureStepPull,
        uid,
        1,
        ProcedureStepState=state,
        TransactionUID=transaction,
    )


def _set(scu: Any, uid: str, transaction: str | None, **attributes: Any) -> int:
    ds = Dataset.from_json(attributes.pop("model", {}))
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    if transaction:
        ds.TransactionUID = transaction
    status, _ = scu.send_n_set(ds, UnifiedProcedureStepPull, uid)
    return int(status.Status)


def test_full_lifecycle_with_events_to_the_subscribed_ae(
    node: Node, scu: Any, receiver: Receiver
) -> None:
    status, uid = _create(scu)
    assert status == 0x0000
    assert (
        _action(scu, UnifiedProcedureStepWatch, uid, 3, ReceivingAE=RECEIVER, DeletionLock="FALSE")
        == 0
    )
    assert receiver.about(uid, 1) == [(1, "SCHEDULED")]  # the initial State Report
    transaction = str(generate_uid())
    assert _state(scu, uid, "IN PROGRESS", transaction) == 0x0000
    assert receiver.about(uid, 1) == [(1, "IN PROGRESS")]
    done = completion("202601020931", "202601020950", "CT01", CT_HEAD)
    assert _set(scu, uid, transaction, model=done) == 0
    assert _state(scu, uid, "COMPLETED", transaction) == 0x0000
    assert receiver.about(uid, 1) == [(1, "COMPLETED")]
    status, got = scu.send_n_get([0x00741000, 0x00081195], UnifiedProcedureStepPull, uid)
    assert status.Status == 0x0000
    assert got.ProcedureStepState == "COMPLETED"
    assert "TransactionUID" not in got  # never disclosed (CC.2.7)


def test_c_find_on_pull_finds_scheduled_items_by_their_keys(node: Node, scu: Any) -> None:
    label = "FIND " + generate_uid()[-8:]
    _status, uid = _create(scu, _workitem(label=label, patient_id="P-FIND"))
    query = Dataset()
    query.ProcedureStepLabel = label
    query.ProcedureStepState = ""
    query.PatientID = ""
    query.SOPInstanceUID = ""
    query.TransactionUID = ""
    responses = list(scu.send_c_find(query, UnifiedProcedureStepPull))
    found = [ds for status, ds in responses if status.Status == 0xFF00]
    assert [str(ds.SOPInstanceUID) for ds in found] == [uid]
    assert found[0].ProcedureStepState == "SCHEDULED"
    assert found[0].PatientID == "P-FIND"
    assert "TransactionUID" not in found[0]
    assert responses[-1][0].Status == 0x0000


def test_c_find_answers_a_name_in_unicode_in_utf8(node: Node, scu: Any) -> None:
    """A value ASCII cannot hold is answered in ISO_IR 192 (PS3.5 6.1.2.3)."""
    ds = _workitem(patient_name="Müller^Jürgen=山田^太郎", patient_id="P-UTF8")
    ds.SpecificCharacterSet = "ISO_IR 192"
    _status, uid = _create(scu, ds)
    query = Dataset()
    query.PatientID = "P-UTF8"
    query.PatientName = ""
    responses = list(scu.send_c_find(query, UnifiedProcedureStepPull))
    (found,) = [ds for status, ds in responses if status.Status == 0xFF00]
    assert found.SpecificCharacterSet == "ISO_IR 192"
    assert str(found.PatientName) == "Müller^Jürgen=山田^太郎"


def test_state_machine_violations_get_the_standards_statuses(node: Node, scu: Any) -> None:
    _status, uid = _create(scu)
    assert _state(scu, uid, "COMPLETED", str(generate_uid())) == 0xC310  # not yet IN PROGRESS
    transaction = str(generate_uid())
    assert _state(scu, uid, "IN PROGRESS", transaction) == 0x0000
    assert _state(scu, uid, "IN PROGRESS", str(generate_uid())) == 0xC302  # already claimed
    wrong = str(generate_uid())
    assert _set(scu, uid, wrong, ProcedureStepLabel="changed") == 0xC301  # wrong transaction
    assert _state(scu, uid, "COMPLETED", wrong) == 0xC301
    assert _state(scu, uid, "COMPLETED", transaction) == 0xC304  # final state attributes
    assert _state(scu, str(generate_uid()), "IN PROGRESS", transaction) == 0xC307  # no such


def test_bad_requests_get_the_standards_statuses(node: Node, scu: Any) -> None:
    incomplete = _workitem()
    del incomplete.ScheduledProcedureStepStartDateTime
    assert _create(scu, incomplete)[0] == 0x0120  # missing attribute
    _status, uid = _create(scu)
    assert _create(scu, _workitem())[0] == 0x0000
    status, _ = scu.send_n_create(_workitem(), UnifiedProcedureStepPush, uid)
    assert status.Status == 0x0111  # duplicate SOP instance
    assert (
        _action(scu, UnifiedProcedureStepPush, uid, 1, ProcedureStepState="IN PROGRESS") == 0x0123
    )
    unknown = _action(scu, UnifiedProcedureStepWatch, uid, 3, ReceivingAE="NOBODY")
    assert unknown == 0xC308  # the receiving AE is not a known peer
    status, _ = scu.send_n_set(_workitem(), UnifiedProcedureStepPush, uid)
    assert status.Status == 0x0211  # no N-SET on UPS Push


def test_n_create_refuses_progress_and_performed_procedure_information(
    node: Node, scu: Any
) -> None:
    """PS3.4 Table CC.2.5-3, N-CREATE: both sequences "shall be empty"."""
    performed = Dataset.from_json(completion("202601020931", "202601020950", "CT01", CT_HEAD))
    progress = Dataset()
    progress.ProcedureStepProgress = 10
    for keyword, value in (
        ("ProcedureStepProgressInformationSequence", [progress]),
        ("UnifiedProcedureStepPerformedProcedureSequence", performed[0x00741216].value),
    ):
        ds = _workitem()
        setattr(ds, keyword, value)
        assert _create(scu, ds)[0] == 0x0106  # invalid attribute value


def test_cancel_request_of_a_scheduled_item_cancels_it(
    node: Node, scu: Any, receiver: Receiver
) -> None:
    _status, uid = _create(scu)
    assert _action(scu, UnifiedProcedureStepWatch, uid, 3, ReceivingAE=RECEIVER) == 0
    assert receiver.about(uid, 1) == [(1, "SCHEDULED")]
    assert _action(scu, UnifiedProcedureStepPush, uid, 2, ReasonForCancellation="no show") == 0
    assert receiver.about(uid, 2) == [(1, "IN PROGRESS"), (1, "CANCELED")]
    assert node.archive.workitems.state(uid) == "CANCELED"


def test_values_in_other_character_sets_survive_n_set_n_get_and_events(
    node: Node, scu: Any, receiver: Receiver
) -> None:
    """An N-SET in ISO_IR 100 on an item holding Japanese: "subsequent operations reflect
    the combination of the character sets" (PS3.4 CC.2.6.3), so N-GET and the event
    reports carry every value intact, in a character set that holds them."""
    ds = _workitem(patient_name="Yamada^Tarou=山田^太郎")
    ds.SpecificCharacterSet = "ISO_IR 192"
    status, uid = _create(scu, ds)
    assert status == 0
    change = Dataset()
    change.SpecificCharacterSet = "ISO_IR 100"
    change.ProcedureStepLabel = "Röntgen Thorax"
    status, _ = scu.send_n_set(change, UnifiedProcedureStepPull, uid)
    assert status.Status == 0
    for wanted in ([], [0x00100010, 0x00741204]):
        status, got = scu.send_n_get(wanted, UnifiedProcedureStepPush, uid)
        assert status.Status == 0
        assert str(got.PatientName) == "Yamada^Tarou=山田^太郎"
        assert got.ProcedureStepLabel == "Röntgen Thorax"
    assert "00080005" not in node.archive.workitems.get(uid)  # the store keeps Unicode
    assert _action(scu, UnifiedProcedureStepWatch, uid, 3, ReceivingAE=RECEIVER) == 0
    assert receiver.about(uid, 1) == [(1, "SCHEDULED")]
    claim = _state(scu, uid, "IN PROGRESS", str(generate_uid()))
    assert claim == 0 and receiver.about(uid, 1) == [(1, "IN PROGRESS")]
    reason = "Patient möchte nicht — 患者不在"
    utf8 = {"SpecificCharacterSet": "ISO_IR 192", "ReasonForCancellation": reason}
    assert _action(scu, UnifiedProcedureStepPush, uid, 2, **utf8) == 0
    assert receiver.about(uid, 1) == [(2, None)]
    assert receiver.reasons[uid] == reason


def _claim_from_both_doors(node: Node, scu: Any, uid: str) -> dict[str, int]:
    """Claim `uid` with N-ACTION and with UPS-RS at the same moment; each door's status."""
    root = f"http://127.0.0.1:{node.http_port}/dicom-web"
    barrier = threading.Barrier(2)
    outcome: dict[str, int] = {}
    body = {
        "00741000": {"vr": "CS", "Value": ["IN PROGRESS"]},
        "00081195": {"vr": "UI", "Value": [str(generate_uid())]},
    }

    def over_http() -> None:
        with httpx.Client(base_url=root, timeout=30) as client:
            barrier.wait()
            outcome["http"] = client.put(
                f"/workitems/{uid}/state",
                content=json.dumps(body),
                headers={"Content-Type": "application/dicom+json"},
            ).status_code

    thread = threading.Thread(target=over_http)
    thread.start()
    barrier.wait()
    outcome["dimse"] = _state(scu, uid, "IN PROGRESS", str(generate_uid()))
    thread.join(60)
    return outcome


def test_claims_from_dimse_and_ups_rs_at_once_have_exactly_one_winner(node: Node, scu: Any) -> None:
    for _ in range(3):
        _status, uid = _create(scu)
        assert sorted(_claim_from_both_doors(node, scu, uid).items()) in (
            [("dimse", 0x0000), ("http", 409)],
            [("dimse", 0xC302), ("http", 200)],
        )


def test_events_a_subscriber_missed_while_down_come_first_and_in_order(
    node: Node, scu: Any
) -> None:
    _status, uid = _create(scu)
    assert _action(scu, UnifiedProcedureStepWatch, uid, 3, ReceivingAE=LATE) == 0
    # the initial State Report finds nobody listening: it stays in the event log
    late = Receiver(LATE, LATE_PORT)
    try:
        assert _state(scu, uid, "IN PROGRESS", str(generate_uid())) == 0
        assert late.about(uid, 2) == [(1, "SCHEDULED"), (1, "IN PROGRESS")]
    finally:
        late.server.shutdown()
