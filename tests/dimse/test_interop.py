"""Real peers with the options nobody tried: pynetdicom and DCMTK storing, querying and
retrieving through the acceptor with small PDUs, deflated and big endian identifiers,
ISO 2022 character sets, cancellations, and retrieves the receiver cannot take as stored.

Storage and matching run on SQLite and PostgreSQL; the rest on SQLite.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.presentation import StoragePresentationContexts

from isthmus.config import Peer, Settings
from isthmus.server import Node
from isthmus.testing import catalogue, dcmtk, samples
from isthmus.testing.generate import ROOT, StudySpec, ct_instance, write_study
from isthmus.testing.net import free_port

from .support import address, dataset_bytes, run_ok, sop_uid_of, stored

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
GET = "1.2.840.10008.5.1.4.1.2.2.3"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
RLE = "1.2.840.10008.1.2.5"
UNCOMPRESSED = (EXPLICIT_LE, IMPLICIT_LE, BIG_ENDIAN)
# Compressed samples whose pixel data pydicom decodes here, for transcoding checks.
DECODABLE = [
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    RLE,
]

# Names in the character sets of PS3.5 Annex H-K (stored, queried and returned).
JAPANESE = "Yamada^Tarou=山田^太郎=やまだ^たろう"
KOREAN = "Hong^Gildong=洪^吉洞=홍^길동"
FRENCH = "Gérard^Élodie"
CHINESE = "Wang^XiaoDong=王^小東"
NO_BREAK = "O\u00a0Brien^Pat"
CHARSET_PATIENTS = {  # name: (Specific Character Set, Patient ID)
    JAPANESE: (["", "ISO 2022 IR 87"], "CS-JP"),
    KOREAN: (["", "ISO 2022 IR 149"], "CS-KR"),
    FRENCH: ("ISO_IR 100", "CS-FR"),
    CHINESE: ("ISO_IR 192", "CS-CN"),
    NO_BREAK: ("ISO_IR 100", "CS-NB"),
}


# ------------------------------------------------------------------------- fixtures
def _start(settings: Settings) -> Node:
    node = Node(settings)
    node.start(http=False)
    return node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """SQLite node with the catalogue, and a study of one instance per sample syntax."""
    folder = tmp_path_factory.mktemp("interop")
    running = _start(
        Settings(
            data=folder / "data",
            dicom_port=free_port(),
            http_port=free_port(),
            index_url=f"sqlite:///{folder}/i.sqlite",
        )
    )
    try:
        catalogue.load(running.archive, folder / "catalogue")
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def charset_node(module_index_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node on each backend holding one patient per character set above."""
    folder = tmp_path_factory.mktemp("charsets")
    running = _start(
        Settings(
            data=folder / "data",
            dicom_port=free_port(),
            http_port=free_port(),
            index_url=module_index_url,
        )
    )
    try:
        for name, (charset, patient_id) in CHARSET_PATIENTS.items():
            spec = StudySpec(
                patient_name=name, patient_id=patient_id, charset=charset, rows=8, columns=8
            )
            ds = ct_instance(spec, generate_uid(ROOT), generate_uid(ROOT), 1, 1)
            path = folder / f"{patient_id}.dcm"
            ds.save_as(path, enforce_file_format=True)
            result = running.archive.store(path.read_bytes())
            assert result.status == "stored", result.reason
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per transfer syntax of pydicom's bundled files, fresh UIDs."""
    return samples.write_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture
def destination(node: Node) -> Iterator[Callable[..., list[str]]]:
    """A pynetdicom storage SCP answering each C-STORE with `status_for(uid, n)` (None:
    A-ABORT instead of an answer), known to `node` as a C-MOVE destination while the
    test runs; returns the UIDs it received."""
    servers: list[Any] = []
    aets: list[str] = []

    def start(aet: str, status_for: Callable[[str, int], int | None]) -> list[str]:
        received: list[str] = []

        def on_store(event: Any) -> int:
            uid = str(event.request.AffectedSOPInstanceUID)
            received.append(uid)
            status = status_for(uid, len(received))
            if status is None:
                event.assoc.abort()
                return 0x0000  # never sent: the association is gone
            return status

        ae = AE(ae_title=aet)
        ae.supported_contexts = StoragePresentationContexts
        port = free_port()
        servers.append(
            ae.start_server(
                ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
            )
        )
        known = Peer(aet, "127.0.0.1", port)
        node.access.register_destination(aet, lambda: known)
        aets.append(aet)
        return received

    try:
        yield start
    finally:
        for aet in aets:
            node.access.unregister_destination(aet)
        for server in servers:
            server.shutdown()


# -------------------------------------------------------------------------- helpers
def association(
    node: Node, contexts: list[tuple[str, list[str]]], max_pdu: int = 16382, **kwargs: Any
) -> Any:
    ae = AE(ae_title="INTEROP")
    ae.maximum_pdu_size = max_pdu
    for abstract, syntaxes in contexts:
        ae.add_requested_context(abstract, syntaxes)
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.settings.aet, **kwargs)
    assert assoc.is_established
    return assoc


def find(node: Node, query: Dataset, syntax: str = EXPLICIT_LE) -> list[Dataset]:
    """C-FIND with pynetdicom; the matches (the final status must be success)."""
    assoc = association(node, [(FIND, [syntax])])
    try:
        answers = list(assoc.send_c_find(query, FIND))
    finally:
        assoc.release()
    assert answers[-1][0].Status == 0x0000, answers[-1][0]
    return [identifier for _status, identifier in answers[:-1]]


def query(level: str = "STUDY", charset: str | list[str] | None = None, **keys: str) -> Dataset:
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def final_counts(log: str) -> dict[str, int]:
    """Status and sub-operation counts of the last C-MOVE/C-GET response in a DCMTK -d log."""
    block = re.split(r"Received (?:Final )?(?:Move|Get|C-GET) Response", log)[-1]
    counts = {
        name: int(found[1])
        for name in ("Remaining", "Completed", "Failed", "Warning")
        if (found := re.search(rf"{name} Suboperations\s*:\s*(\d+)", block))
    }
    status = re.search(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})", block)
    counts["status"] = int(status[1], 16) if status else -1
    return counts


def store_study_of(node: Node, paths: list[Path], study_uid: str) -> list[str]:
    """Store copies of `paths` as one study (new series and instance UIDs: the same series
    in two studies would be filed under the first); returns their SOP Instance UIDs."""
    uids = []
    for path in paths:
        ds = dcmread(path)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = generate_uid(ROOT)
        ds.SOPInstanceUID = generate_uid(ROOT)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buf = BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        assert node.archive.store(buf.getvalue()).status == "stored"
        uids.append(str(ds.SOPInstanceUID))
    return uids


# ---------------------------------------------------------------- C-STORE, pynetdicom
def test_interop_pynetdicom_stores_every_bundled_syntax_in_pdus_of_4096_bytes(
    settings: Settings, sample_files: dict[str, Path]
) -> None:
    """Every P-DATA-TF both ways is at most 4096 bytes: each data set spans many PDUs."""
    small = _start(replace(settings, max_pdu=4096))
    try:
        contexts = [
            (str(dcmread(p, stop_before_pixels=True).SOPClassUID), [ts])
            for ts, p in sample_files.items()
        ]
        assoc = association(small, contexts, max_pdu=4096)
        assert assoc.acceptor.maximum_length == 4096
        try:
            statuses = {ts: assoc.send_c_store(path).Status for ts, path in sample_files.items()}
        finally:
            assoc.release()
        assert statuses == {ts: 0x0000 for ts in sample_files}
        for syntax, path in sample_files.items():
            assert stored(small, sop_uid_of(path)) == (syntax, dataset_bytes(path.read_bytes()))
    finally:
        small.stop()


# ------------------------------------------------------------------- C-FIND encodings
@pytest.mark.parametrize("syntax", [DEFLATED, BIG_ENDIAN, IMPLICIT_LE])
def test_interop_c_find_identifiers_in_any_syntax_the_context_accepted(
    node: Node, syntax: str
) -> None:
    matches = find(
        node,
        query("STUDY", PatientName="smith*", StudyInstanceUID="", NumberOfStudyRelatedInstances=""),
        syntax,
    )
    got = sorted(
        (str(m.PatientName), str(m.StudyInstanceUID), int(m.NumberOfStudyRelatedInstances))
        for m in matches
    )
    assert got == sorted(
        (e.patient_name, catalogue.study_uid(e.key), catalogue.instance_count(e.key))
        for e in catalogue.ENTRIES
        if e.patient_name.upper().startswith("SMITH")
    )


def test_interop_c_find_with_a_private_block_in_the_identifier_still_matches(node: Node) -> None:
    """A private creator (gggg,00xx) only reserves a block (PS3.5 7.8.1); it is no key."""
    ds = query("STUDY", PatientName="smith*", StudyInstanceUID="")
    ds.private_block(0x0009, "SIEMENS MED", create=True).add_new(0x01, "LO", "")
    assert len(find(node, ds)) == sum(
        e.patient_name.upper().startswith("SMITH") for e in catalogue.ENTRIES
    )


@pytest.mark.parametrize("syntax", [IMPLICIT_LE, EXPLICIT_LE])
def test_interop_c_find_returns_private_elements_with_their_private_creator(
    node: Node, syntax: str
) -> None:
    """A private element is only read with the creator of its block (PS3.5 7.8.1): a
    response carrying the one carries the other."""
    ds = ct_instance(StudySpec(rows=8, columns=8), generate_uid(ROOT), generate_uid(ROOT), 1, 1)
    ds.private_block(0x0029, "ACME 1.0", create=True).add_new(0x02, "LO", "hello")
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert node.archive.store(buf.getvalue()).status == "stored"
    identifier = query(
        "IMAGE",
        StudyInstanceUID=ds.StudyInstanceUID,
        SeriesInstanceUID=ds.SeriesInstanceUID,
        SOPInstanceUID="",
    )
    identifier.private_block(0x0029, "ACME 1.0", create=True).add_new(0x02, "LO", "")
    [match] = find(node, identifier, syntax)
    assert match[0x00290010].value == "ACME 1.0"
    assert match.private_block(0x0029, "ACME 1.0")[0x02].value in ("hello", b"hello ")


def test_interop_findscu_patient_root_with_a_deflate_proposal(
    dcmtk_tools: None, node: Node, tmp_path: Path
) -> None:
    output = run_ok(
        "findscu",
        "-P",
        "--propose-deflated",
        "-d",
        "-X",
        "-od",
        str(tmp_path),
        "-k",
        "QueryRetrieveLevel=PATIENT",
        "-k",
        "PatientID=PID000*",
        "-k",
        "PatientName",
        "-k",
        "NumberOfPatientRelatedStudies",
        *address(node),
    )
    assert re.search(r"Accepted Transfer Syntax: =DeflatedLittleEndianExplicit", output)
    found = sorted(
        (str(r.PatientID), int(r.NumberOfPatientRelatedStudies))
        for r in map(dcmread, tmp_path.glob("rsp*.dcm"))
    )
    expected: dict[str, int] = {}
    for entry in catalogue.ENTRIES:
        expected[entry.patient_id] = expected.get(entry.patient_id, 0) + 1
    assert found == sorted(expected.items())


# ------------------------------------------------------------ C-FIND, character sets
@pytest.mark.parametrize(
    "charset, name, expected",
    [
        (["", "ISO 2022 IR 87"], "Yamada^Tarou", JAPANESE),
        (["", "ISO 2022 IR 87"], JAPANESE, JAPANESE),
        ("ISO_IR 192", "YAMADA^TAROU", JAPANESE),  # case-insensitive
        (None, "yamada*", JAPANESE),  # ASCII query, non-ASCII answer
        (["", "ISO 2022 IR 149"], KOREAN, KOREAN),
        ("ISO_IR 100", "Gérard*", FRENCH),
        ("ISO_IR 192", "Wang^XiaoDong", CHINESE),
    ],
    ids=["ir87-romaji", "ir87-all-groups", "utf8-upper", "ascii", "ir149", "latin1", "utf8"],
)
def test_interop_c_find_names_in_iso_2022_and_utf8_come_back_decodable(
    charset_node: Node, charset: Any, name: str, expected: str
) -> None:
    matches = find(
        charset_node, query("STUDY", charset, PatientName=name, StudyInstanceUID="", PatientID="")
    )
    assert [str(m.PatientName) for m in matches] == [expected]
    [match] = matches
    # Decoded with the Specific Character Set the response declares: it must say one.
    assert match.SpecificCharacterSet
    assert match.PatientID == CHARSET_PATIENTS[expected][1]


def test_interop_c_find_universal_match_returns_every_character_set(charset_node: Node) -> None:
    matches = find(
        charset_node,
        query(
            "STUDY", ["", "ISO 2022 IR 87"], PatientName="", PatientID="CS-*", StudyInstanceUID=""
        ),
    )
    assert sorted(str(m.PatientName) for m in matches) == sorted(CHARSET_PATIENTS)


def test_interop_c_find_declares_the_character_set_of_unprintable_non_ascii(
    charset_node: Node,
) -> None:
    """A NO-BREAK SPACE (ISO_IR 100 0xA0) is outside the default repertoire too."""
    [match] = find(
        charset_node, query("STUDY", PatientID="CS-NB", PatientName="", StudyInstanceUID="")
    )
    assert match.SpecificCharacterSet
    assert str(match.PatientName) == NO_BREAK


def test_interop_findscu_iso_2022_ir_87_query_file(
    dcmtk_tools: None, charset_node: Node, tmp_path: Path
) -> None:
    """findscu sends an identifier encoded with ISO 2022 escape sequences (PS3.5 H)."""
    ds = query(
        "STUDY", ["", "ISO 2022 IR 87"], PatientName=JAPANESE, StudyInstanceUID="", PatientID=""
    )
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = FIND
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(ROOT)
    ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
    ds.save_as(tmp_path / "query.dcm", enforce_file_format=True)
    assert b"\x1b$B" in (tmp_path / "query.dcm").read_bytes()  # really ISO 2022
    out = tmp_path / "out"
    out.mkdir()
    run_ok(
        "findscu", "-S", "-X", "-od", str(out), *address(charset_node), str(tmp_path / "query.dcm")
    )
    [response] = [dcmread(p) for p in out.glob("rsp*.dcm")]
    assert (str(response.PatientName), response.PatientID) == (JAPANESE, "CS-JP")


# ------------------------------------------------------------------------ C-MOVE
def test_interop_c_move_to_a_destination_refusing_some_instances_ends_in_b000(
    node: Node, destination: Callable[..., list[str]]
) -> None:
    refused = {catalogue.sop_uid("A", 1, 2), catalogue.sop_uid("A", 2, 1)}
    received = destination("PICKY", lambda uid, _n: 0xA700 if uid in refused else 0x0000)
    assoc = association(node, [(MOVE, [EXPLICIT_LE])])
    try:
        answers = list(
            assoc.send_c_move(
                query("STUDY", StudyInstanceUID=catalogue.study_uid("A")), "PICKY", MOVE
            )
        )
    finally:
        assoc.release()
    status, identifier = answers[-1]
    assert (
        status.Status,
        status.NumberOfCompletedSuboperations,
        status.NumberOfFailedSuboperations,
        status.NumberOfWarningSuboperations,
    ) == (0xB000, 2, 2, 0)
    failed = identifier.FailedSOPInstanceUIDList
    assert sorted([failed] if isinstance(failed, str) else failed) == sorted(refused)
    assert len(received) == catalogue.instance_count("A")


def test_interop_c_move_to_a_destination_aborting_mid_transfer_ends_in_b000_keeping_all(
    node: Node, destination: Callable[..., list[str]]
) -> None:
    """The destination A-ABORTs instead of answering the second C-STORE: that one and
    the rest fail (no association to send them on), the C-MOVE ends with 0xB000, its
    counts and the failed UIDs (PS3.4 C.4.2.3.1), and the archive keeps every instance."""
    study = catalogue.study_uid("A")
    received = destination("ABORTS", lambda _uid, n: None if n == 2 else 0x0000)
    assoc = association(node, [(MOVE, [EXPLICIT_LE])])
    try:
        answers = list(assoc.send_c_move(query("STUDY", StudyInstanceUID=study), "ABORTS", MOVE))
        assert assoc.is_established  # the requestor's association goes on
    finally:
        assoc.release()
    status, identifier = answers[-1]
    total = catalogue.instance_count("A")
    assert (
        status.Status,
        status.NumberOfCompletedSuboperations,
        status.NumberOfFailedSuboperations,
    ) == (0xB000, 1, total - 1)
    failed = identifier.FailedSOPInstanceUIDList
    assert sorted([failed] if isinstance(failed, str) else failed) == sorted(
        r.sop_instance_uid
        for r in node.archive.instances(study)
        if r.sop_instance_uid != received[0]
    )
    assert len(node.archive.instances(study)) == total


@pytest.mark.parametrize("patient_id, moved", [("PID0001", 5), ("*", 0), ("PID000?", 0)])
def test_interop_patient_level_c_move_matches_the_patient_id_as_a_single_value(
    node: Node, destination: Callable[..., list[str]], patient_id: str, moved: int
) -> None:
    """PS3.4 C.4.2.1.4.1: single value matching for Patient ID - "*" is not everyone."""
    received = destination("EVERYONE", lambda _uid, _n: 0x0000)
    ae = AE(ae_title="INTEROP")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.2.1.2", EXPLICIT_LE)  # Patient Root
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.settings.aet)
    try:
        answers = list(
            assoc.send_c_move(
                query("PATIENT", PatientID=patient_id), "EVERYONE", "1.2.840.10008.5.1.4.1.2.1.2"
            )
        )
    finally:
        assoc.release()
    final = answers[-1][0]
    assert (final.Status, final.NumberOfCompletedSuboperations, len(received)) == (
        0x0000,
        moved,
        moved,
    )


def test_interop_movescu_cancel_during_sub_operations_ends_with_fe00_and_counts(
    dcmtk_tools: None, node: Node, destination: Callable[..., list[str]]
) -> None:
    """The second sub-operation waits until movescu has sent its C-CANCEL-RQ."""
    cancel_sent = threading.Event()

    def slow_second(_uid: str, count: int) -> int:
        if count == 2:
            assert cancel_sent.wait(30)
        return 0x0000

    received = destination("SLOWDEST", slow_second)
    command = [
        dcmtk.tool("movescu"),
        "-S",
        "-d",
        "--cancel",
        "1",
        "-aem",
        "SLOWDEST",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={catalogue.study_uid('A')}",
        *address(node),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "Sending Cancel Request" in line:
            cancel_sent.set()
    proc.wait(60)
    counts = final_counts("".join(lines))
    total = catalogue.instance_count("A")
    # The cancel takes effect at the next sub-operation boundary: before the second
    # sub-operation if it has already arrived, after it otherwise (it races the first
    # pending response on loopback).  Either way nothing more is sent.
    done = counts["Completed"]
    assert done in (1, 2)
    assert counts == {
        "status": 0xFE00,
        "Remaining": total - done,
        "Completed": done,
        "Failed": 0,
        "Warning": 0,
    }
    assert len(received) == done


# ------------------------------------------------------------------------- C-GET
def _get(
    node: Node,
    study_uid: str,
    contexts: list[tuple[str, list[str]]],
) -> tuple[list[tuple[Any, ...]], dict[str, tuple[str, Dataset]]]:
    """C-GET with pynetdicom as storage SCP for the classes in `contexts`."""
    got: dict[str, tuple[str, Dataset]] = {}

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        got[str(ds.SOPInstanceUID)] = (str(event.context.transfer_syntax), ds)
        return 0x0000

    roles = [build_role(abstract, scp_role=True) for abstract, _ts in contexts]
    assoc = association(
        node,
        [(GET, [EXPLICIT_LE]), *contexts],
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    try:
        answers = [
            (
                status.Status,
                status.get("NumberOfCompletedSuboperations"),
                status.get("NumberOfFailedSuboperations"),
                identifier.get("FailedSOPInstanceUIDList") if identifier else None,
            )
            for status, identifier in assoc.send_c_get(
                query("STUDY", StudyInstanceUID=study_uid), GET
            )
        ]
    finally:
        assoc.release()
    return answers, got


@pytest.mark.parametrize("syntax", DECODABLE)
def test_interop_c_get_transcodes_for_an_scu_accepting_only_uncompressed(
    node: Node, sample_files: dict[str, Path], syntax: str
) -> None:
    path = sample_files[syntax]
    original = dcmread(path)
    [uid] = store_study_of(node, [path], generate_uid(ROOT))
    study_uid = str(node.archive.instances(sop_uid=uid)[0].study_instance_uid)
    answers, got = _get(node, study_uid, [(str(original.SOPClassUID), [IMPLICIT_LE])])
    assert answers[-1][:3] == (0x0000, 1, 0)
    received_syntax, received = got[uid]
    assert received_syntax == IMPLICIT_LE
    assert received.PatientName == original.PatientName
    assert (received.pixel_array == original.pixel_array).all()


@pytest.mark.parametrize(
    "preferred",
    ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.100"],
    ids=["j2k-lossless", "mpeg2"],
)
def test_interop_c_get_context_preferring_a_compressed_syntax_still_delivers(
    node: Node, preferred: str
) -> None:
    """One context [compressed, Explicit VR LE]: we send on it, so we accept the native
    syntax - an encoder may refuse the image (J2K of 12-bit signed CT) or not exist (MPEG2)."""
    study_uid = catalogue.study_uid("D")
    answers, got = _get(node, study_uid, [(CT, [preferred, EXPLICIT_LE])])
    assert answers[-1][:3] == (0x0000, catalogue.instance_count("D"), 0)
    assert {syntax for syntax, _ds in got.values()} == {EXPLICIT_LE}


def test_interop_c_get_without_a_context_for_a_class_fails_those_sub_operations(
    node: Node, sample_files: dict[str, Path], tmp_path: Path
) -> None:
    ct_files = write_study(StudySpec(instances_per_series=2, rows=8, columns=8), tmp_path)
    study_uid = generate_uid(ROOT)
    ct_uids = store_study_of(node, ct_files, study_uid)
    [mr_uid] = store_study_of(node, [sample_files[EXPLICIT_LE]], study_uid)  # MR_small
    answers, got = _get(node, study_uid, [(CT, [EXPLICIT_LE])])  # no MR context
    assert answers[-1] == (0xB000, 2, 1, mr_uid)
    assert sorted(got) == sorted(ct_uids)
    answers, got = _get(node, study_uid, [("1.2.840.10008.5.1.4.1.1.7", [EXPLICIT_LE])])
    status, completed, failed, failed_uids = answers[-1]
    assert (status, completed, failed, got) == (0xA702, 0, 3, {})
    assert sorted(failed_uids) == sorted([*ct_uids, mr_uid])


def test_interop_c_get_without_the_scp_role_for_a_class_fails_its_sub_operations(
    node: Node,
) -> None:
    """A storage context proposed without SCP/SCU Role Selection (PS3.7 D.3.3.4) leaves
    the requestor the SCU of that class: Isthmus may not C-STORE to it, so each
    sub-operation fails and is counted, and the association goes on (no abort)."""
    study = catalogue.study_uid("A")
    [sop_class] = {r.sop_class_uid for r in node.archive.instances(study)}
    got: list[str] = []

    def on_store(event: Any) -> int:
        got.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    assoc = association(
        node,
        [(GET, [EXPLICIT_LE]), (sop_class, [EXPLICIT_LE]), (VERIFICATION, [EXPLICIT_LE])],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    try:
        answers = list(assoc.send_c_get(query("STUDY", StudyInstanceUID=study), GET))
        assert assoc.send_c_echo().Status == 0x0000  # the association still serves
    finally:
        assoc.release()
    status, identifier = answers[-1]
    total = catalogue.instance_count("A")
    assert (
        status.Status,
        status.NumberOfCompletedSuboperations,
        status.NumberOfFailedSuboperations,
    ) == (0xA702, 0, total)
    assert len(identifier.FailedSOPInstanceUIDList) == total and got == []


def test_interop_getscu_implicit_proposal_receives_every_syntax_decodable(
    dcmtk_tools: None, node: Node, sample_files: dict[str, Path], tmp_path: Path
) -> None:
    chosen = [RLE, "1.2.840.10008.1.2.4.50", BIG_ENDIAN, EXPLICIT_LE, IMPLICIT_LE]
    study_uid = generate_uid(ROOT)
    uids = dict(
        zip(
            store_study_of(node, [sample_files[ts] for ts in chosen], study_uid),
            chosen,
            strict=True,
        )
    )
    out = tmp_path / "out"
    out.mkdir()
    log = run_ok(
        "getscu",
        "-S",
        "-xi",
        "-d",
        "-od",
        str(out),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study_uid}",
        *address(node),
    )
    assert final_counts(log)["status"] == 0x0000
    received = {str(ds.SOPInstanceUID): ds for ds in map(dcmread, out.iterdir())}
    assert sorted(received) == sorted(uids)
    for uid, syntax in uids.items():
        assert received[uid].file_meta.TransferSyntaxUID in UNCOMPRESSED
        original = dcmread(sample_files[syntax])
        assert (received[uid].pixel_array == original.pixel_array).all()


# ------------------------------------------------------- DCMTK with unusual options
def test_interop_storescu_deflate_small_pdus_recursive_folder_one_association(
    dcmtk_tools: None, node: Node, sample_files: dict[str, Path], tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    files = write_study(
        StudySpec(instances_per_series=3, series_count=2, rows=128, columns=128),
        tree / "ct" / "deeper",
    )
    for syntax in (EXPLICIT_LE, IMPLICIT_LE, BIG_ENDIAN):
        (tree / "mr").mkdir(exist_ok=True)
        files.append(Path(shutil.copy(sample_files[syntax], tree / "mr")))
    log = run_ok(
        "storescu",
        "--propose-deflated",
        "--max-pdu",
        "4096",
        "--max-send-pdu",
        "4096",
        "--scan-directories",
        "--recurse",
        "-v",
        *address(node),
        str(tree),
    )
    assert log.count("Requesting Association") == 1
    for path in files:
        rows = node.archive.instances(sop_uid=sop_uid_of(path))
        assert rows, f"{path.name} not stored"
        back = dcmread(BytesIO(node.archive.read_instance(rows[0])))
        sent = dcmread(path)
        assert rows[0].transfer_syntax_uid in (DEFLATED, str(sent.file_meta.TransferSyntaxUID))
        assert (back.PatientID, back.Rows) == (sent.PatientID, sent.Rows)
        assert (back.pixel_array == sent.pixel_array).all()
    # storescu deflates what it proposed deflated: the CT series arrives deflated
    assert node.archive.instances(sop_uid=sop_uid_of(files[0]))[0].transfer_syntax_uid == DEFLATED


def test_interop_echoscu_proposing_128_contexts_of_38_syntaxes(
    dcmtk_tools: None, node: Node
) -> None:
    """An A-ASSOCIATE-RQ of about 150 KB, larger than a socket buffer one can peek at."""
    output = run_ok("echoscu", "-v", "--propose-pc", "128", "--propose-ts", "38", *address(node))
    assert "Received Echo Response (Success)" in output


def test_interop_echoscu_with_small_pdus_and_repeats(dcmtk_tools: None, node: Node) -> None:
    output = run_ok("echoscu", "-v", "--max-pdu", "4096", "--repeat", "3", *address(node))
    assert output.count("Received Echo Response (Success)") == 3
