"""The work item store: UPS state machine, attribute rules, subscriptions, events,
concurrency (PS3.4 Annex CC), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus.archive import (
    CANCELED,
    COMPLETED,
    FILTERED_SUBSCRIPTION,
    GLOBAL_SUBSCRIPTION,
    IN_PROGRESS,
    SCHEDULED,
    Archive,
    EventType,
    QueryError,
    UpsStatus,
    WorkItemError,
    completion,
    scheduled_workitem,
)

TUID = "1.2.826.0.1.3680043.10.1.1"
OTHER_TUID = "1.2.826.0.1.3680043.10.1.2"
CT_HEAD = ("P5-08000", "SRT", "CT of head")
EQUIPMENT_FAILURE = {
    "00080100": {"vr": "SH", "Value": ["110501"]},
    "00080102": {"vr": "SH", "Value": ["DCM"]},
    "00080104": {"vr": "LO", "Value": ["Equipment failure"]},
}
# What a performer N-SETs before CANCELED: why it stopped (Table CC.2.5-3, code X).
DISCONTINUED = {
    "00741002": {"vr": "SQ", "Value": [{"0074100E": {"vr": "SQ", "Value": [EQUIPMENT_FAILURE]}}]}
}


@pytest.fixture
def archive(index_url: str, tmp_path: Path) -> Iterator[Archive]:
    arch = Archive(index_url, f"file://{tmp_path / 'blobs'}")
    try:
        yield arch
    finally:
        arch.close()


def entry(**kw: str) -> dict:
    base = {
        "patient_id": "P1",
        "patient_name": "Doe^Jane",
        "accession": "A1",
        "modality": "CT",
        "station_aet": "CT01",
        "start": "202601020930",
        "label": "CT head",
    }
    return scheduled_workitem({**base, **kw})


def status_of(call, *args, **kw) -> int:
    with pytest.raises(WorkItemError) as info:
        call(*args, **kw)
    return int(info.value.status)


def test_full_lifecycle_reaches_completed_and_keeps_the_transaction_uid_secret(archive):
    wi = archive.workitems
    created = wi.create(entry())
    assert created.warnings == []
    uid = created.uid
    assert wi.state(uid) == SCHEDULED
    assert wi.change_state(uid, IN_PROGRESS, TUID).dataset["00741000"]["Value"] == [IN_PROGRESS]
    wi.update(uid, completion("202601020931", "202601020950", "CT01", CT_HEAD), TUID)
    done = wi.change_state(uid, COMPLETED, TUID)
    assert wi.state(uid) == COMPLETED
    assert "00081195" not in wi.get(uid)
    assert "00081195" not in done.dataset
    again = wi.change_state(uid, COMPLETED, TUID)
    assert again.warnings == [UpsStatus.ALREADY_COMPLETED]


def test_state_machine_violations_get_the_standard_statuses(archive):
    wi = archive.workitems
    uid = wi.create(entry()).uid
    assert status_of(wi.change_state, uid, COMPLETED, TUID) == 0xC310  # not IN PROGRESS
    assert status_of(wi.change_state, uid, SCHEDULED, TUID) == 0xC303
    assert status_of(wi.change_state, uid, IN_PROGRESS, None) == 0xC301
    wi.change_state(uid, IN_PROGRESS, TUID)
    assert status_of(wi.change_state, uid, IN_PROGRESS, OTHER_TUID) == 0xC302
    assert status_of(wi.change_state, uid, COMPLETED, OTHER_TUID) == 0xC301
    assert status_of(wi.update, uid, {"00741204": {"vr": "LO", "Value": ["x"]}}) == 0xC301
    # final state requirements: no Performed Procedure Sequence yet
    assert status_of(wi.change_state, uid, COMPLETED, TUID) == 0xC304
    wi.update(uid, DISCONTINUED, TUID)
    wi.change_state(uid, CANCELED, TUID)
    assert status_of(wi.update, uid, {"00741204": {"vr": "LO", "Value": ["x"]}}, TUID) == 0xC300
    assert status_of(wi.change_state, uid, COMPLETED, TUID) == 0xC300
    assert status_of(wi.get, "1.2.3.4.5") == 0xC307


def test_completing_needs_a_performed_station_and_workitem_code(archive):
    """Final State code P (PS3.4 CC.2.5.1.1, Table CC.2.5-3): Performed Station Name
    Code and Performed Workitem Code Sequences need a value (an item) to COMPLETE; the
    Output Information Sequence may have no items."""
    wi = archive.workitems
    uid = wi.create(entry()).uid
    wi.change_state(uid, IN_PROGRESS, TUID)
    performed = completion("202601020931", "202601020950", "CT01", CT_HEAD)
    item = performed["00741216"]["Value"][0]
    for tag in ("00404028", "00404019"):
        empty = {**item, tag: {"vr": "SQ"}}
        wi.update(uid, {"00741216": {"vr": "SQ", "Value": [empty]}}, TUID)
        assert status_of(wi.change_state, uid, COMPLETED, TUID) == 0xC304
        assert wi.state(uid) == IN_PROGRESS
    wi.update(uid, performed, TUID)
    assert item["00404033"] == {"vr": "SQ"}
    wi.change_state(uid, COMPLETED, TUID)
    assert wi.state(uid) == COMPLETED


def test_canceling_needs_a_discontinuation_reason(archive):
    """Final State code X (PS3.4 CC.2.5.1.1, Table CC.2.5-3): CANCELED needs the
    Procedure Step Discontinuation Reason Code Sequence; the SCP records the
    Procedure Step Cancellation DateTime itself."""
    wi = archive.workitems
    uid = wi.create(entry()).uid
    wi.change_state(uid, IN_PROGRESS, TUID)
    assert status_of(wi.change_state, uid, CANCELED, TUID) == 0xC304
    assert wi.state(uid) == IN_PROGRESS
    wi.update(uid, DISCONTINUED, TUID)
    wi.change_state(uid, CANCELED, TUID)
    (progress,) = wi.get(uid)["00741002"]["Value"]
    assert progress["0074100E"]["Value"] == [EQUIPMENT_FAILURE]
    assert progress["00404052"]["Value"]


def test_a_canceled_scheduled_item_meets_the_final_state_requirements(archive):
    """Request Cancel of a SCHEDULED item: the SCP cancels it "ensuring that the Final
    State requirements are met" (PS3.4 CC.2.2.3): the reason code proposed, or one of
    its own (CID 9300) when the request proposes none."""
    wi = archive.workitems
    uid = wi.create(entry()).uid
    wi.request_cancel(uid, {}, aet="RIS")
    (progress,) = wi.get(uid)["00741002"]["Value"]
    (reason,) = progress["0074100E"]["Value"]
    assert [reason["00080100"]["Value"], reason["00080102"]["Value"]] == [["110513"], ["DCM"]]
    proposed = wi.create(entry()).uid
    wi.request_cancel(proposed, {"0074100E": DISCONTINUED["00741002"]["Value"][0]["0074100E"]})
    (progress,) = wi.get(proposed)["00741002"]["Value"]
    assert progress["0074100E"]["Value"] == [EQUIPMENT_FAILURE]


def test_create_refuses_missing_required_attributes_and_duplicates(archive):
    wi = archive.workitems
    ds = entry()
    del ds["00404005"]
    assert status_of(wi.create, ds) == UpsStatus.MISSING_ATTRIBUTE
    ds = entry()
    ds["00741200"] = {"vr": "CS"}
    assert status_of(wi.create, ds) == UpsStatus.MISSING_ATTRIBUTE_VALUE
    ds = entry()
    ds["00741000"] = {"vr": "CS", "Value": ["IN PROGRESS"]}
    assert status_of(wi.create, ds) == 0xC309
    uid = wi.create(entry(), uid="1.2.826.0.1.3680043.10.9").uid
    assert status_of(wi.create, entry(), uid=uid) == UpsStatus.DUPLICATE_SOP_INSTANCE


def test_create_refuses_a_referenced_request_without_its_study_instance_uid(archive):
    """PS3.4 Table CC.2.5-3: >Study Instance UID of the Referenced Request Sequence is 1/1."""
    wi = archive.workitems
    ds = entry()
    ds["0040A370"] = {"vr": "SQ", "Value": [{"00080050": {"vr": "SH", "Value": ["A1"]}}]}
    assert status_of(wi.create, ds) == UpsStatus.MISSING_ATTRIBUTE
    ds["0040A370"]["Value"][0]["0020000D"] = {"vr": "UI"}
    assert status_of(wi.create, ds) == UpsStatus.MISSING_ATTRIBUTE_VALUE
    ds["0040A370"]["Value"][0]["0020000D"] = {"vr": "UI", "Value": ["1.2.826.0.1.3680043.10.9.7"]}
    assert wi.create(ds).uid


def test_create_refuses_progress_or_performed_procedure_information(archive):
    """PS3.4 Table CC.2.5-3, N-CREATE: the Procedure Step Progress Information Sequence
    "2/2 Shall be empty", the Unified Procedure Step Performed Procedure Sequence "2/2
    Shall be created empty"; present and empty they are what a new item has."""
    wi = archive.workitems
    progress = {"00741002": {"vr": "SQ", "Value": [{"00741004": {"vr": "DS", "Value": [10]}}]}}
    performed = completion("202601020931", "202601020950", "CT01", CT_HEAD)
    for filled in (progress, performed):
        ds = {**entry(), **filled}
        assert status_of(wi.create, ds) == UpsStatus.INVALID_ATTRIBUTE_VALUE
    uid = wi.create({**entry(), "00741002": {"vr": "SQ"}, "00741216": {"vr": "SQ"}}).uid
    assert wi.get(uid)["00741216"] == {"vr": "SQ"}


def test_missing_type_2_attributes_are_added_with_a_warning(archive):
    ds = entry()
    del ds["00404018"]
    created = archive.workitems.create(ds)
    assert created.warnings == [UpsStatus.CREATED_WITH_MODIFICATIONS]
    assert archive.workitems.get(created.uid)["00404018"] == {"vr": "SQ"}


def test_cancel_request_on_a_scheduled_item_cancels_it_through_in_progress(archive):
    wi = archive.workitems
    uid = wi.create(entry()).uid
    wi.subscribe("WATCHER", uid)
    wi.mark_delivered("WATCHER", [e.id for e in wi.pending_events("WATCHER")])
    reason = {"00741238": {"vr": "LT", "Value": ["patient left"]}}
    wi.request_cancel(uid, reason, aet="RIS")
    assert wi.state(uid) == CANCELED
    states = [e.info["00741000"]["Value"][0] for e in wi.pending_events("WATCHER")]
    assert states == [IN_PROGRESS, CANCELED]
    assert wi.request_cancel(uid).warnings == [UpsStatus.ALREADY_CANCELED]


def test_cancel_request_on_an_in_progress_item_tells_the_subscribers(archive):
    wi = archive.workitems
    uid = wi.create(entry()).uid
    wi.change_state(uid, IN_PROGRESS, TUID)
    wi.subscribe("PERFORMER", uid)
    wi.request_cancel(uid, {}, aet="RIS")
    assert wi.state(uid) == IN_PROGRESS
    last = wi.pending_events("PERFORMER")[-1]
    assert last.event_type == EventType.CANCEL_REQUESTED
    assert last.info["00741236"]["Value"] == ["RIS"]
    wi.update(uid, completion("202601020931", "202601020950", "CT01", CT_HEAD), TUID)
    wi.change_state(uid, COMPLETED, TUID)
    assert status_of(wi.request_cancel, uid) == 0xC311


def test_events_are_logged_per_subscriber_and_published_on_the_bus(archive):
    wi = archive.workitems
    heard = []
    archive.events.subscribe("ups.", heard.append)
    wi.subscribe("ALL", GLOBAL_SUBSCRIPTION)
    uid = wi.create(entry()).uid
    wi.change_state(uid, IN_PROGRESS, TUID)
    progress = {"00741002": {"vr": "SQ", "Value": [{"00741004": {"vr": "DS", "Value": [50]}}]}}
    wi.update(uid, progress, TUID)
    types = [e.event_type for e in wi.pending_events("ALL")]
    assert types == [EventType.STATE_REPORT, EventType.STATE_REPORT, EventType.PROGRESS_REPORT]
    assert [e.topic for e in heard] == [f"ups.{uid}"] * 3
    assert heard[0].payload["aet"] == "ALL"
    first_two = [e.id for e in wi.pending_events("ALL")][:2]
    assert wi.mark_delivered("ALL", first_two) == first_two
    assert wi.mark_delivered("ALL", first_two) == []  # taken once only
    assert [e.event_type for e in wi.pending_events("ALL")] == [EventType.PROGRESS_REPORT]


def test_filtered_subscriptions_hear_only_matching_work_items(archive):
    wi = archive.workitems
    wi.subscribe(
        "CTONLY",
        FILTERED_SUBSCRIPTION,
        filter={"ScheduledStationClassCodeSequence.CodeValue": "CT"},
    )
    wi.subscribe(
        "MRONLY",
        FILTERED_SUBSCRIPTION,
        filter={"ScheduledStationClassCodeSequence.CodeValue": "MR"},
    )
    ct = wi.create(entry(modality="CT")).uid
    mr = wi.create(entry(modality="MR")).uid
    assert {e.workitem_uid for e in wi.pending_events("CTONLY")} == {ct}
    assert {e.workitem_uid for e in wi.pending_events("MRONLY")} == {mr}
    assert wi.subscribers(ct) == ["CTONLY"]


def test_suspended_global_subscription_keeps_existing_items_only(archive):
    wi = archive.workitems
    wi.subscribe("ALL", GLOBAL_SUBSCRIPTION, deletion_lock=True)
    old = wi.create(entry()).uid
    wi.suspend("ALL")
    new = wi.create(entry()).uid
    assert wi.subscribers(old) == ["ALL"]
    assert wi.subscribers(new) == []
    wi.unsubscribe("ALL", old)
    assert wi.subscribers(old) == []
    wi.subscribe("ALL", GLOBAL_SUBSCRIPTION)
    wi.unsubscribe("ALL", GLOBAL_SUBSCRIPTION)
    assert wi.subscriptions("ALL") == []


def test_subscribing_globally_again_covers_items_unsubscribed_before(archive):
    """PS3.4 Table CC.2.3-2, "AE Subscribes Globally": every existing UPS whose state
    for the AE is Not Subscribed goes to Subscribed, also one it had left."""
    wi = archive.workitems
    uid = wi.create(entry()).uid
    wi.subscribe("WATCHER", GLOBAL_SUBSCRIPTION)
    wi.unsubscribe("WATCHER", uid)
    assert wi.subscribers(uid) == []
    wi.subscribe("WATCHER", GLOBAL_SUBSCRIPTION)
    assert wi.subscribers(uid) == ["WATCHER"]
    wi.change_state(uid, IN_PROGRESS, TUID)
    last = wi.pending_events("WATCHER")[-1]
    assert (last.workitem_uid, last.info["00741000"]["Value"]) == (uid, [IN_PROGRESS])


def test_subscribing_to_one_item_sends_its_initial_state(archive):
    wi = archive.workitems
    uid = wi.create(entry()).uid
    wi.subscribe("ONE", uid)
    (event,) = wi.pending_events("ONE")
    assert event.event_type == EventType.STATE_REPORT
    assert event.report()["00001000"]["Value"] == [uid]
    assert event.report()["00001002"]["Value"] == [1]
    assert status_of(wi.subscribe, "ONE", "1.2.3.999") == 0xC307


def test_search_uses_the_query_matchers(archive):
    wi = archive.workitems
    a = wi.create(entry(patient_id="P1", start="202601020930", modality="CT")).uid
    b = wi.create(entry(patient_id="P2", patient_name="Smith^John", start="202601030800")).uid
    found = lambda **p: [d["00080018"]["Value"][0] for d in wi.search(p)]  # noqa: E731
    assert found(PatientID="P1") == [a]
    assert found(PatientName="smith*") == [b]
    assert found(ScheduledProcedureStepStartDateTime="20260103-") == [b]
    assert found(ProcedureStepState="SCHEDULED") == [a, b]
    assert found(**{"ReferencedRequestSequence.AccessionNumber": "A1"}) == [a, b]
    assert found(**{"ScheduledStationNameCodeSequence.CodeValue": "CT0?"}) == [a, b]
    assert len(wi.search({}, limit=1, offset=1)) == 1
    with pytest.raises(QueryError):
        wi.search({"ScheduledProcedureStepStartDateTime": "tomorrow"})


def claim_concurrently(wi, uid: str, tuids: tuple[str, ...]) -> list[str]:
    """Every Transaction UID claims `uid` at the same moment; "won" or the status."""
    barrier = threading.Barrier(len(tuids))
    outcomes: list[str] = []

    def claim(tuid: str) -> None:
        barrier.wait()
        try:
            wi.change_state(uid, IN_PROGRESS, tuid)
            outcomes.append("won")
        except WorkItemError as exc:
            outcomes.append(f"0x{int(exc.status):04X}")

    threads = [threading.Thread(target=claim, args=(t,)) for t in tuids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return sorted(outcomes)


def test_two_writers_claiming_one_item_exactly_one_wins(archive):
    wi = archive.workitems
    for _ in range(3):
        uid = wi.create(entry()).uid
        assert claim_concurrently(wi, uid, (TUID, OTHER_TUID)) == ["0xC302", "won"]
        label = {"00741204": {"vr": "LO", "Value": ["claimed"]}}
        holders = []
        for tuid in (TUID, OTHER_TUID):  # the stored Transaction UID is the winner's
            try:
                wi.update(uid, label, tuid)
                holders.append(tuid)
            except WorkItemError as exc:
                assert exc.status == UpsStatus.WRONG_TRANSACTION_UID
        assert len(holders) == 1


def test_scp_status_change_reaches_every_subscriber(archive):
    wi = archive.workitems
    wi.subscribe("ALL", GLOBAL_SUBSCRIPTION)
    uid = wi.create(entry()).uid
    wi.subscribe("ONE", uid)
    wi.scp_status("GOING DOWN")
    for aet in ("ALL", "ONE"):
        last = wi.pending_events(aet)[-1]
        assert last.event_type == EventType.SCP_STATUS_CHANGE
        assert last.info["00741242"]["Value"] == ["GOING DOWN"]


def test_date_search_compares_instants_across_utc_offsets(archive):
    wi = archive.workitems
    ds = entry(patient_id="TZ1")
    ds["00404005"] = {"vr": "DT", "Value": ["202601020030+0900"]}  # 2026-01-01 15:30 UTC
    uid = wi.create(ds).uid

    def found(v):
        return [
            d["00080018"]["Value"][0]
            for d in wi.search({"ScheduledProcedureStepStartDateTime": v, "PatientID": "TZ1"})
        ]

    assert found("20260101150000+0000-20260101160000+0000") == [uid]
    assert found("20260102010000+0000-") == []
