"""The association relay (relay/router.py): a workstation at site A calls AE titles
exported by site B on A's own DICOM port; B's router plays the association against the
real device (DCMTK dcmqrscp and storescp), over a real NATS, sealed end to end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread

from isthmus.archive import Activity, Event
from isthmus.archive.events import LocalEventBus
from isthmus.dicom.part10 import dataset_offset
from isthmus.dicom.ul import items, pdu
from isthmus.relay.crypto import MAGIC, SiteIdentity, peek_header
from isthmus.relay.directory import SiteEntry
from isthmus.relay.router import RelayRouter
from isthmus.relay.wire import OpenRequest
from isthmus.testing import dcmtk
from isthmus.testing.dcmtk import QRSCP, StoreSCP
from isthmus.testing.generate import StudySpec, patients, write_study
from isthmus.testing.nats import TemporaryNATS
from isthmus.testing.net import free_port

from .router_support import Site, entry, export, spying, start_site

pytestmark = pytest.mark.dcmtk
WS = "WORKSTATION"


@dataclass
class Federation:
    nats: TemporaryNATS
    a: Site
    b: Site
    pacs: QRSCP
    store: StoreSCP
    studies: list[list[Path]]  # in PACSB: three small studies, then a big one
    folder: Path
    events: list[Event]  # what site A's relay router published on its event bus

    def args(self, called: str, calling: str = WS) -> list[str]:
        """DCMTK arguments calling `called` on site A's DICOM port."""
        return ["-aet", calling, "-aec", called, "127.0.0.1", str(self.a.dicom_port)]

    def publish_b(self, *, revoked: bool = False) -> None:
        """Site B's entry, as the bridge would publish it, in both directories."""
        b = entry(
            self.b,
            export("B", "PACSB", sites=("A",)),
            export("B", "STOREB", services=("echo", "store")),
            export("B", "ECHOB", services=("echo",)),
            export("B", "HIDDENB", sites=("C",)),
            export("B", "DOWNB"),
            export("B", "STRICTB"),
            revoked=revoked,
        )
        for site in (self.a, self.b):
            site.directory.update(b)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    missing = dcmtk.missing_tools()
    if missing:
        pytest.fail(f"DCMTK tools missing: {missing}")
    folder = tmp_path_factory.mktemp("federation")
    nats = TemporaryNATS().start()
    a = start_site("A", nats.url)
    b = start_site("B", nats.url)
    store = StoreSCP(folder / "storeb", aet="STOREB").start()
    pacs = QRSCP(
        folder / "pacs", ["PACSB", "ECHOB", "HIDDENB"], {"STOREB": store.port}, strict=("STRICTB",)
    ).start()
    try:
        studies = [
            write_study(spec, folder / f"study{i}")
            for i, spec in enumerate(patients(3, instances_per_series=2))
        ]
        big = StudySpec(patient_name="MANY^MATCHES", patient_id="PIDMANY", instances_per_series=200)
        studies.append(write_study(big, folder / "big"))
        for files in studies:
            pacs.load(files, "PACSB")
        fed = Federation(nats, a, b, pacs, store, studies, folder, [])
        third = SiteIdentity.create("C")  # a site that exports PACSC to everyone
        for site in (a, b):
            site.directory.update(entry(a))
            site.directory.update(SiteEntry("C", third.keys, exports=(export("C", "PACSC"),)))
        bus = LocalEventBus()
        bus.subscribe("", fed.events.append)
        fed.publish_b()
        exports = {
            aet: ("127.0.0.1", pacs.port) for aet in ("PACSB", "ECHOB", "HIDDENB", "STRICTB")
        }
        exports["STOREB"] = ("127.0.0.1", store.port)
        exports["DOWNB"] = ("127.0.0.1", free_port())
        for site, own_exports in ((a, {}), (b, exports)):
            site.relay = RelayRouter(
                link=site.link,
                identity=site.identity,
                directory=site.directory,
                exports=own_exports,
                node=site.port,
                calling_aet=f"RELAY{site.name}",
                timeout=10.0,
                activity=Activity(bus) if site is a else None,
                # Site A's own access rules (node.access.AccessControl.allowed's shape).
                allowed=lambda service, aet, address: aet != "STRANGER",
            )
            site.relay.start()
        yield fed
    finally:
        for site in (a, b):
            site.close()
        pacs.stop()
        store.stop()
        nats.close()


def run(name: str, *args: str, cwd: Path | None = None) -> tuple[int, str]:
    done = dcmtk.run(name, *args, cwd=cwd, timeout=120)
    return done.returncode, done.stdout + done.stderr


def find(fed: Federation, level: str, out: Path, *keys: str, root: str = "-S") -> list:
    out.mkdir(parents=True, exist_ok=True)
    code, output = run(
        "findscu",
        root,
        "-X",
        "-od",
        str(out),
        *fed.args("PACSB"),
        "-k",
        f"QueryRetrieveLevel={level}",
        *(arg for key in keys for arg in ("-k", key)),
    )
    assert code == 0, output
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def uids_of(path: Path) -> list[str]:
    """Query keys naming the study and series of an instance (the hierarchical keys
    dcmqrscp needs at IMAGE level, PS3.4 C.4.1.2.2)."""
    ds = dcmread(path)
    return [f"StudyInstanceUID={ds.StudyInstanceUID}", f"SeriesInstanceUID={ds.SeriesInstanceUID}"]


def test_the_routes_are_the_remote_ae_titles_exported_to_the_site(federation: Federation) -> None:
    assert federation.a.relay is not None
    assert federation.a.relay.routes() == ["DOWNB", "ECHOB", "PACSB", "PACSC", "STOREB", "STRICTB"]
    assert federation.b.relay is not None and federation.b.relay.routes() == ["PACSC"]


def test_c_echo_is_answered_by_the_far_device(federation: Federation) -> None:
    code, output = run("echoscu", "-v", *federation.args("PACSB"))
    assert code == 0, output
    assert "Received Echo Response (Success)" in output


def test_c_find_every_level_through_the_relay(federation: Federation, tmp_path: Path) -> None:
    fed = federation
    first = dcmread(fed.studies[0][0])
    patients_found = find(
        fed, "PATIENT", tmp_path / "p", "PatientID=PID0000", "PatientName", root="-P"
    )
    assert [str(p.PatientName) for p in patients_found] == [str(first.PatientName)]
    studies = find(fed, "STUDY", tmp_path / "st", "PatientID", "StudyInstanceUID")
    assert len(studies) == 4
    series = find(
        fed,
        "SERIES",
        tmp_path / "se",
        f"StudyInstanceUID={first.StudyInstanceUID}",
        "SeriesInstanceUID",
    )
    assert [s.SeriesInstanceUID for s in series] == [first.SeriesInstanceUID]
    images = find(
        fed,
        "IMAGE",
        tmp_path / "im",
        f"StudyInstanceUID={first.StudyInstanceUID}",
        f"SeriesInstanceUID={first.SeriesInstanceUID}",
        "SOPInstanceUID",
    )
    assert sorted(i.SOPInstanceUID for i in images) == sorted(
        dcmread(p).SOPInstanceUID for p in fed.studies[0]
    )


def test_c_find_with_many_matches_streams_every_pending_response(
    federation: Federation, tmp_path: Path
) -> None:
    big = dcmread(federation.studies[-1][0])
    images = find(
        federation,
        "IMAGE",
        tmp_path,
        f"StudyInstanceUID={big.StudyInstanceUID}",
        f"SeriesInstanceUID={big.SeriesInstanceUID}",
        "SOPInstanceUID",
    )
    assert len(images) == 200


def test_c_cancel_reaches_the_far_device(
    federation: Federation, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """findscu cancels after 3 responses: the C-CANCEL-RQ goes to dcmqrscp (which may
    have sent every match already: then its final status is Success, PS3.4 C.4.1.2.3)."""
    with caplog.at_level("DEBUG", logger="isthmus.relay.session"):
        code, output = run(
            "findscu",
            "-v",
            "-S",
            "--cancel",
            "3",
            "-X",
            "-od",
            str(tmp_path),
            *federation.args("PACSB"),
            "-k",
            "QueryRetrieveLevel=IMAGE",
            *(arg for key in uids_of(federation.studies[-1][0]) for arg in ("-k", key)),
            "-k",
            "SOPInstanceUID",
        )
    assert code == 0, output
    assert "Received Final Find Response" in output
    assert 3 <= len(list(tmp_path.glob("rsp*.dcm"))) <= 200
    written = [
        r.getMessage() for r in caplog.records if "to the local peer: 0x0FFF" in r.getMessage()
    ]
    assert len(written) == 1 and written[0].startswith("relay A:WORKSTATION->PACSB"), written


def test_c_store_arrives_byte_identical_at_the_far_storescp(
    federation: Federation, tmp_path: Path
) -> None:
    """A 1.3 MB instance: its data set crosses NATS in several envelopes."""
    [path] = write_study(
        StudySpec(patient_name="LARGE^ONE", instances_per_series=1, rows=800, columns=800), tmp_path
    )
    code, output = run("storescu", *federation.args("STOREB"), str(path))
    assert code == 0, output
    uid = dcmread(path).SOPInstanceUID
    [received] = [p for p in federation.store.received() if p.name.endswith(uid)]
    sent, got = path.read_bytes(), received.read_bytes()
    assert got[dataset_offset(got) :] == sent[dataset_offset(sent) :]


def test_c_store_into_the_far_pacs_then_find_it(federation: Federation, tmp_path: Path) -> None:
    files = write_study(
        StudySpec(patient_name="STORED^VIA", patient_id="PIDVIA", instances_per_series=3),
        tmp_path / "in",
    )
    code, output = run("storescu", *federation.args("PACSB"), *map(str, files))
    assert code == 0, output
    found = find(federation, "IMAGE", tmp_path / "out", *uids_of(files[0]), "SOPInstanceUID")
    assert len(found) == 3


def test_c_move_to_a_destination_at_the_far_site(federation: Federation) -> None:
    fed = federation
    study = fed.studies[1]
    uid = dcmread(study[0]).StudyInstanceUID
    code, output = run(
        "movescu",
        "-v",
        "-S",
        "-aem",
        "STOREB",
        *fed.args("PACSB"),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={uid}",
    )
    assert code == 0, output
    received = {p.name for p in fed.store.received()}
    for path in study:
        sop = dcmread(path).SOPInstanceUID
        assert any(name.endswith(sop) for name in received)


def test_c_get_brings_the_instances_back_through_the_relay(
    federation: Federation, tmp_path: Path
) -> None:
    study = federation.studies[2]
    uid = dcmread(study[0]).StudyInstanceUID
    code, output = run(
        "getscu",
        "-S",
        "-od",
        str(tmp_path),
        *federation.args("PACSB"),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={uid}",
    )
    assert code == 0, output
    got = {dcmread(p).SOPInstanceUID for p in tmp_path.iterdir()}
    assert got == {dcmread(p).SOPInstanceUID for p in study}


@pytest.mark.parametrize(
    "called, tool, calling, reason",
    [
        ("NOSUCHAE", "echoscu", WS, "Called AE Title Not Recognized"),  # unknown anywhere
        ("HIDDENB", "echoscu", WS, "Called AE Title Not Recognized"),  # exported to C only
        ("ECHOB", "findscu", WS, "No Reason"),  # exported to A for C-ECHO only
        ("PACSB", "echoscu", "STRANGER", "Calling AE Title Not Recognized"),  # site A's rules
    ],
)
def test_refused_at_the_calling_site_before_anything_leaves_it(
    federation: Federation, called: str, tool: str, calling: str, reason: str
) -> None:
    args = ["-S", "-k", "QueryRetrieveLevel=STUDY"] if tool == "findscu" else []
    with spying(federation.nats, "relay.>") as spy:
        code, output = run(tool, *args, *federation.args(called, calling))
        seen = spy.stop()
    assert code != 0
    assert "Association Rejected" in output and reason in output, output
    assert seen == []


def test_a_revoked_site_loses_its_routes_and_is_refused(federation: Federation) -> None:
    fed = federation
    assert fed.a.relay is not None
    fed.publish_b(revoked=True)
    try:
        assert "PACSB" not in fed.a.relay.routes()
        with spying(fed.nats, "relay.>") as spy:
            code, output = run("echoscu", *fed.args("PACSB"))
            seen = spy.stop()
        assert code != 0 and "Association Rejected" in output
        assert seen == []
    finally:
        fed.publish_b()
    assert "PACSB" in fed.a.relay.routes()


def test_the_far_device_s_own_rejection_is_the_caller_s(federation: Federation) -> None:
    """STRICTB (dcmqrscp) rejects every calling AE title but one nobody uses."""
    with spying(federation.nats) as spy:
        code, output = run("echoscu", *federation.args("STRICTB"))
        seen = spy.stop()
    assert code != 0
    assert "Rejected Permanent, Source: Service User" in output, output
    kinds = [peek_header(data)["kind"] for _subject, data in seen if data[:4] == MAGIC]
    assert kinds == ["open", "reject"]  # asked at site B, refused by the device there


def test_a_far_device_that_is_down_gets_a_transient_rejection(federation: Federation) -> None:
    code, output = run("echoscu", *federation.args("DOWNB"))
    assert code != 0
    assert "Association Rejected" in output and "Transient" in output


def test_no_patient_data_crosses_nats_in_the_clear(federation: Federation, tmp_path: Path) -> None:
    fed = federation
    files = write_study(
        StudySpec(
            patient_name="SECRET^PATIENT",
            patient_id="PIDSECRET",
            accession="ACCSECRET",
            instances_per_series=2,
        ),
        tmp_path / "in",
    )
    with spying(fed.nats) as spy:
        code, output = run("storescu", *fed.args("PACSB"), *map(str, files))
        assert code == 0, output
        found = find(
            fed, "IMAGE", tmp_path / "out", *uids_of(files[0]), "SOPInstanceUID", "PatientName"
        )
        seen = spy.stop()
    assert len(found) == 2
    first = dcmread(files[0])
    secrets = [
        b"SECRET^PATIENT",
        b"PIDSECRET",
        b"ACCSECRET",
        first.StudyInstanceUID.encode(),
        first.SeriesInstanceUID.encode(),
    ]
    secrets += [dcmread(p).SOPInstanceUID.encode() for p in files]
    assert len(seen) > 4
    clear = {"from", "to", "ts", "kind", "aid", "cid", "seq", "part", "parts"}
    for subject, data in seen:
        for secret in secrets:
            assert secret not in data and secret not in subject.encode(), (subject, secret)
        if data[:4] == MAGIC:  # an envelope (replies too): routing metadata only in the clear
            assert set(peek_header(data)) <= clear


def test_c_move_to_an_ae_of_another_site_is_refused_without_a_transfer(
    federation: Federation,
) -> None:
    """PACSC is site C's: moving there is a transfer (relay/transfer.py), not PACSB's
    business; without one the caller hears 0xA801 (PS3.4 C.4.2.1.5)."""
    uid = dcmread(federation.studies[0][0]).StudyInstanceUID
    with spying(federation.nats, "relay.>") as spy:
        code, output = run(
            "movescu",
            "-v",
            "-S",
            "-aem",
            "PACSC",
            *federation.args("PACSB"),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={uid}",
        )
        seen = spy.stop()
    assert "Final Move Response (Refused: MoveDestinationUnknown)" in output, output
    # The association was opened at B and released; the C-MOVE-RQ never left site A.
    to_b = [peek_header(data)["kind"] for subject, data in seen if subject.startswith("relay.B.")]
    assert "open" in to_b and "release" in to_b and "dimse" not in to_b


def test_the_far_site_refuses_services_not_exported_to_the_caller(federation: Federation) -> None:
    """Defence in depth: site B checks the export again, whatever site A's router let out."""
    assert federation.b.relay is not None
    find_model = items.PresentationContextRQ(
        1, "1.2.840.10008.5.1.4.1.2.2.1", ("1.2.840.10008.1.2",)
    )
    request = OpenRequest(WS, "ECHOB", (find_model,), (), "0123abcd")
    answer = federation.b.relay.agent.open("A", request)
    assert answer.reject == (pdu.RESULT_PERMANENT, pdu.SOURCE_SERVICE_USER, pdu.REASON_NO_REASON)
    hidden = OpenRequest(WS, "HIDDENB", (find_model,), (), "0123abcd")
    assert federation.b.relay.agent.open("A", hidden).reject is not None


def test_relayed_associations_are_audited_and_announced(federation: Federation) -> None:
    federation.events.clear()
    assert run("echoscu", *federation.args("PACSB"))[0] == 0
    assert run("echoscu", *federation.args("HIDDENB"))[0] != 0  # no route: the port's RJ
    assert run("findscu", "-S", "-k", "QueryRetrieveLevel=STUDY", *federation.args("ECHOB"))[0] != 0
    audits = [e.payload for e in federation.events if e.topic == "audit.association"]
    assert [(a["outcome"], a["local"], a["door"], a["peer"]) for a in audits] == [
        (0, "PACSB", "relay", "B"),
        (4, "ECHOB", "relay", ""),
    ]

    def topics() -> list[str]:
        return [e.topic for e in federation.events if e.topic.startswith("association.")]

    # "closed" follows the A-RELEASE-RP echoscu already has: wait for it (bounded).
    deadline = time.monotonic() + 30
    while len(topics()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert topics() == ["association.opened", "association.closed"]


def test_a_large_instance_goes_there_and_back_byte_identical(
    federation: Federation, tmp_path: Path
) -> None:
    """C-STORE into PACSB then C-GET back: 1.3 MB data sets, several envelopes each way."""
    spec = StudySpec(patient_name="ROUND^TRIP", instances_per_series=1, rows=800, columns=800)
    [path] = write_study(spec, tmp_path / "in")
    with spying(federation.nats, "relay.>") as spy:
        code, output = run("storescu", *federation.args("PACSB"), str(path))
        assert code == 0, output
        split_to = {
            s.split(".")[2] for s, data in spy.stop() if peek_header(data).get("parts", 1) > 1
        }
    assert split_to == {"a"}  # A -> B: relay.B.a.<aid>
    ds = dcmread(path)
    keys = [*uids_of(path), f"SOPInstanceUID={ds.SOPInstanceUID}", "QueryRetrieveLevel=IMAGE"]
    out = tmp_path / "out"
    out.mkdir()
    with spying(federation.nats, "relay.>") as spy:
        code, output = run(
            "getscu", "-S", "-od", str(out), *federation.args("PACSB"),
            *(arg for key in keys for arg in ("-k", key)),
        )  # fmt: skip
        assert code == 0, output
        split_to = {
            s.split(".")[2] for s, data in spy.stop() if peek_header(data).get("parts", 1) > 1
        }
    assert split_to == {"r"}  # B -> A: the caller's inbox relay.A.r.<cid>
    [back] = list(out.iterdir())
    sent, got = path.read_bytes(), back.read_bytes()
    assert got[dataset_offset(got) :] == sent[dataset_offset(sent) :]
