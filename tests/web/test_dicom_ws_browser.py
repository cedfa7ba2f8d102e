"""The browser as a DICOM node, end to end: headless Chromium running the node page
(viewer/node.html, dicomnet/) through the gateway, against DCMTK tools and the archive.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from isthmus.config import Peer, Settings
from isthmus.dicom.part10 import dataset_offset
from isthmus.server import Node
from isthmus.testing.chromium import CHROMIUM, CHROMIUM_ARGS
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port, wait_for_port

pytestmark = pytest.mark.dcmtk

TIMEOUT_MS = 60_000


def digest_of_dataset(part10: bytes) -> str:
    """SHA-256 of a Part 10 file's dataset (the bytes after its file meta)."""
    return hashlib.sha256(part10[dataset_offset(part10) :]).hexdigest()


@pytest.fixture(scope="module")
def dcmqrscp(tmp_path_factory: pytest.TempPathFactory, dcmtk: None) -> Iterator[Peer]:
    """DCMTK's Q/R SCP on a free port, holding one study of patient ROE^RICHARD."""
    folder = tmp_path_factory.mktemp("dcmqrscp")
    (folder / "db").mkdir()
    port = free_port()
    config = folder / "dcmqrscp.cfg"
    config.write_text(f"""NetworkTCPPort = {port}
MaxPDUSize = 16384
MaxAssociations = 16
HostTable BEGIN
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
DCMQR {folder / "db"} RW (100, 1024mb) ANY
AETable END
""")
    process = subprocess.Popen(
        ["dcmqrscp", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port)
        files = write_study(
            StudySpec(
                patient_name="ROE^RICHARD",
                patient_id="PID777",
                accession="ACC777",
                instances_per_series=3,
            ),
            folder / "in",
        )
        subprocess.run(
            ["storescu", "-aec", "DCMQR", "127.0.0.1", str(port), *map(str, files)],
            check=True,
            timeout=60,
            capture_output=True,
        )
        yield Peer("DCMQR", "127.0.0.1", port)
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, dcmqrscp: Peer) -> Iterator[Node]:
    """A node in developer mode that knows DCMQR and a peer that is down, holding one study."""
    data = tmp_path_factory.mktemp("ws-node")
    settings = Settings(
        data=data,
        dicom_port=free_port(),
        http_port=free_port(),
        index_url=f"sqlite:///{data / 'index.sqlite'}",
        check_on_start=False,
        peers=(dcmqrscp, Peer("DOWN", "127.0.0.1", free_port())),
    )
    with Node(settings) as running:
        for path in write_study(StudySpec(instances_per_series=5), data / "study"):
            assert running.archive.store(path.read_bytes()).ok
        yield running


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any, node: Node) -> Iterator[Page]:
    """The node page in a fresh browser context (its own, empty IndexedDB)."""
    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"http://127.0.0.1:{node.http_port}/node.html")
    page.wait_for_selector("body[data-ready=true]")
    try:
        yield page
    finally:
        context.close()
    assert not errors, errors


def register(page: Page, aet: str) -> None:
    page.fill("#aet", aet)
    page.click("#register-button")
    expect(page.locator("#node-status")).to_contain_text(f"Registered as {aet}")


def received_count(page: Page) -> int:
    return page.locator("#received tbody tr").count()


def stored_digests(page: Page) -> dict[str, str]:
    digests = page.evaluate("() => window.dicomNode.datasetDigests()")
    return {uid: d["sha256"] for uid, d in digests.items()}


def find(page: Page, peer: str, level: str = "STUDY", **keys: str) -> None:
    page.select_option("#peer", peer)
    page.select_option("#query select[name=level]", level)
    for name in (
        "PatientName",
        "PatientID",
        "StudyDate",
        "AccessionNumber",
        "Modality",
        "StudyInstanceUID",
        "SeriesInstanceUID",
    ):
        page.fill(f"#query input[name={name}]", keys.get(name, ""))
    page.click("#find-button")
    expect(page.locator("#query-status")).to_contain_text(re.compile(r"match|failed"))


def test_dcmtk_echoscu_reaches_a_registered_browser(page: Page, node: Node) -> None:
    register(page, "BROWSER1")
    result = subprocess.run(
        ["echoscu", "-aec", "BROWSER1", "127.0.0.1", str(node.dicom_port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    expect(page.locator("#incoming li").first).to_contain_text("ECHOSCU → BROWSER1")
    expect(page.locator("#incoming li").first).to_contain_text("released")


def test_an_unregistered_ae_title_is_rejected_not_left_hanging(page: Page, node: Node) -> None:
    register(page, "BROWSER2")
    page.click("#unregister-button")
    result = subprocess.run(
        ["echoscu", "-aec", "BROWSER2", "127.0.0.1", str(node.dicom_port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stderr


def test_storescu_pushes_a_ct_series_into_indexeddb_byte_identical(
    page: Page, node: Node, tmp_path: Path
) -> None:
    register(page, "BROWSER3")
    files = write_study(StudySpec(patient_name="PUSH^ED", instances_per_series=20), tmp_path)
    result = subprocess.run(
        ["storescu", "-aec", "BROWSER3", "127.0.0.1", str(node.dicom_port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    expect(page.locator("#received-count")).to_have_text("(20)")
    expected = {
        str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID): digest_of_dataset(
            path.read_bytes()
        )
        for path in files
    }
    assert stored_digests(page) == expected
    expect(page.locator("#incoming li").first).to_contain_text("20 instances received")


# Every readwrite transaction the page opens, with the durability it asked for.
RECORD_TRANSACTIONS = """() => {
  window.__transactions = [];
  const open = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (...args) {
    const tx = open.apply(this, args);
    if (tx.mode === "readwrite") window.__transactions.push(tx.durability);
    return tx;
  };
}"""

# Each put aborts its transaction, as a quota or disk error would.
ABORT_EVERY_PUT = """() => {
  const put = IDBObjectStore.prototype.put;
  IDBObjectStore.prototype.put = function (...args) {
    const request = put.apply(this, args);
    this.transaction.abort();
    return request;
  };
}"""


def test_each_instance_is_stored_in_a_strict_transaction(
    page: Page, node: Node, tmp_path: Path
) -> None:
    register(page, "BROWSER6")
    page.evaluate(RECORD_TRANSACTIONS)
    files = write_study(StudySpec(patient_name="STRICT^LY", instances_per_series=3), tmp_path)
    result = subprocess.run(
        ["storescu", "-aec", "BROWSER6", "127.0.0.1", str(node.dicom_port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    durabilities = page.evaluate("() => window.__transactions")
    assert durabilities and set(durabilities) == {"strict"}


def test_a_failed_indexeddb_transaction_is_answered_with_a_failure_not_success(
    page: Page, node: Node, tmp_path: Path
) -> None:
    register(page, "BROWSER7")
    page.evaluate(ABORT_EVERY_PUT)
    files = write_study(StudySpec(patient_name="ABOR^TED", instances_per_series=2), tmp_path)
    result = subprocess.run(
        [
            "storescu",
            "-v",
            "--no-halt",
            "-aec",
            "BROWSER7",
            "127.0.0.1",
            str(node.dicom_port),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    responses = re.findall(r"Received Store Response \(([^)]*)\)", result.stdout + result.stderr)
    assert len(responses) == len(files), result.stderr
    assert all(re.search(r"0x0?110|Processing Failure", r) for r in responses), responses
    assert page.evaluate("async () => (await window.dicomNode.session.store.list()).length") == 0


def test_browser_c_finds_the_archive_and_dcmqrscp_with_real_keys(page: Page) -> None:
    find(page, "ISTHMUS", PatientName="DOE*")
    expect(page.locator("#query-status")).to_have_text("1 study match on ISTHMUS.")
    expect(page.locator("#results tbody tr")).to_have_count(1)
    expect(page.locator("#results tbody")).to_contain_text("DOE JANE")
    find(page, "ISTHMUS", PatientName="NOBODY*")
    expect(page.locator("#query-status")).to_have_text("0 study matches on ISTHMUS.")
    find(page, "DCMQR", PatientID="PID777")
    expect(page.locator("#query-status")).to_have_text("1 study match on DCMQR.")
    expect(page.locator("#results tbody")).to_contain_text("ROE RICHARD")


def test_browser_c_finds_every_level(page: Page, node: Node) -> None:
    row = node.archive.instances()[0]
    find(page, "ISTHMUS", "PATIENT", PatientID="PID001")
    expect(page.locator("#query-status")).to_have_text("1 patient match on ISTHMUS.")
    find(page, "ISTHMUS", "SERIES", StudyInstanceUID=row.study_instance_uid)
    expect(page.locator("#query-status")).to_have_text("1 series match on ISTHMUS.")
    find(
        page,
        "ISTHMUS",
        "IMAGE",
        StudyInstanceUID=row.study_instance_uid,
        SeriesInstanceUID=row.series_instance_uid,
    )
    expect(page.locator("#query-status")).to_have_text("5 image matches on ISTHMUS.")


def test_browser_c_moves_a_study_from_the_archive_into_itself(page: Page, node: Node) -> None:
    register(page, "BROWSER4")
    find(page, "ISTHMUS", PatientName="DOE*")
    page.click("#results tbody tr >> text=Move here")
    expect(page.locator("#query-status")).to_have_text("C-MOVE to BROWSER4: 5 of 5 done.")
    expect(page.locator("#received-count")).to_have_text("(5)")
    archived = {
        row.sop_instance_uid: digest_of_dataset(node.archive.read_instance(row))
        for row in node.archive.instances()
    }
    assert stored_digests(page) == archived


def test_browser_c_gets_a_study_without_registering(page: Page, node: Node) -> None:
    find(page, "ISTHMUS", PatientName="DOE*")
    page.click("#results tbody tr >> text=Get")
    expect(page.locator("#query-status")).to_have_text("C-GET: 5 of 5 done.")
    expect(page.locator("#received-count")).to_have_text("(5)")


def test_c_echo_to_a_peer_that_is_down_shows_the_error(page: Page, node: Node) -> None:
    page.select_option("#peer", "DOWN")
    page.click("#echo-button")
    status = page.locator("#peer-status")
    expect(status).to_contain_text("C-ECHO to DOWN failed")
    expect(status).to_contain_text("unreachable")
    expect(status).to_have_class(re.compile("error"))


def test_received_instances_are_viewable_sendable_and_uploadable(
    page: Page, node: Node, tmp_path: Path
) -> None:
    register(page, "BROWSER5")
    files = write_study(
        StudySpec(patient_name="SEND^ON", patient_id="PID555", instances_per_series=2), tmp_path
    )
    subprocess.run(
        ["storescu", "-aec", "BROWSER5", "127.0.0.1", str(node.dicom_port), *map(str, files)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    expect(page.locator("#received-count")).to_have_text("(2)")
    page.locator("#received tbody tr >> text=View").first.click()
    expect(page.locator("#image-dialog [data-role=message]")).to_contain_text("64 × 64")
    page.click("#image-dialog [data-role=close]")
    before = len(node.archive.instances())
    page.click("#select-all")
    page.select_option("#peer", "DCMQR")
    page.click("#send-button")
    expect(page.locator("#received-status")).to_have_text("Sent 2 of 2 to DCMQR.")
    page.click("#upload-button")
    expect(page.locator("#received-status")).to_contain_text("Uploaded 2")
    assert len(node.archive.instances()) == before + 2
    find(page, "DCMQR", PatientID="PID555")
    expect(page.locator("#query-status")).to_have_text("1 study match on DCMQR.")
