"""The audit trail end to end: real clients (DCMTK, pynetdicom, httpx) do what a day at a
hospital does, and the trail holds one schema-valid message per event, with the codes
and participants of PS3.15 A.5.3, searchable by `GET /api/audit` and `isthmus audit`.

One node for the module (tokens configured, so HTTP callers authenticate); the clients
run once in the fixture and each test reads what the trail kept.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pynetdicom import AE, evt
from pynetdicom.presentation import StoragePresentationContexts

from isthmus import cli
from isthmus.config import Peer, Settings
from isthmus.server import Node
from isthmus.testing import dcmtk
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port
from isthmus.web.auth import hash_token

from .schema import check, code

ADMIN, USER, PROMETHEUS = "admin-secret", "reader-secret", "prom-secret"
TOKENS = {
    "admin": {"hash": hash_token(ADMIN), "permissions": ["admin"]},
    "reader": {"hash": hash_token(USER), "permissions": ["read", "write"]},
    "prometheus": {"hash": hash_token(PROMETHEUS), "permissions": ["metrics"]},
}
NAMES = ("AUDIT^ALICE", "AUDIT^BOB")  # must never reach an info-level log line


@dataclass
class Day:
    node: Node
    study_a: str  # sent by DCMTK storescu, then queried, C-GET and C-MOVE
    study_b: str  # STOW-RS, QIDO, WADO-RS, then DELETE
    first_a: Path | None = None  # one instance of study A, fetched with WADO-URI
    logs: list[logging.LogRecord] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.node.http_port}", headers=headers, timeout=60
        )

    def of(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.entries
            if e["event"] == event and all(e.get(k) == v for k, v in match.items())
        ]


class _Keep(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    if dcmtk.missing_tools():
        pytest.fail(f"DCMTK tools missing: {dcmtk.missing_tools()}")
    folder = tmp_path_factory.mktemp("audit")
    dest_port = free_port()
    destination = AE("DEST")
    destination.supported_contexts = StoragePresentationContexts
    server = destination.start_server(
        ("127.0.0.1", dest_port), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda e: 0x0000)]
    )
    settings = Settings(
        data=folder / "data",
        dicom_port=free_port(),
        http_port=free_port(),
        check_on_start=False,
        tokens=TOKENS,
        peers=(Peer("DEST", "127.0.0.1", dest_port),),
    )
    records: list[logging.LogRecord] = []
    keep = _Keep(records)
    root = logging.getLogger("isthmus")
    previous = root.level
    root.addHandler(keep)
    root.setLevel(logging.INFO)
    try:
        with Node(settings) as node:
            today = Day(node, "", "", logs=records)
            _a_day(today, folder)
            node.audit.flush()
            today.entries = _all(node)
            yield today
    finally:
        root.removeHandler(keep)
        root.setLevel(previous)
        server.shutdown()


def _a_day(day: Day, folder: Path) -> None:
    node = day.node
    port = str(node.dicom_port)
    a = write_study(
        StudySpec(
            patient_name=NAMES[0], patient_id="PIDA", instances_per_series=3, rows=8, columns=8
        ),
        folder / "a",
    )
    day.study_a = _study_uid(a[0])
    day.first_a = a[0]
    _ok("storescu", "-aet", "MODALITY", "-aec", "ISTHMUS", "127.0.0.1", port, *map(str, a))
    _ok(
        "findscu",
        "-S",
        "-aet",
        "FINDSCU",
        "-aec",
        "ISTHMUS",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "PatientID=PIDA",
        "-k",
        "StudyInstanceUID",
        "127.0.0.1",
        port,
    )
    out = folder / "got"
    out.mkdir()
    _ok(
        "getscu",
        "-S",
        "-aet",
        "GETSCU",
        "-aec",
        "ISTHMUS",
        "-od",
        str(out),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={day.study_a}",
        "127.0.0.1",
        port,
    )
    _ok(
        "movescu",
        "-S",
        "-aet",
        "MOVESCU",
        "-aec",
        "ISTHMUS",
        "-aem",
        "DEST",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={day.study_a}",
        "127.0.0.1",
        port,
    )
    refused = dcmtk.run("echoscu", "-aet", "STRANGER", "-aec", "NOBODY", "127.0.0.1", port)
    assert refused.returncode != 0
    for malformed in MALFORMED.values():
        assert _raw(node.dicom_port, malformed)[:1] == b"\x07"  # A-ABORT
    echo = AE("PYNETDICOM")
    echo.add_requested_context("1.2.840.10008.1.1")
    assoc = echo.associate("127.0.0.1", node.dicom_port, ae_title="ISTHMUS")
    assert assoc.is_established
    assoc.send_c_echo()
    assoc.release()
    _web(day, folder)


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def _associate_rq(calling: bytes) -> bytes:
    """An A-ASSOCIATE-RQ (PS3.8 9.3.2) to ISTHMUS from the raw 16 bytes `calling`."""
    body = (
        struct.pack(">HH", 1, 0)
        + b"ISTHMUS".ljust(16)
        + calling.ljust(16)
        + bytes(32)
        + _item(0x10, b"1.2.840.10008.3.1.1.1")
        + _item(0x20, b"\x01\x00\x00\x00" + _item(0x30, b"1.2.840.10008.1.1"))
        + _item(0x50, _item(0x51, struct.pack(">I", 16384)))
    )
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


# What no DICOM toolkit sends: a calling AE title with control characters (PS3.5 6.2),
# and a P-DATA-TF before any association.
MALFORMED = {
    "control characters": _associate_rq(b"EVIL\x01\x1b"),
    "no A-ASSOCIATE-RQ": b"\x04\x00\x00\x00\x00\x04\x00\x00\x00\x00",
}


def _raw(port: int, data: bytes) -> bytes:
    """What the node answers to `data` sent on a new connection, up to its close."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


def _web(day: Day, folder: Path) -> None:
    b = write_study(
        StudySpec(
            patient_name=NAMES[1], patient_id="PIDB", instances_per_series=2, rows=8, columns=8
        ),
        folder / "b",
    )
    day.study_b = _study_uid(b[0])
    body = (
        b"".join(
            b"--xx\r\nContent-Type: application/dicom\r\n\r\n" + p.read_bytes() + b"\r\n" for p in b
        )
        + b"--xx--\r\n"
    )
    with day.http(USER) as reader:
        stow = reader.post(
            "/dicom-web/studies",
            content=body,
            headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=xx'},
        )
        assert stow.status_code == 200, stow.text
        assert reader.get("/dicom-web/studies", params={"PatientID": "PIDB"}).status_code == 200
        assert reader.get(f"/dicom-web/studies/{day.study_b}").status_code == 200
        assert reader.get(f"/dicom-web/studies/{day.study_b}/metadata").status_code == 200
        assert reader.delete(f"/dicom-web/studies/{day.study_b}").status_code == 403
        assert reader.get("/wado", params=_wado_uri(day.first_a)).status_code == 200
    with day.http("wrong-token") as stranger:
        assert stranger.get("/dicom-web/studies").status_code == 401
    with day.http(ADMIN) as admin:
        assert admin.delete(f"/dicom-web/studies/{day.study_b}").status_code == 200


def _wado_uri(path: Path | None) -> dict[str, str]:
    from pydicom import dcmread

    assert path is not None
    ds = dcmread(path, stop_before_pixels=True)
    return {
        "requestType": "WADO",
        "studyUID": str(ds.StudyInstanceUID),
        "seriesUID": str(ds.SeriesInstanceUID),
        "objectUID": str(ds.SOPInstanceUID),
        "contentType": "application/dicom",
    }


def _ok(tool: str, *args: str) -> None:
    done = dcmtk.run(tool, *args)
    assert done.returncode == 0, f"{tool}: {done.stdout}{done.stderr}"


def _study_uid(path: Path) -> str:
    from pydicom import dcmread

    return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def _all(node: Node) -> list[dict[str, Any]]:
    with httpx.Client(base_url=f"http://127.0.0.1:{node.http_port}", timeout=60) as client:
        reply = client.get(
            "/api/audit", params={"limit": 10_000}, headers={"Authorization": f"Bearer {ADMIN}"}
        )
    assert reply.status_code == 200, reply.text
    return list(reply.json())


# ------------------------------------------------------------------ the messages
def test_every_message_of_the_day_is_valid_against_the_standard_schema(day: Day) -> None:
    assert len(day.entries) >= 10
    for entry in day.entries:
        check(entry["xml"])
    kinds = {e["event"] for e in day.entries}
    assert {
        "application",
        "association",
        "query",
        "stored",
        "transferred",
        "deleted",
        "authentication",
    } <= kinds


def test_entries_are_newest_first_with_the_documented_shape(day: Day) -> None:
    times = [e["time"] for e in day.entries]
    assert times == sorted(times, reverse=True)
    assert set(day.entries[0]) == {
        "time",
        "event",
        "action",
        "outcome",
        "user",
        "source",
        "patients",
        "studies",
        "xml",
    }


def test_application_start_is_logged(day: Day) -> None:
    (started,) = day.of("application")
    doc = check(started["xml"])
    assert code(doc, "EventIdentification/EventTypeCode")[0] == "110120"


def test_a_storescu_association_is_one_stored_message_per_study(day: Day) -> None:
    (stored,) = day.of("stored", user="MODALITY")
    assert stored["studies"] == [day.study_a]
    assert stored["patients"] == [{"id": "PIDA", "name": NAMES[0]}]
    assert (stored["action"], stored["outcome"], stored["source"]) == ("C", 0, "127.0.0.1")
    doc = check(stored["xml"])
    assert code(doc, "EventIdentification/EventID")[0] == "110104"
    sop = doc.find("ParticipantObjectIdentification/ParticipantObjectDescription/SOPClass")
    assert sop.get("NumberOfInstances") == "3"


def test_c_find_is_a_query_message_holding_the_identifier(day: Day) -> None:
    (query,) = day.of("query", user="FINDSCU")
    doc = check(query["xml"])
    obj = doc.find("ParticipantObjectIdentification")
    assert obj.get("ParticipantObjectID") == "1.2.840.10008.5.1.4.1.2.2.1"
    import base64

    assert b"PIDA" in base64.b64decode(obj.findtext("ParticipantObjectQuery"))


def test_c_get_and_c_move_are_transfers_of_the_study_to_whom_it_went(day: Day) -> None:
    (get,) = day.of("transferred", user="GETSCU")
    (move,) = day.of("transferred", user="MOVESCU")
    for entry in (get, move):
        assert entry["studies"] == [day.study_a]
        assert entry["patients"][0]["id"] == "PIDA"
        assert entry["action"] == "R"
    destinations = [
        p.get("UserID")
        for p in check(move["xml"]).findall("ActiveParticipant")
        if (r := p.find("RoleIDCode")) is not None and r.get("csd-code") == "110152"
    ]
    assert destinations == ["DEST"]


def test_associations_accepted_and_rejected_are_user_authentication(day: Day) -> None:
    (rejected,) = day.of("association", user="STRANGER")
    assert rejected["outcome"] == 4
    doc = check(rejected["xml"])
    assert code(doc, "EventIdentification/EventID")[0] == "110114"
    assert "not recognized" in doc.findtext("EventIdentification/EventOutcomeDescription")
    (accepted,) = day.of("association", user="PYNETDICOM")
    assert accepted["outcome"] == 0
    assert len(day.of("association", user="MODALITY", outcome=0)) == 1


def test_malformed_association_requests_are_audited_as_rejected(day: Day) -> None:
    """An A-ASSOCIATE-RQ aborted for a protocol error is an association refused
    (docs/operations.md; PS3.15 A.5.3 User Authentication, outcome 4), and the
    caller's raw calling AE title does not break the message's XML."""
    refused = [e for e in day.of("association", outcome=4) if e["user"] != "STRANGER"]
    assert len(refused) == len(MALFORMED)
    for entry in refused:
        doc = check(entry["xml"])
        assert code(doc, "EventIdentification/EventID")[0] == "110114"
        assert doc.findtext("EventIdentification/EventOutcomeDescription")
        assert entry["source"] == "127.0.0.1"
    users = sorted(check(e["xml"]).find("ActiveParticipant").get("UserID") for e in refused)
    assert users == ["EVIL\ufffd\ufffd", "unknown"]


def test_stow_qido_wado_and_delete_are_logged_with_the_http_user(day: Day) -> None:
    (stored,) = day.of("stored", user="reader")
    assert stored["studies"] == [day.study_b]
    assert stored["patients"] == [{"id": "PIDB", "name": NAMES[1]}]
    assert day.of("query", user="reader")
    # the study and its metadata, within a minute: one message (coalesced); WADO-URI
    read, wado_uri = sorted(day.of("transferred", user="reader"), key=lambda e: e["time"])
    assert read["studies"] == [day.study_b]
    assert wado_uri["studies"] == [day.study_a]
    assert wado_uri["patients"][0]["id"] == "PIDA"
    (deleted,) = day.of("deleted", user="admin")
    assert deleted["action"] == "D"
    assert deleted["patients"] == [{"id": "PIDB", "name": NAMES[1]}]


def test_authentication_failures_and_successes_are_logged(day: Day) -> None:
    failures = [e for e in day.of("authentication") if e["outcome"] == 4]
    assert {e["user"] for e in failures} >= {"unknown", "reader"}  # bad token; no delete
    assert len(day.of("authentication", user="reader", outcome=0)) == 1  # once, not per request
    assert day.of("authentication", user="admin", outcome=0)


def test_patient_names_stay_out_of_info_logs(day: Day) -> None:
    assert day.logs, "the handler saw nothing: the check would pass vacuously"
    for record in day.logs:
        text = record.getMessage()
        for name in NAMES:
            assert name not in text and name.replace("^", " ") not in text, text


# ---------------------------------------------------------------- searching
def search(day: Day, token: str | None = ADMIN, **params: Any) -> httpx.Response:
    with day.http(token) as client:
        return client.get("/api/audit", params=params)


def test_api_audit_is_for_administrators_only(day: Day) -> None:
    assert search(day, None).status_code == 401
    assert search(day, USER).status_code == 403
    assert search(day, PROMETHEUS).status_code == 403


def test_api_audit_filters_by_study_patient_user_time_and_limit(day: Day) -> None:
    by_study = search(day, study=day.study_a).json()
    assert by_study and all(day.study_a in e["studies"] for e in by_study)
    assert {e["event"] for e in by_study} == {"stored", "transferred"}
    by_patient = search(day, patient="PIDB").json()
    assert {e["event"] for e in by_patient} == {"stored", "transferred", "deleted"}
    assert search(day, patient="alice").json()[0]["patients"][0]["id"] == "PIDA"
    assert {e["event"] for e in search(day, user="MOVESCU").json()} == {
        "association",
        "transferred",
    }
    assert len(search(day, limit=2).json()) == 2
    assert search(day, to="2000-01-01").json() == []
    newest = day.entries[0]["time"]
    assert search(day, **{"from": newest}).json()[-1]["time"] >= newest
    assert search(day, limit=0).status_code == 400
    assert search(day, **{"from": "yesterday"}).status_code == 400


def test_isthmus_audit_prints_the_same_entries(
    day: Day, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(day.node.settings.data)
    assert cli.main(["audit", "--data", data, "--study", day.study_a, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == search(day, study=day.study_a).json()
    assert cli.main(["audit", "--data", data, "--patient", "PIDA", "--event", "stored"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert "stored/C" in line and "user=MODALITY" in line and NAMES[0] in line
    assert cli.main(["audit", "--data", data, "--user", "nobody-at-all"]) == 0
    assert capsys.readouterr().out == ""
    assert cli.main(["audit", "--data", data, "--from", "not-a-date"]) == 2


def test_application_stop_is_logged_when_the_node_stops(tmp_path: Path) -> None:
    settings = Settings(
        data=tmp_path / "data", dicom_port=free_port(), http_port=free_port(), check_on_start=False
    )
    with Node(settings):
        pass
    from isthmus.audit import Filter
    from isthmus.audit import search as search_log

    states = [
        code(check(e["xml"]), "EventIdentification/EventTypeCode")[2]
        for e in search_log(settings.data / "audit.log", Filter(event="application"))
    ]
    assert states == ["Application Stop", "Application Start"]


def test_isthmus_import_is_one_stored_message_per_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = write_study(
        StudySpec(patient_id="PIDI", instances_per_series=2, rows=8, columns=8), tmp_path / "in"
    )
    data = str(tmp_path / "data")
    assert cli.main(["import", "--data", data, *map(str, files)]) == 0
    capsys.readouterr()
    assert cli.main(["audit", "--data", data, "--json"]) == 0
    (entry,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (entry["event"], entry["studies"]) == ("stored", [_study_uid(files[0])])
    assert entry["patients"][0]["id"] == "PIDI"
    sop = check(entry["xml"]).find(".//SOPClass")
    assert sop.get("NumberOfInstances") == "2"


def test_refused_store_find_and_get_are_failed_events(tmp_path: Path) -> None:
    """Access control (known peers only) refuses a stranger: each refusal is audited."""
    settings = Settings(
        data=tmp_path / "data",
        dicom_port=free_port(),
        http_port=free_port(),
        check_on_start=False,
        access={"store": "known", "find": "known", "get": "known"},
    )
    files = write_study(StudySpec(instances_per_series=2, rows=8, columns=8), tmp_path / "in")
    with Node(settings) as node:
        port = str(node.dicom_port)
        dcmtk.run(
            "storescu", "-aet", "STRANGER", "-aec", "ISTHMUS", "127.0.0.1", port, *map(str, files)
        )
        dcmtk.run(
            "findscu",
            "-S",
            "-aet",
            "STRANGER",
            "-aec",
            "ISTHMUS",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "127.0.0.1",
            port,
        )
        dcmtk.run(
            "getscu",
            "-S",
            "-aet",
            "STRANGER",
            "-aec",
            "ISTHMUS",
            "-od",
            str(tmp_path),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "StudyInstanceUID=1.2.3",
            "127.0.0.1",
            port,
        )
        node.audit.flush()
        entries = _all(node)
    failed = {e["event"] for e in entries if e["user"] == "STRANGER" and e["outcome"] == 4}
    assert failed == {"stored", "query", "transferred"}
    (stored,) = [e for e in entries if e["event"] == "stored"]
    assert "instance(s) failed" in check(stored["xml"]).findtext(".//EventOutcomeDescription")
    assert node.archive.counts()["image"] == 0


def test_worklist_and_ups_c_find_are_query_messages(tmp_path: Path) -> None:
    """PS3.15 A.5.3.10: a Query message for every query received, Modality Worklist and
    UPS among them (they answer with patients' names); a refused one too."""
    from pydicom.dataset import Dataset

    mwl, ups_pull = "1.2.840.10008.5.1.4.31", "1.2.840.10008.5.1.4.34.6.3"
    settings = Settings(
        data=tmp_path / "data",
        dicom_port=free_port(),
        http_port=free_port(),
        check_on_start=False,
        tokens=TOKENS,
        access={"ups": "known"},
        peers=(Peer("RIS", "127.0.0.1", free_port()),),
    )
    with Node(settings) as node:
        for calling in ("RIS", "STRANGER"):
            ae = AE(calling)
            ae.add_requested_context(mwl)
            ae.add_requested_context(ups_pull)
            assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title="ISTHMUS")
            assert assoc.is_established
            query = Dataset()
            query.PatientName = ""
            list(assoc.send_c_find(query, mwl))
            list(assoc.send_c_find(query, ups_pull))
            assoc.release()
        node.audit.flush()
        entries = _all(node)
    found = set()
    for entry in entries:
        if entry["event"] == "query":
            obj = check(entry["xml"]).find("ParticipantObjectIdentification")
            found.add((entry["user"], obj.get("ParticipantObjectID"), entry["outcome"]))
    assert found == {
        ("RIS", mwl, 0),
        ("RIS", ups_pull, 0),
        ("STRANGER", mwl, 0),
        ("STRANGER", ups_pull, 4),  # not a known peer: refused, and told
    }


def test_a_ups_rs_search_is_a_query_message_not_a_transfer(tmp_path: Path) -> None:
    """PS3.15 A.5.3.10: a UPS-RS search (PS3.18 11.9) is a query, with the URL and its
    query string, as QIDO-RS; no DICOM Instances Transferred without instances."""
    settings = Settings(
        data=tmp_path / "data", dicom_port=free_port(), http_port=free_port(), check_on_start=False
    )
    with Node(settings) as node:
        with httpx.Client(base_url=f"http://127.0.0.1:{node.http_port}", timeout=60) as client:
            assert client.get("/dicom-web/workitems", params={"PatientID": "P1"}).status_code < 400
        node.audit.flush()
        entries = [json.loads(line) for line in (tmp_path / "data" / "audit.log").open()]
    assert [e["event"] for e in entries if e["event"] != "application"] == ["query"]
    (query,) = [e for e in entries if e["event"] == "query"]
    obj = check(query["xml"]).find("ParticipantObjectIdentification")
    assert obj.get("ParticipantObjectID") == "/dicom-web/workitems"
    import base64

    assert base64.b64decode(obj.findtext("ParticipantObjectQuery")) == b"PatientID=P1"
