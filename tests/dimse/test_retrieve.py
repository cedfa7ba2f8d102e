"""C-MOVE and C-GET (PS3.4 C.4.2, C.4.3): DCMTK movescu to a DCMTK storescp, getscu, and
pynetdicom; sub-operation counts and failure statuses, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_GET, C_MOVE

from isthmus.config import Peer, Settings
from isthmus.dimse import scu
from isthmus.server import Node
from isthmus.testing import catalogue, dcmtk, samples
from isthmus.testing.catalogue import series_uid, sop_uid, study_uid
from isthmus.testing.net import free_port

from .support import address, dataset_bytes, peer, run_ok, send_raw_request

FIELDS = ("Remaining", "Completed", "Failed", "Warning")
MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
GET = "1.2.840.10008.5.1.4.1.2.2.3"
DEFLATED = "1.2.840.10008.1.2.1.99"


def responses(log: str) -> list[dict[str, int | None]]:
    """Sub-operation counts and status of each C-MOVE/C-GET response in a DCMTK -d log."""
    out = []
    for block in re.split(r"Received (?:Final )?(?:Move|Get|C-GET) Response", log)[1:]:
        entry: dict[str, int | None] = {}
        for name in FIELDS:
            found = re.search(rf"{name} Suboperations\s*:\s*(\d+)", block)
            entry[name] = int(found[1]) if found else None
        status = re.search(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})", block)
        entry["status"] = int(status[1], 16) if status else None
        out.append(entry)
    return out


def identifier(level: str, **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


@pytest.fixture(scope="module")
def destinations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dcmtk.StoreSCP]]:
    """Two DCMTK storescp: STORESCP (uncompressed only) and STOREALL (every syntax)."""
    if dcmtk.missing_tools():
        pytest.fail(f"DCMTK tools missing: {dcmtk.missing_tools()}")
    root = tmp_path_factory.mktemp("storescp")
    plain = dcmtk.StoreSCP(root / "plain", "STORESCP").start()
    every = dcmtk.StoreSCP(root / "all", "STOREALL", extra=["--accept-all"])
    try:
        every.start()
        yield {"STORESCP": plain, "STOREALL": every}
    finally:
        plain.stop()
        every.stop()


@pytest.fixture
def received(destinations: dict[str, dcmtk.StoreSCP]) -> Iterator[dict[str, dcmtk.StoreSCP]]:
    """The storescp destinations, emptied before each test."""
    for scp in destinations.values():
        for path in scp.received():
            path.unlink()
    yield destinations


def _peers(destinations: dict[str, dcmtk.StoreSCP]) -> tuple[Peer, ...]:
    return tuple(Peer(aet, "127.0.0.1", scp.port) for aet, scp in destinations.items())


@pytest.fixture(scope="module")
def retrieve_node(
    module_index_url: str,
    module_blob_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    destinations: dict[str, dcmtk.StoreSCP],
) -> Iterator[Node]:
    """A node holding the catalogue plus one RLE instance, knowing both storescp."""
    folder = tmp_path_factory.mktemp("retrieve")
    node = Node(
        Settings(
            data=folder / "data",
            dicom_port=free_port(),
            http_port=free_port(),
            index_url=module_index_url,
            blob_url=module_blob_url,
            peers=_peers(destinations),
        )
    )
    node.start(http=False)
    try:
        catalogue.load(node.archive, folder / "files")
        rle = samples.write_samples(folder / "rle", ["1.2.840.10008.1.2.5"])
        node.archive.store(rle["1.2.840.10008.1.2.5"].read_bytes())
        yield node
    finally:
        node.stop()


def received_uids(scp: dcmtk.StoreSCP) -> list[str]:
    return sorted(str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in scp.received())


def movescu(
    node: Node, destination: str, level: str, *keys: str, model: str = "-S", ok: bool = True
) -> str:
    """Run DCMTK movescu (debug log); it exits non-zero when the move fails."""
    args = [
        model,
        "-d",
        "-aet",
        "MOVESCU",
        "-aem",
        destination,
        "-k",
        f"QueryRetrieveLevel={level}",
    ]
    for key in keys:
        args += ["-k", key]
    if ok:
        return run_ok("movescu", *args, *address(node))
    done = dcmtk.run("movescu", *args, *address(node))
    assert done.returncode != 0
    return done.stdout + done.stderr


# ------------------------------------------------------------------------ movescu
def test_movescu_study_to_storescp_with_pending_counts(
    dcmtk_tools: None, retrieve_node: Node, received: dict[str, dcmtk.StoreSCP]
) -> None:
    log = movescu(retrieve_node, "STORESCP", "STUDY", f"StudyInstanceUID={study_uid('A')}")
    counts = responses(log)
    total = catalogue.instance_count("A")
    pending = [c for c in counts if c["status"] == 0xFF00]
    assert [(c["Remaining"], c["Completed"]) for c in pending] == [
        (total - n, n) for n in range(1, total + 1)
    ]
    final = counts[-1]
    assert (final["status"], final["Completed"], final["Failed"], final["Warning"]) == (
        0x0000,
        total,
        0,
        0,
    )
    assert received_uids(received["STORESCP"]) == sorted(
        sop_uid("A", s, n) for s in (1, 2) for n in (1, 2)
    )


def test_moved_instances_are_the_stored_bytes(
    dcmtk_tools: None, retrieve_node: Node, received: dict[str, dcmtk.StoreSCP]
) -> None:
    movescu(
        retrieve_node,
        "STORESCP",
        "SERIES",
        f"StudyInstanceUID={study_uid('A')}",
        f"SeriesInstanceUID={series_uid('A', 1)}",
    )
    files = received["STORESCP"].received()
    assert len(files) == 2
    for path in files:
        uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        [row] = retrieve_node.archive.instances(sop_uid=uid)
        assert dataset_bytes(path.read_bytes()) == dataset_bytes(
            retrieve_node.archive.read_instance(row)
        )


def test_movescu_patient_root_patient_level_moves_every_study(
    dcmtk_tools: None, retrieve_node: Node, received: dict[str, dcmtk.StoreSCP]
) -> None:
    log = movescu(retrieve_node, "STORESCP", "PATIENT", "PatientID=PID0001", model="-P")
    expected = catalogue.instance_count("A") + catalogue.instance_count("B")
    assert responses(log)[-1]["Completed"] == expected
    assert len(received["STORESCP"].received()) == expected


def test_movescu_image_level_list_of_instances(
    dcmtk_tools: None, retrieve_node: Node, received: dict[str, dcmtk.StoreSCP]
) -> None:
    wanted = [sop_uid("A", 1, 2), sop_uid("A", 2, 1)]
    movescu(
        retrieve_node,
        "STORESCP",
        "IMAGE",
        f"StudyInstanceUID={study_uid('A')}",
        f"SeriesInstanceUID={series_uid('A', 1)}\\{series_uid('A', 2)}",
        "SOPInstanceUID=" + "\\".join(wanted),
    )
    assert received_uids(received["STORESCP"]) == sorted(wanted)


def test_compressed_instance_goes_as_stored_when_accepted(
    dcmtk_tools: None, retrieve_node: Node, received: dict[str, dcmtk.StoreSCP]
) -> None:
    [row] = [
        r
        for r in retrieve_node.archive.instances()
        if r.transfer_syntax_uid == "1.2.840.10008.1.2.5"
    ]
    movescu(retrieve_node, "STOREALL", "STUDY", f"StudyInstanceUID={row.study_instance_uid}")
    [path] = received["STOREALL"].received()
    assert dcmread(path).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"
    stored_bytes = dataset_bytes(retrieve_node.archive.read_instance(row))
    assert dataset_bytes(path.read_bytes()) == stored_bytes


def test_compressed_instance_is_decompressed_for_a_peer_that_wants_uncompressed(
    dcmtk_tools: None, retrieve_node: Node, received: dict[str, dcmtk.StoreSCP]
) -> None:
    [row] = [
        r
        for r in retrieve_node.archive.instances()
        if r.transfer_syntax_uid == "1.2.840.10008.1.2.5"
    ]
    log = movescu(retrieve_node, "STORESCP", "STUDY", f"StudyInstanceUID={row.study_instance_uid}")
    assert responses(log)[-1]["status"] == 0x0000
    [path] = received["STORESCP"].received()
    got = dcmread(path)
    assert got.SOPInstanceUID == row.sop_instance_uid  # the same instance
    assert not got.file_meta.TransferSyntaxUID.is_compressed
    original = dcmread(BytesIO(retrieve_node.archive.read_instance(row)))
    assert (got.pixel_array == original.pixel_array).all()


def test_movescu_to_an_unknown_destination_is_refused_with_a801(
    dcmtk_tools: None, retrieve_node: Node, received: dict[str, dcmtk.StoreSCP]
) -> None:
    log = movescu(retrieve_node, "NOWHERE", "STUDY", f"StudyInstanceUID={study_uid('A')}", ok=False)
    assert responses(log)[-1]["status"] == 0xA801
    assert "MoveDestinationUnknown" in log
    assert all(scp.received() == [] for scp in received.values())


def test_move_of_an_unknown_study_completes_nothing(retrieve_node: Node) -> None:
    report = scu.move(
        peer(retrieve_node), identifier("STUDY", StudyInstanceUID="1.2.3.999"), "STORESCP"
    )
    assert (report.status, report.completed, report.failed) == (0x0000, 0, 0)


def test_move_without_the_unique_key_of_its_level_fails(retrieve_node: Node) -> None:
    report = scu.move(
        peer(retrieve_node), identifier("SERIES", StudyInstanceUID=study_uid("A")), "STORESCP"
    )
    assert report.status == 0xA900


@pytest.mark.parametrize("service", ["move", "get"])
def test_study_root_retrieve_at_patient_level_is_refused_with_a900(
    retrieve_node: Node, received: dict[str, dcmtk.StoreSCP], service: str
) -> None:
    """The Study Root model has no PATIENT level (PS3.4 C.6.2.2): nothing is sent."""
    got: list[str] = []
    patient = identifier("PATIENT", PatientID=catalogue.BY_KEY["B"].patient_id)
    if service == "move":
        report = scu.move(peer(retrieve_node), patient, "STORESCP", model="STUDY")
    else:
        report = scu.get(
            peer(retrieve_node),
            patient,
            lambda event: got.append(str(event.dataset.SOPInstanceUID)) or 0x0000,
            [str(row.sop_class_uid) for row in retrieve_node.archive.instances()],
            model="STUDY",
        )
    assert (report.status, report.completed) == (0xA900, 0)
    assert got == [] and received["STORESCP"].received() == []
    assert scu.move(peer(retrieve_node), patient, "STORESCP", model="PATIENT").completed > 0


@pytest.mark.parametrize("service", ["move", "get"])
def test_retrieve_whose_identifier_cannot_be_decoded_fails_with_c000(
    retrieve_node: Node, received: dict[str, dcmtk.StoreSCP], service: str
) -> None:
    """An identifier that is no data set (here: not deflated on a Deflated Explicit VR
    Little Endian context) cannot be processed, 0xC000 (PS3.4 C.4.2.1.5, C.4.3.1.4), as
    for C-FIND; 0xA900 says the keys do not match the SOP class.  Nothing is sent."""
    model = MOVE if service == "move" else GET
    ae = AE(ae_title="RAWSCU")
    ae.add_requested_context(model, [DEFLATED])
    assoc = ae.associate("127.0.0.1", retrieve_node.dicom_port, ae_title=retrieve_node.settings.aet)
    assert assoc.is_established
    req = C_MOVE() if service == "move" else C_GET()
    req.MessageID = 1
    req.AffectedSOPClassUID = model
    req.Priority = 2
    if service == "move":
        req.MoveDestination = "STORESCP"
    req.Identifier = BytesIO(b"this is not a deflated data set")
    try:
        rsp = send_raw_request(assoc, req, model, DEFLATED)
    finally:
        assoc.release()
    assert rsp.Status == 0xC000
    assert received["STORESCP"].received() == []


@pytest.mark.parametrize("level", ["STUDY", "SERIES"])
def test_patient_root_retrieve_names_only_instances_of_the_patient_id_given(
    retrieve_node: Node, received: dict[str, dcmtk.StoreSCP], level: str
) -> None:
    """Patient ID is the unique key of the level above (PS3.4 C.6.1.2), as for C-FIND:
    a study of another patient is not retrieved."""
    keys = {"StudyInstanceUID": study_uid("C")}
    if level == "SERIES":
        keys["SeriesInstanceUID"] = series_uid("C", 1)
    other = catalogue.BY_KEY["A"].patient_id
    own = catalogue.BY_KEY["C"].patient_id
    wrong = scu.move(
        peer(retrieve_node), identifier(level, PatientID=other, **keys), "STORESCP", "PATIENT"
    )
    assert (wrong.status, wrong.completed) == (0x0000, 0)
    assert received["STORESCP"].received() == []
    right = scu.move(
        peer(retrieve_node), identifier(level, PatientID=own, **keys), "STORESCP", "PATIENT"
    )
    assert (right.status, right.completed) == (0x0000, catalogue.instance_count("C"))


# ------------------------------------------------------- pynetdicom move, failures
def test_pynetdicom_move_reports_progress_and_counts(
    retrieve_node: Node, received: dict[str, dcmtk.StoreSCP]
) -> None:
    seen: list[tuple[int, int]] = []
    report = scu.move(
        peer(retrieve_node),
        identifier("STUDY", StudyInstanceUID=study_uid("D")),
        "STORESCP",
        progress=lambda s: seen.append(
            (int(s.NumberOfRemainingSuboperations), int(s.NumberOfCompletedSuboperations))
        ),
    )
    assert seen == [(1, 1), (0, 2)]
    assert (report.status, report.completed, report.failed, report.warning) == (0, 2, 0, 0)


@pytest.fixture
def damaged_node(start_node, tmp_path: Path, destinations) -> tuple[Node, str]:
    """A node whose study has lost the blob of one instance (disk damage)."""
    node = start_node(peers=_peers(destinations))
    catalogue.load(node.archive, tmp_path / "files")
    [lost] = node.archive.instances(sop_uid=sop_uid("A", 2, 1))
    node.archive.blobs.delete(lost.blob_key)  # behind the archive's back
    return node, lost.sop_instance_uid


def test_move_with_a_failed_sub_operation_ends_in_b000_listing_it(
    dcmtk_tools: None, damaged_node: tuple[Node, str], received: dict[str, dcmtk.StoreSCP]
) -> None:
    node, lost = damaged_node
    report = scu.move(peer(node), identifier("STUDY", StudyInstanceUID=study_uid("A")), "STORESCP")
    assert (report.status, report.completed, report.failed) == (0xB000, 3, 1)
    assert report.failed_uids == [lost]
    assert lost not in received_uids(received["STORESCP"])
    log = movescu(node, "STORESCP", "STUDY", f"StudyInstanceUID={study_uid('A')}", ok=False)
    assert (responses(log)[-1]["status"], responses(log)[-1]["Failed"]) == (0xB000, 1)


def test_get_with_a_failed_sub_operation_ends_in_b000(damaged_node: tuple[Node, str]) -> None:
    node, lost = damaged_node
    got: list[str] = []

    def on_store(event) -> int:
        got.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    report = scu.get(
        peer(node),
        identifier("STUDY", StudyInstanceUID=study_uid("A")),
        on_store,
        [str(node.archive.instances()[0].sop_class_uid)],
    )
    assert (report.status, report.completed, report.failed, report.failed_uids) == (
        0xB000,
        3,
        1,
        [lost],
    )
    assert lost not in got and len(got) == 3


def test_move_to_a_known_but_unreachable_destination_fails(start_node, tmp_path: Path) -> None:
    node = start_node(peers=(Peer("OFFLINE", "127.0.0.1", free_port()),))
    catalogue.load(node.archive, tmp_path / "files")
    report = scu.move(peer(node), identifier("STUDY", StudyInstanceUID=study_uid("B")), "OFFLINE")
    # Known but down: "unable to perform sub-operations" (PS3.4 C.4.2.1.5), not "unknown".
    assert report.status == 0xA702 and report.completed == 0


# ------------------------------------------------------------------------ C-GET
def test_getscu_retrieves_a_study(dcmtk_tools: None, retrieve_node: Node, tmp_path: Path) -> None:
    log = run_ok(
        "getscu",
        "-S",
        "-d",
        "-aet",
        "GETSCU",
        "-od",
        str(tmp_path),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study_uid('D')}",
        *address(retrieve_node),
    )
    got = sorted(str(dcmread(p).SOPInstanceUID) for p in tmp_path.iterdir())
    assert got == [sop_uid("D", 1, 1), sop_uid("D", 2, 1)]
    final = responses(log)[-1]
    assert (final["status"], final["Completed"], final["Failed"]) == (0x0000, 2, 0)


def test_getscu_series_level(dcmtk_tools: None, retrieve_node: Node, tmp_path: Path) -> None:
    run_ok(
        "getscu",
        "-S",
        "-aet",
        "GETSCU",
        "-od",
        str(tmp_path),
        "-k",
        "QueryRetrieveLevel=SERIES",
        "-k",
        f"StudyInstanceUID={study_uid('A')}",
        "-k",
        f"SeriesInstanceUID={series_uid('A', 2)}",
        *address(retrieve_node),
    )
    assert sorted(str(dcmread(p).SOPInstanceUID) for p in tmp_path.iterdir()) == [
        sop_uid("A", 2, 1),
        sop_uid("A", 2, 2),
    ]


def test_pynetdicom_get_receives_stored_bytes_with_counts(retrieve_node: Node) -> None:
    got: dict[str, tuple[str, bytes]] = {}
    progress: list[tuple[int, int]] = []

    def on_store(event) -> int:
        got[str(event.request.AffectedSOPInstanceUID)] = (
            str(event.context.transfer_syntax),
            bytes(event.request.DataSet.getvalue()),
        )
        return 0x0000

    report = scu.get(
        peer(retrieve_node),
        identifier("STUDY", StudyInstanceUID=study_uid("A")),
        on_store,
        scu.common_storage_classes(),
        progress=lambda s: progress.append(
            (int(s.NumberOfRemainingSuboperations), int(s.NumberOfCompletedSuboperations))
        ),
    )
    assert (report.status, report.completed, report.failed) == (0, 4, 0)
    assert progress == [(3, 1), (2, 2), (1, 3), (0, 4)]
    for row in retrieve_node.archive.instances(study_uid=study_uid("A")):
        syntax, data = got[row.sop_instance_uid]
        assert (syntax, data) == (
            row.transfer_syntax_uid,
            dataset_bytes(retrieve_node.archive.read_instance(row)),
        )


def test_pynetdicom_get_of_a_compressed_instance_keeps_its_identity(retrieve_node: Node) -> None:
    got: dict[str, Dataset] = {}

    def on_store(event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        got[str(event.request.AffectedSOPInstanceUID)] = ds
        return 0x0000

    [row] = [
        r
        for r in retrieve_node.archive.instances()
        if r.transfer_syntax_uid == "1.2.840.10008.1.2.5"
    ]
    report = scu.get(
        peer(retrieve_node),
        identifier("STUDY", StudyInstanceUID=row.study_instance_uid),
        on_store,
        [row.sop_class_uid],
    )
    assert (report.status, report.completed) == (0, 1)
    received = got[row.sop_instance_uid]
    assert received.SOPInstanceUID == row.sop_instance_uid
    original = dcmread(BytesIO(retrieve_node.archive.read_instance(row)))
    assert (received.pixel_array == original.pixel_array).all()


def test_move_whose_every_sub_operation_fails_ends_in_a702(
    damaged_node: tuple[Node, str], received: dict[str, dcmtk.StoreSCP]
) -> None:
    node, lost = damaged_node
    report = scu.move(
        peer(node),
        identifier(
            "IMAGE",
            StudyInstanceUID=study_uid("A"),
            SeriesInstanceUID=series_uid("A", 2),
            SOPInstanceUID=lost,
        ),
        "STORESCP",
    )
    assert (report.status, report.completed, report.failed) == (0xA702, 0, 1)
    assert report.failed_uids == [lost]
