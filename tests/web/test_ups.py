"""UPS-RS (PS3.18 11) over plain HTTP and the Open Event Channel over WebSocket, on a
running node, with the index on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.web.conftest import node_settings, root_of
from websockets.sync.client import ClientConnection, connect

from isthmus.archive import Archive, completion, scheduled_workitem
from isthmus.server import Node
from isthmus.web.dicom_xml import to_xml

GLOBAL = "1.2.840.10008.5.1.4.34.5"
FILTERED = "1.2.840.10008.5.1.4.34.5.1"
JSON_TYPE = {"Content-Type": "application/dicom+json"}
CT_HEAD = ("P5-08000", "SRT", "CT of head")
# Why a performer stopped, N-SET before CANCELED (PS3.4 Table CC.2.5-3, Final State X).
DISCONTINUATION = {
    "0074100E": {
        "vr": "SQ",
        "Value": [
            {
                "00080100": {"vr": "SH", "Value": ["110501"]},
                "00080102": {"vr": "SH", "Value": ["DCM"]},
                "00080104": {"vr": "LO", "Value": ["Equipment failure"]},
            }
        ],
    }
}


@pytest.fixture(scope="module")
def node(module_index_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    folder = tmp_path_factory.mktemp("ups")
    with Node(node_settings(folder, index_url=module_index_url)) as running:
        yield running


@pytest.fixture(scope="module")
def http(node: Node) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=root_of(node), timeout=30) as client:
        yield client


def ws_url(node: Node, aet: str) -> str:
    return f"ws://127.0.0.1:{node.http_port}/dicom-web/subscribers/{aet}"


def new_uid() -> str:
    return "2.25." + str(uuid.uuid4().int)


def aet() -> str:
    return "AE" + uuid.uuid4().hex[:10].upper()


def item(**kw: str) -> dict[str, Any]:
    base = {
        "patient_id": "P1",
        "patient_name": "Doe^Jane",
        "modality": "CT",
        "station_aet": "CT01",
        "start": "202601020930",
        "label": "CT head",
    }
    return scheduled_workitem({**base, **kw})


def create(http: httpx.Client, **kw: str) -> str:
    uid = new_uid()
    r = http.post(f"/workitems?{uid}", content=json.dumps(item(**kw)), headers=JSON_TYPE)
    assert r.status_code == 201, r.text
    return uid


def state_body(state: str, tuid: str | None) -> str:
    ds: dict[str, Any] = {"00741000": {"vr": "CS", "Value": [state]}}
    if tuid:
        ds["00081195"] = {"vr": "UI", "Value": [tuid]}
    return json.dumps(ds)


def put_state(http: httpx.Client, uid: str, state: str, tuid: str | None) -> httpx.Response:
    return http.put(f"/workitems/{uid}/state", content=state_body(state, tuid), headers=JSON_TYPE)


def receive(ws: ClientConnection, n: int) -> list[dict[str, Any]]:
    return [json.loads(ws.recv(timeout=20)) for _ in range(n)]


def receive_until(ws: ClientConnection, uid: str) -> list[dict[str, Any]]:
    """Reports up to and including the first one about `uid` (a global subscriber
    first hears the initial state of the module's other items)."""
    out = []
    while not out or out[-1]["00001000"]["Value"] != [uid]:
        out.append(json.loads(ws.recv(timeout=20)))
    return out


def about(reports: list[dict[str, Any]], uid: str) -> list[dict[str, Any]]:
    return [r for r in reports if r["00001000"]["Value"] == [uid]]


def event_type(report: dict[str, Any]) -> int:
    return int(report["00001002"]["Value"][0])


def state_of(report: dict[str, Any]) -> str:
    return str(report["00741000"]["Value"][0])


# ---------------------------------------------------------------- lifecycle
def test_full_lifecycle_over_http_with_a_subscriber_watching(node: Node, http: httpx.Client):
    uid, watcher = new_uid(), aet()
    r = http.post(f"/workitems?{uid}", content=json.dumps(item()), headers=JSON_TYPE)
    assert r.status_code == 201
    assert r.headers["location"].endswith(f"/dicom-web/workitems/{uid}")
    assert http.post(f"/workitems/{uid}/subscribers/{watcher}").status_code == 201
    got = http.get(f"/workitems/{uid}").json()[0]
    assert got["00741000"]["Value"] == ["SCHEDULED"]
    with connect(ws_url(node, watcher), open_timeout=10) as ws:
        tuid = new_uid()
        assert put_state(http, uid, "IN PROGRESS", tuid).status_code == 200
        progress = {"00741002": {"vr": "SQ", "Value": [{"00741004": {"vr": "DS", "Value": [40]}}]}}
        done = completion("202601020931", "202601020950", "CT01", CT_HEAD)
        body = json.dumps({**progress, **done})
        r = http.post(f"/workitems/{uid}?{tuid}", content=body, headers=JSON_TYPE)
        assert r.status_code == 200, r.text
        assert put_state(http, uid, "COMPLETED", tuid).status_code == 200
        reports = receive(ws, 4)
    assert [(event_type(e), state_of(e) if event_type(e) == 1 else "") for e in reports] == [
        (1, "SCHEDULED"),  # the initial state, sent when it subscribed
        (1, "IN PROGRESS"),
        (3, ""),
        (1, "COMPLETED"),
    ]
    assert reports[2]["00741002"]["Value"][0]["00741004"]["Value"] == [40]
    got = http.get(f"/workitems/{uid}").json()[0]
    assert got["00741000"]["Value"] == ["COMPLETED"]
    assert "00081195" not in got  # the Transaction UID is never returned
    again = put_state(http, uid, "COMPLETED", tuid)
    assert again.status_code == 200
    assert "already in the requested state of COMPLETED" in again.headers["warning"]


def test_retrieve_and_create_in_xml(http: httpx.Client):
    uid = new_uid()
    r = http.post(
        f"/workitems?{uid}",
        content=to_xml(item(patient_id="XML1")),
        headers={"Content-Type": "application/dicom+xml"},
    )
    assert r.status_code == 201, r.text
    r = http.get(f"/workitems/{uid}", headers={"Accept": "application/dicom+xml"})
    assert r.headers["content-type"].startswith("application/dicom+xml")
    assert b"XML1" in r.content and b"NativeDicomModel" in r.content


def test_search_matches_with_qido_keys(http: httpx.Client):
    pid = "S" + uuid.uuid4().hex[:8]
    ct = create(http, patient_id=pid, modality="CT", start="202602010800")
    mr = create(http, patient_id=pid, modality="MR", start="202602020800")

    def uids(**params: str) -> list[str]:
        r = http.get("/workitems", params={"PatientID": pid, **params})
        return [] if r.status_code == 204 else [d["00080018"]["Value"][0] for d in r.json()]

    assert uids() == [ct, mr]
    assert uids(**{"ScheduledStationClassCodeSequence.CodeValue": "MR"}) == [mr]
    assert uids(ScheduledProcedureStepStartDateTime="20260202-") == [mr]
    assert uids(ProcedureStepState="IN PROGRESS") == []
    r = http.get("/workitems", params={"PatientID": pid, "limit": "1"})
    assert r.status_code == 206 and "Warning" in r.headers
    assert (
        http.get("/workitems", params={"ScheduledProcedureStepStartDateTime": "x"}).status_code
        == 400
    )


def test_search_without_empty_or_multiple_value_matching_says_so(http: httpx.Client):
    """PS3.18 11.9.1 takes the search parameters of 8.3.4: emptyvaluematching and
    multiplevaluematching asked for are not performed, and a Warning says so (8.3.4.5,
    8.3.4.6); they were refused as unknown attributes (400)."""
    pid = "UPS-EMPTY"
    create(http, patient_id=pid)
    params = {"PatientID": pid, "emptyvaluematching": "true", "multiplevaluematching": "true"}
    r = http.get("/workitems", params=params)
    assert r.status_code == 200 and len(r.json()) == 1
    assert r.headers["warning"].count("has not been performed") == 2


# ------------------------------------------------------- state-machine refusals
def test_search_takes_a_comma_separated_uid_list(http: httpx.Client):
    """UID list matching in a query parameter is comma-separated (PS3.18 8.3.4.1),
    in Search for Workitems (11.9) as in QIDO-RS; top level and in a sequence item."""
    pid, study = "U" + uuid.uuid4().hex[:8], new_uid()
    first, second = create(http, patient_id=pid), create(http, patient_id=pid, study_uid=study)
    create(http, patient_id=pid)

    def uids(**params: str) -> list[str]:
        r = http.get("/workitems", params={"PatientID": pid, **params})
        assert r.status_code in (200, 204), r.text
        return [] if r.status_code == 204 else [d["00080018"]["Value"][0] for d in r.json()]

    assert uids(SOPInstanceUID=f"{first},{second}") == [first, second]
    key = "ReferencedRequestSequence.StudyInstanceUID"
    assert uids(**{key: f"{new_uid()},{study}"}) == [second]


def test_state_machine_violations_are_refused_with_the_standard_codes(http: httpx.Client):
    uid = create(http)
    r = put_state(http, uid, "COMPLETED", new_uid())  # completing a SCHEDULED item
    assert r.status_code == 409 and "not IN PROGRESS" in r.headers["warning"]
    assert "0xC310" in r.json()["message"]
    tuid = new_uid()
    assert put_state(http, uid, "IN PROGRESS", tuid).status_code == 200
    r = put_state(http, uid, "COMPLETED", new_uid())  # wrong Transaction UID
    assert r.status_code == 409 and "0xC301" in r.json()["message"]
    r = http.post(f"/workitems/{uid}?{new_uid()}", content=json.dumps({}), headers=JSON_TYPE)
    assert r.status_code == 409 and "0xC301" in r.json()["message"]
    r = put_state(http, uid, "COMPLETED", tuid)  # final state attributes missing
    assert r.status_code == 409 and "0xC304" in r.json()["message"]
    assert "Performed Procedure" in r.headers["warning"]
    assert put_state(http, uid, "SCHEDULED", tuid).status_code == 400  # 0xC303
    r = put_state(http, new_uid(), "IN PROGRESS", tuid)
    assert r.status_code == 404


def test_create_refuses_bad_work_items(http: httpx.Client):
    ds = item()
    del ds["00741204"]  # Procedure Step Label, type 1
    r = http.post("/workitems", content=json.dumps(ds), headers=JSON_TYPE)
    assert r.status_code == 400 and "0x0120" in r.json()["message"]
    uid = create(http)
    r = http.post(f"/workitems?{uid}", content=json.dumps(item()), headers=JSON_TYPE)
    assert r.status_code == 409
    ds = {**item(), **completion("202601020931", "202601020950", "CT01", CT_HEAD)}
    r = http.post("/workitems", content=json.dumps(ds), headers=JSON_TYPE)  # shall be empty
    assert r.status_code == 400 and "0x0106" in r.json()["message"]
    assert "Performed Procedure Sequence" in r.headers["warning"]
    assert http.post("/workitems", content=b"{not json", headers=JSON_TYPE).status_code == 400
    r = http.post("/workitems", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


def claim_at_once(node: Node, uid: str, clients: int = 2) -> list[int]:
    """HTTP status of each client's claim of `uid`, all sent at the same moment."""
    barrier = threading.Barrier(clients)
    codes: list[int] = []

    def claim() -> None:
        with httpx.Client(base_url=root_of(node), timeout=30) as client:
            barrier.wait()
            codes.append(put_state(client, uid, "IN PROGRESS", new_uid()).status_code)

    threads = [threading.Thread(target=claim) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return sorted(codes)


def test_two_clients_claiming_one_item_exactly_one_wins(node: Node, http: httpx.Client):
    for _ in range(3):
        assert claim_at_once(node, create(http)) == [200, 409]


# ------------------------------------------------------------------- events
def test_subscriber_gets_events_live_and_what_it_missed_on_reconnect(
    node: Node, http: httpx.Client
):
    me = aet()
    assert http.post(f"/workitems/{GLOBAL}/subscribers/{me}").status_code == 201
    with connect(ws_url(node, me), open_timeout=10) as ws:
        uid = create(http)
        (report,) = about(receive_until(ws, uid), uid)
        assert event_type(report) == 1 and state_of(report) == "SCHEDULED"
    # the channel is closed: these events wait in the log
    tuid = new_uid()
    assert put_state(http, uid, "IN PROGRESS", tuid).status_code == 200
    step = {"00741004": {"vr": "DS", "Value": [10]}, **DISCONTINUATION}
    progress = {"00741002": {"vr": "SQ", "Value": [step]}}
    http.post(f"/workitems/{uid}?{tuid}", content=json.dumps(progress), headers=JSON_TYPE)
    with connect(ws_url(node, me), open_timeout=10) as ws:
        missed = about(receive_until(ws, uid), uid) + receive(ws, 1)
        assert [event_type(e) for e in missed] == [1, 3]
        assert state_of(missed[0]) == "IN PROGRESS"
        assert put_state(http, uid, "CANCELED", tuid).status_code == 200
        (live,) = receive(ws, 1)
        assert state_of(live) == "CANCELED"
    with connect(ws_url(node, me), open_timeout=10) as ws:  # nothing is sent twice
        other = create(http)
        assert about(receive_until(ws, other), uid) == []


def test_two_filtered_subscribers_get_what_each_asked_for(node: Node, http: httpx.Client):
    ct_watcher, mr_watcher = aet(), aet()
    key = "ScheduledStationClassCodeSequence.CodeValue"
    pid = "F" + uuid.uuid4().hex[:8]
    assert (
        http.post(
            f"/workitems/{FILTERED}/subscribers/{ct_watcher}", params={key: "CT", "PatientID": pid}
        ).status_code
        == 201
    )
    assert (
        http.post(
            f"/workitems/{FILTERED}/subscribers/{mr_watcher}", params={key: "MR", "PatientID": pid}
        ).status_code
        == 201
    )
    with (
        connect(ws_url(node, ct_watcher), open_timeout=10) as ct_ws,
        connect(ws_url(node, mr_watcher), open_timeout=10) as mr_ws,
    ):
        create(http, modality="CT")  # another patient: neither filter matches
        ct = create(http, modality="CT", patient_id=pid)
        mr = create(http, modality="MR", patient_id=pid)
        ct_seen = [e["00001000"]["Value"][0] for e in receive(ct_ws, 1)]
        mr_seen = [e["00001000"]["Value"][0] for e in receive(mr_ws, 1)]
        assert ct_seen == [ct] and mr_seen == [mr]
        last = create(
            http, modality="CT", patient_id=pid
        )  # the CT watcher sees the next CT item next
        assert [e["00001000"]["Value"][0] for e in receive(ct_ws, 1)] == [last]


def test_filtered_subscription_takes_the_standards_filter_parameter(node: Node, http: httpx.Client):
    """PS3.18 11.10.1.2: ``filter=`` a comma-separated list of attribute=value pairs
    (a UID list keeps its commas)."""
    watcher, pid = aet(), "G" + uuid.uuid4().hex[:8]
    study = new_uid()
    keys = f"ScheduledStationClassCodeSequence.CodeValue=MR,PatientID={pid}"
    keys += f",ReferencedRequestSequence.StudyInstanceUID={new_uid()},{study}"
    r = http.post(f"/workitems/{FILTERED}/subscribers/{watcher}", params={"filter": keys})
    assert r.status_code == 201, r.text
    with connect(ws_url(node, watcher), open_timeout=10) as ws:
        create(http, modality="CT", patient_id=pid, study_uid=study)  # not MR
        create(http, modality="MR", patient_id=pid)  # another study
        mr = create(http, modality="MR", patient_id=pid, study_uid=study)
        assert [e["00001000"]["Value"][0] for e in receive(ws, 1)] == [mr]


def test_cancel_request_reaches_the_performer_and_unsubscribe_stops_events(
    node: Node, http: httpx.Client
):
    performer = aet()
    uid = create(http)
    tuid = new_uid()
    put_state(http, uid, "IN PROGRESS", tuid)
    assert http.post(f"/workitems/{uid}/subscribers/{performer}").status_code == 201
    with connect(ws_url(node, performer), open_timeout=10) as ws:
        (initial,) = receive(ws, 1)
        assert state_of(initial) == "IN PROGRESS"
        body = {
            "00741238": {"vr": "LT", "Value": ["wrong patient"]},
            "00741236": {"vr": "AE", "Value": ["RIS"]},
        }
        r = http.post(
            f"/workitems/{uid}/cancelrequest", content=json.dumps(body), headers=JSON_TYPE
        )
        assert r.status_code == 202
        (cancel,) = receive(ws, 1)
        assert event_type(cancel) == 2
        assert cancel["00741238"]["Value"] == ["wrong patient"]
        assert http.delete(f"/workitems/{uid}/subscribers/{performer}").status_code == 200
        reason = {"00741002": {"vr": "SQ", "Value": [DISCONTINUATION]}}
        http.post(f"/workitems/{uid}?{tuid}", content=json.dumps(reason), headers=JSON_TYPE)
        assert put_state(http, uid, "CANCELED", tuid).status_code == 200
        other = create(http)
        assert http.post(f"/workitems/{other}/subscribers/{performer}").status_code == 201
        assert about(receive_until(ws, other), uid) == []  # no report of the cancel


def test_cancel_request_without_a_requesting_ae_names_the_node(node: Node, http: httpx.Client):
    """Requesting AE is required in a Cancel Requested event (PS3.4 Table CC.2.4-1); an
    HTTP client has no AE title, so the event names the node's (docs/conformance.md)."""
    performer = aet()
    uid = create(http)
    put_state(http, uid, "IN PROGRESS", new_uid())
    assert http.post(f"/workitems/{uid}/subscribers/{performer}").status_code == 201
    with connect(ws_url(node, performer), open_timeout=10) as ws:
        receive(ws, 1)  # the initial state
        assert http.post(f"/workitems/{uid}/cancelrequest").status_code == 202
        (cancel,) = receive(ws, 1)
        assert event_type(cancel) == 2
        assert cancel["00741236"]["Value"] == [node.settings.aet]


def test_suspended_global_subscription_skips_new_items(node: Node, http: httpx.Client):
    me = aet()
    http.post(f"/workitems/{GLOBAL}/subscribers/{me}", params={"deletionlock": "true"})
    assert http.post(f"/workitems/{GLOBAL}/subscribers/{me}/suspend").status_code == 200
    with connect(ws_url(node, me), open_timeout=10) as ws:
        skipped = create(http)
        watched = create(http)
        http.post(f"/workitems/{watched}/subscribers/{me}")
        assert about(receive_until(ws, watched), skipped) == []
    assert http.post(f"/workitems/{new_uid()}/subscribers/{me}/suspend").status_code == 400


def test_capabilities_list_the_worklist_service(http: httpx.Client):
    r = http.options("/workitems")
    assert set(r.headers["allow"].split(", ")) >= {"GET", "POST", "OPTIONS"}
    assert b'path="workitems/{workitem}/state"' in r.content
    r = http.options(f"/workitems/{new_uid()}/state")
    assert "PUT" in r.headers["allow"]


def test_an_open_channel_hears_the_node_going_down(tmp_path):
    node = Node(node_settings(tmp_path))
    node.start()
    try:
        me = aet()
        with httpx.Client(base_url=root_of(node), timeout=30) as client:
            assert client.post(f"/workitems/{GLOBAL}/subscribers/{me}").status_code == 201
        with connect(ws_url(node, me), open_timeout=10) as ws:
            with httpx.Client(base_url=root_of(node), timeout=30) as client:
                uid = create(client)
            receive_until(ws, uid)  # the channel is live
            stopper = threading.Thread(target=node.stop)
            stopper.start()
            (report,) = receive(ws, 1)
            stopper.join(30)
        assert event_type(report) == 4
        assert report["00741242"]["Value"] == ["GOING DOWN"]
    finally:
        node.stop()


def test_malformed_requests_get_a_clear_4xx_and_change_nothing(http: httpx.Client):
    uid = create(http)
    before = http.get(f"/workitems/{uid}").json()
    bad_bodies = [
        b"[]",
        b'{"00741204": "CT head"}',
        b'{"nottag": {"vr": "LO"}}',
        b'{"00741204": {"vr": "LO", "Value": "CT head"}}',
        b'{"0040A370": {"vr": "SQ", "Value": [7]}}',
    ]
    for body in bad_bodies:
        r = http.post(f"/workitems/{uid}", content=body, headers=JSON_TYPE)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["message"]
    assert http.get("/workitems/not-a-uid").status_code == 400
    assert (
        http.post(
            f"/workitems?{'9' * 80}", content=json.dumps(item()), headers=JSON_TYPE
        ).status_code
        == 400
    )
    assert (
        http.post(
            f"/workitems/{uid}", content=b"x" * (5 * 1024 * 1024), headers=JSON_TYPE
        ).status_code
        == 413
    )
    r = http.post(f"/workitems/{uid}/subscribers/{'A' * 17}")
    assert r.status_code == 400
    assert http.get(f"/workitems/{uid}").json() == before


def test_events_logged_by_another_process_reach_an_open_channel(node: Node, http: httpx.Client):
    me = aet()
    pid = "X" + uuid.uuid4().hex[:8]
    http.post(f"/workitems/{FILTERED}/subscribers/{me}", params={"PatientID": pid})
    other = Archive(node.settings.resolved_index_url, node.settings.resolved_blob_url)
    try:  # another Archive on the same index: its own event bus, like another process
        with connect(ws_url(node, me), open_timeout=10) as ws:
            uid = other.workitems.create(item(patient_id=pid)).uid
            (report,) = receive(ws, 1)
            assert report["00001000"]["Value"] == [uid]
    finally:
        other.close()
