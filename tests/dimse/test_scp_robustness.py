"""Bad input and load on the DICOM port: malformed datasets, associations aborted in the
middle of a transfer, many associations at once - nothing half-stored, nothing lost."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
from copy import deepcopy
from io import BytesIO
from pathlib import Path

import pytest
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_FIND, C_GET
from pynetdicom.status import code_to_category as status_category

from isthmus.dicom import part10
from isthmus.server import Node
from isthmus.testing.generate import StudySpec, ct_instance, study, write_study

from .support import (
    address,
    associate_rq,
    c_store_pdus,
    c_store_request,
    dataset_bytes,
    read_pdu,
    reset,
    run_ok,
    send_raw_c_store,
    send_raw_request,
    sop_uid_of,
    stored,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def encoded(ds) -> bytes:
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, ds)
    return buf.getvalue()


def nothing_half_stored(node: Node) -> None:
    report = node.archive.check(repair=False)
    assert (report["partial"], report["orphans"], report["missing"]) == (0, 0, 0)


def _instance(rows: int = 16):
    return next(study(StudySpec(instances_per_series=1, rows=rows, columns=rows)))


def _garbage(ds) -> bytes:
    return b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100" + bytes(range(256)) * 4


def _truncated(ds) -> bytes:
    return encoded(ds)[:-200]


def _missing_uid(ds) -> bytes:
    copy = deepcopy(ds)
    del copy.SOPInstanceUID
    return encoded(copy)


def _bad_uid(ds) -> bytes:
    copy = deepcopy(ds)
    copy.StudyInstanceUID = "1.2.abc"
    return encoded(copy)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "make, expected",
    [
        (_garbage, "C"),
        (_truncated, "C"),
        (_missing_uid, "C"),
        (_bad_uid, "C"),
    ],
    ids=["garbage", "truncated", "no-sop-instance-uid", "invalid-uid"],
)
def test_malformed_dataset_gets_a_failure_and_nothing_is_stored(
    module_node: Node, make, expected: str
) -> None:
    ds = _instance()
    ae = AE(ae_title="BROKEN")
    ae.add_requested_context(CT, EXPLICIT_LE)
    assoc = ae.associate("127.0.0.1", module_node.dicom_port, ae_title=module_node.settings.aet)
    assert assoc.is_established
    try:
        status = send_raw_c_store(assoc, c_store_request(CT, str(ds.SOPInstanceUID), make(ds)))
        assert f"{status:04X}".startswith(expected), f"status 0x{status:04X}"
        assert not module_node.archive.instances(sop_uid=str(ds.SOPInstanceUID))
        good = _instance()  # the association is still usable
        assert (
            send_raw_c_store(assoc, c_store_request(CT, str(good.SOPInstanceUID), encoded(good), 2))
            == 0x0000
        )
    finally:
        assoc.release()
    assert stored(module_node, str(good.SOPInstanceUID))[1] == encoded(good)
    nothing_half_stored(module_node)


def test_file_meta_elements_in_a_data_set_are_dropped_with_a_warning(
    module_node: Node, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """pynetdicom sends a data set as it is given, group 0002 elements included (a script
    that set TransferSyntaxUID on the data set, not its file_meta).  PS3.10 7.1: they are
    a file's meta, no attribute of the instance: stored without them, under the
    archive's own meta - one group 0002, which dcmdump reads without a complaint.  The
    sender is told: 0xB006 Elements Discarded, the tags in the Offending Element and the
    Error Comment (PS3.4 B.2.3), which pynetdicom takes for stored (a warning)."""
    ds = _instance()
    sent = deepcopy(ds)
    sent.MediaStorageSOPClassUID = MR
    sent.TransferSyntaxUID = "1.2.840.10008.1.2.2"  # Explicit VR Big Endian: not the context's
    ae = AE(ae_title="CARELESS")
    ae.add_requested_context(CT, EXPLICIT_LE)
    assoc = ae.associate("127.0.0.1", module_node.dicom_port, ae_title=module_node.settings.aet)
    try:
        with caplog.at_level(logging.INFO):
            status = assoc.send_c_store(sent)
    finally:
        assoc.release()
    assert status.Status == 0xB006 and status_category(status.Status) == "Warning"
    assert list(status.OffendingElement) == [0x00020002, 0x00020010]
    assert "(0002,0002) (0002,0010)" in status.ErrorComment
    assert stored(module_node, str(ds.SOPInstanceUID)) == (EXPLICIT_LE, encoded(ds))
    [row] = module_node.archive.instances(sop_uid=str(ds.SOPInstanceUID))
    path = tmp_path / "stored.dcm"
    path.write_bytes(module_node.archive.read_instance(row))
    dump = subprocess.run(["/usr/bin/dcmdump", str(path)], capture_output=True, text=True)
    assert dump.returncode == 0 and "Invalid Element" not in dump.stdout + dump.stderr
    assert dump.stdout.count("(0002,0010)") == 1 and "=LittleEndianExplicit" in dump.stdout
    assert dump.stdout.count("(0002,0002) UI =CTImageStorage") == 1
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("CARELESS" in line and "(0002,0010)" in line for line in warned), warned
    assert not any("DOE" in line for line in warned)


def test_storescu_takes_elements_discarded_for_stored(
    dcmtk_tools: None, module_node: Node, tmp_path: Path
) -> None:
    """DCMTK's storescu sends a file's data set as it reads it, group 0002 elements
    included (it warns "Invalid Element ... found in data set"); the 0xB006 it is
    answered is a warning: it counts the file stored and exits 0 (PS3.4 B.2.3)."""
    ds = _instance()
    stray = deepcopy(ds)
    stray.clear()
    stray.ImplementationVersionName = "CARELESS"
    path = tmp_path / "careless.dcm"
    meta = part10.file_meta(str(ds.SOPClassUID), str(ds.SOPInstanceUID), EXPLICIT_LE)
    path.write_bytes(meta + encoded(stray) + encoded(ds))
    log = run_ok("storescu", "-v", *address(module_node), str(path))
    assert "Received Store Response (Warning: ElementsDiscarded)" in log, log
    assert stored(module_node, str(ds.SOPInstanceUID)) == (EXPLICIT_LE, encoded(ds))


def _encapsulated_pixels(ds):
    """The instance with its pixels as one JPEG-like fragment (undefined length)."""
    copy = deepcopy(ds)
    copy.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])
    copy["PixelData"].VR = "OB"
    copy["PixelData"].is_undefined_length = True
    return copy


@pytest.mark.parametrize(
    "syntax, make",
    [(EXPLICIT_LE, _encapsulated_pixels), (JPEG_BASELINE, deepcopy)],
    ids=["encapsulated-in-explicit-le", "native-in-jpeg-baseline"],
)
def test_pixel_data_contradicting_the_context_gets_c000_and_nothing_is_stored(
    module_node: Node, caplog: pytest.LogCaptureFixture, syntax: str, make
) -> None:
    """PS3.5 A.4 and 8.2: Pixel Data is encapsulated (undefined length) in exactly the
    encapsulated transfer syntaxes.  An instance that breaks it can be neither decoded nor
    transcoded: 0xC000 (cannot understand, PS3.4 B.2.3), nothing stored, the association
    still usable."""
    ds = make(_instance())
    ae = AE(ae_title="MISLABEL")
    ae.add_requested_context(CT, syntax)
    ae.add_requested_context(CT, EXPLICIT_LE)
    assoc = ae.associate("127.0.0.1", module_node.dicom_port, ae_title=module_node.settings.aet)
    try:
        with caplog.at_level(logging.INFO):
            request = c_store_request(CT, str(ds.SOPInstanceUID), encoded(ds))
            status = send_raw_c_store(assoc, request, transfer_syntax=syntax)
        good = _instance()
        request = c_store_request(CT, str(good.SOPInstanceUID), encoded(good), 2)
        assert send_raw_c_store(assoc, request, transfer_syntax=EXPLICIT_LE) == 0x0000
    finally:
        assoc.release()
    assert status == 0xC000
    assert not module_node.archive.instances(sop_uid=str(ds.SOPInstanceUID))
    _refusal_logged(caplog, "MISLABEL", ds)
    nothing_half_stored(module_node)


def _refusal_logged(caplog: pytest.LogCaptureFixture, calling: str, ds) -> None:
    """One line says the store was refused and by whom; none names the patient."""
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any(calling in line and "refused" in line for line in lines), lines
    assert not any(str(ds.PatientName).split("^")[0] in line for line in lines), lines


@pytest.mark.parametrize(
    "change", ["SOPInstanceUID", "SOPClassUID"], ids=["instance-uid", "class-uid"]
)
def test_dataset_not_matching_its_request_gets_a900(
    module_node: Node, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    """PS3.4 B.2.3: the data set's SOP Class/Instance UID must be the request's Affected
    SOP Class/Instance UID (0xA900 otherwise; DCMTK's storescp answers the same)."""
    ds = _instance()
    announced = {"SOPClassUID": str(ds.SOPClassUID), "SOPInstanceUID": str(ds.SOPInstanceUID)}
    setattr(ds, change, MR if change == "SOPClassUID" else "1.2.3.4.5.6.7")
    ae = AE(ae_title="LIAR")
    ae.add_requested_context(CT, EXPLICIT_LE)
    assoc = ae.associate("127.0.0.1", module_node.dicom_port, ae_title=module_node.settings.aet)
    request = c_store_request(announced["SOPClassUID"], announced["SOPInstanceUID"], encoded(ds))
    try:
        with caplog.at_level(logging.INFO):
            status = send_raw_c_store(assoc, request)
    finally:
        assoc.release()
    assert status == 0xA900
    assert not module_node.archive.instances(sop_uid=str(ds.SOPInstanceUID))
    assert not module_node.archive.instances(sop_uid=announced["SOPInstanceUID"])
    _refusal_logged(caplog, "LIAR", ds)


def test_affected_sop_class_other_than_the_context_gets_0122_and_nothing_is_stored(
    module_node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    """An MR instance announced as MR on the CT context: the context's abstract syntax is
    the SOP class of its messages (PS3.7 9.1.1, PS3.8 7.1.1.13), so the request names a
    SOP class not negotiated there - 0x0122 (PS3.7 C.5), as pynetdicom's own C-STORE SCP
    answers.  The association stays usable."""
    ds = _instance()
    ds.SOPClassUID = MR
    ae = AE(ae_title="ELSEWHERE")
    ae.add_requested_context(CT, EXPLICIT_LE)
    assoc = ae.associate("127.0.0.1", module_node.dicom_port, ae_title=module_node.settings.aet)
    try:
        with caplog.at_level(logging.INFO):
            request = c_store_request(MR, str(ds.SOPInstanceUID), encoded(ds))
            status = send_raw_c_store(assoc, request, abstract_syntax=CT)
        good = _instance()
        request = c_store_request(CT, str(good.SOPInstanceUID), encoded(good), 2)
        assert send_raw_c_store(assoc, request) == 0x0000
    finally:
        assoc.release()
    assert status == 0x0122
    assert not module_node.archive.instances(sop_uid=str(ds.SOPInstanceUID))
    _refusal_logged(caplog, "ELSEWHERE", ds)


def _open_association(node: Node, contexts: list) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", node.dicom_port), timeout=30)
    sock.sendall(associate_rq(node.settings.aet, "ABORTER", contexts))
    kind, _ = read_pdu(sock)
    assert kind == 0x02, "association not accepted"
    return sock


@pytest.mark.parametrize(
    "contexts",
    [
        [(1, CT, [EXPLICIT_LE])],
        [(1, CT, [EXPLICIT_LE]), (3, STUDY_ROOT_FIND, [EXPLICIT_LE])],
    ],
    ids=["storage", "storage+find"],
)
@pytest.mark.parametrize("how", ["reset", "a-abort"])
def test_association_aborted_mid_transfer_stores_nothing(
    module_node: Node, contexts: list, how: str
) -> None:
    big = _instance(rows=512)  # 512 KB of pixel data
    data = encoded(big)
    pdus = c_store_pdus(1, c_store_request(CT, str(big.SOPInstanceUID), data))
    assert len(pdus) > 10
    sock = _open_association(module_node, contexts)
    for pdu in pdus[: len(pdus) // 2]:  # command and half of the dataset
        sock.sendall(pdu)
    if how == "reset":
        reset(sock)
    else:
        sock.sendall(b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00")  # A-ABORT, service user
        sock.close()
    after = _instance()  # the node still works
    sock = _open_association(module_node, contexts)
    try:
        for pdu in c_store_pdus(1, c_store_request(CT, str(after.SOPInstanceUID), encoded(after))):
            sock.sendall(pdu)
        kind, _ = read_pdu(sock)
        assert kind == 0x04  # the C-STORE response
    finally:
        sock.sendall(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")  # A-RELEASE-RQ
        read_pdu(sock)
        sock.close()
    assert module_node.archive.instances(sop_uid=str(after.SOPInstanceUID))
    assert not module_node.archive.instances(sop_uid=str(big.SOPInstanceUID))
    nothing_half_stored(module_node)


def test_sixteen_associations_store_at_once_without_loss_or_damage(
    module_node: Node, tmp_path: Path
) -> None:
    associations, per_association = 16, 6
    files = {
        n: write_study(
            StudySpec(
                patient_id=f"PID-C{n}", instances_per_series=per_association, rows=128, columns=128
            ),
            tmp_path / str(n),
        )
        for n in range(associations)
    }
    together = threading.Barrier(associations, timeout=60)
    failures: list[str] = []

    def sender(n: int) -> None:
        ae = AE(ae_title=f"SENDER{n}")
        ae.add_requested_context(CT, EXPLICIT_LE)
        assoc = ae.associate("127.0.0.1", module_node.dicom_port, ae_title=module_node.settings.aet)
        try:
            together.wait()  # all sixteen are open now
            for path in files[n]:
                status = assoc.send_c_store(path)
                if not status or status.Status != 0:
                    failures.append(f"{path}: {status}")
        except Exception as exc:  # reported below
            failures.append(f"sender {n}: {exc!r}")
        finally:
            assoc.release()

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(associations)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []
    for paths in files.values():
        for path in paths:
            assert stored(module_node, sop_uid_of(path))[1] == dataset_bytes(path.read_bytes())
    nothing_half_stored(module_node)


def test_instance_sent_twice_concurrently_is_stored_once(module_node: Node) -> None:
    ds = ct_instance(StudySpec(rows=64, columns=64), "1.2.3.77", "1.2.3.77.1", 1, 1)
    data = encoded(ds)
    statuses: list[int] = []
    together = threading.Barrier(4, timeout=60)

    def sender() -> None:
        ae = AE(ae_title="TWIN")
        ae.add_requested_context(CT, EXPLICIT_LE)
        assoc = ae.associate("127.0.0.1", module_node.dicom_port, ae_title=module_node.settings.aet)
        try:
            together.wait()
            statuses.append(
                send_raw_c_store(assoc, c_store_request(CT, str(ds.SOPInstanceUID), data))
            )
        finally:
            assoc.release()

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [0, 0, 0, 0]
    assert len(module_node.archive.instances(sop_uid=str(ds.SOPInstanceUID))) == 1
    nothing_half_stored(module_node)


# QueryRetrieveLevel=STUDY, then a Patient's Name declaring 0x7FFF bytes and holding 2:
# pydicom read it as the name "xx" and the request was carried out as another one.
_CUT_SHORT = b"\x08\x00\x52\x00CS\x06\x00STUDY \x10\x00\x10\x00PN\xff\x7fxx"


@pytest.mark.parametrize(
    "abstract_syntax, primitive",
    [
        (STUDY_ROOT_FIND, C_FIND),
        ("1.2.840.10008.5.1.4.1.2.2.3", C_GET),  # Study Root GET
        ("1.2.840.10008.5.1.4.34.6.3", C_FIND),  # UPS Pull
    ],
    ids=["c-find", "c-get", "ups-c-find"],
)
def test_an_identifier_cut_short_is_unable_to_process(
    module_node: Node, abstract_syntax: str, primitive: type
) -> None:
    """An identifier whose bytes end inside an element cannot be processed (0xC000: PS3.4
    C.4.1.1.4, C.4.3.1.4, CC.2.8.4; PS3.5 7.1), for every service reading one, as for the
    worklist; it is not read as the bytes that came."""
    ae = AE(ae_title="CUTSHORT")
    ae.add_requested_context(abstract_syntax, EXPLICIT_LE)
    assoc = ae.associate("127.0.0.1", module_node.dicom_port, ae_title=module_node.settings.aet)
    assert assoc.is_established
    try:
        req = primitive()
        req.MessageID = 1
        req.AffectedSOPClassUID = abstract_syntax
        req.Priority = 2
        req.Identifier = BytesIO(_CUT_SHORT)
        assert send_raw_request(assoc, req, abstract_syntax).Status == 0xC000
    finally:
        assoc.release()
