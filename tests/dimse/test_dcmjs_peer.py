"""dcmjs-dimse (npm, pinned in package.json) as a real DICOM peer, driven by a Node script.

tests/dimse/js/dcmjs_peer.mjs takes one JSON command and answers one JSON line.
dcmjs-dimse as SCU against Isthmus: C-ECHO, C-STORE (kept byte for byte as dcmjs-dimse
encoded it), C-FIND at study, series, image and patient level with wildcards and
ISO_IR 192 names, Modality Worklist C-FIND, C-MOVE to a dcmjs-dimse SCP (its Server
class) the script starts, C-GET into the script, C-CANCEL of both.  Isthmus as SCU
against a dcmjs-dimse SCP: C-ECHO, C-FIND, C-STORE, and C-GET and C-MOVE into the
archive.  The script's SCPs listen on 127.0.0.1 only.

One Isthmus node (SQLite) holding the catalogue serves the module; the tests that store
use Patient IDs starting "DCMJS" so that the catalogue's answers stay as they are.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset

from isthmus.archive import scheduled_workitem
from isthmus.config import Peer, Settings
from isthmus.dicom.part10 import split_part10
from isthmus.dimse import scu
from isthmus.dimse.fetch import retrieve_into_archive
from isthmus.server import Node
from isthmus.testing import catalogue, samples
from isthmus.testing.generate import StudySpec, study
from isthmus.testing.net import free_port

from .support import stored

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "js" / "dcmjs_peer.mjs"
NODE = shutil.which("node")
LIBRARY = REPO / "node_modules" / "dcmjs-dimse" / "package.json"

pytestmark = pytest.mark.skipif(
    NODE is None or not LIBRARY.is_file(),
    reason="node or node_modules/dcmjs-dimse is missing (npm ci installs it; make lint-js)",
)

ISTHMUS, DCMJS, DCMJS_SCP = "ISTHMUS", "DCMJS", "DCMJSSCP"
TIMEOUT = 30  # seconds one script run may take
IMPLICIT_LE, EXPLICIT_LE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"


def dcmjs(command: dict[str, Any]) -> dict[str, Any]:
    """Run one command of the script; its JSON answer (it must exit 0)."""
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(SCRIPT), json.dumps(command)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=REPO,
    )
    assert done.returncode == 0, f"dcmjs-dimse {command['op']} failed:\n{done.stderr}"
    answer: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return answer


# ------------------------------------------------------------------------- fixtures
class Module:
    """The module's Isthmus node; `move_port` is where the script's C-MOVE SCP listens."""

    def __init__(self, node: Node, move_port: int) -> None:
        self.node = node
        self.move_port = move_port
        self.address = {"host": "127.0.0.1", "port": node.dicom_port, "aet": ISTHMUS}


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Module]:
    folder = tmp_path_factory.mktemp("dcmjs-peer")
    move_port = free_port()
    settings = Settings(
        data=folder / "data",
        dicom_port=free_port(),
        http_port=free_port(),
        aet=ISTHMUS,
        peers=(Peer(DCMJS, "127.0.0.1", move_port),),
        check_on_start=False,
    )
    node = Node(settings)
    node.start(http=False)
    try:
        catalogue.load(node.archive, folder / "catalogue")
        yield Module(node, move_port)
    finally:
        node.stop()


def own_study(patient_id: str, count: int = 2, **spec: Any) -> list[Dataset]:
    """A small CT study of its own (Patient ID "DCMJS…", outside the catalogue's)."""
    assert patient_id.startswith("DCMJS")
    return list(
        study(
            StudySpec(
                patient_id=patient_id, instances_per_series=count, rows=16, columns=16, **spec
            )
        )
    )


def _sample(syntax: str) -> Dataset:
    ds = samples.canonical(dcmread(samples.bundled_path(samples.BUNDLED[syntax])))
    ds.PatientID = "DCMJS-SAMPLE"
    return ds


def _multi_frame() -> Dataset:
    ds = samples.canonical(dcmread(samples.bundled_path("rtdose.dcm")))
    ds.PatientID = "DCMJS-MULTIFRAME"
    return ds


INSTANCES = {
    "ct": lambda: own_study("DCMJS-CT", 1)[0],
    "iso-ir-192-name": lambda: own_study(
        "DCMJS-UTF8", 1, patient_name="Müller^Jürgen=山田^太郎", charset="ISO_IR 192"
    )[0],
    "multi-frame-rt-dose": _multi_frame,
    # One per transfer syntax of pydicom's bundled files; dcmjs-dimse's deflated one is
    # not deflated (test_dcmjs_c_store_of_a_deflated_dataset_that_is_not_deflated_…).
    **{f"sample-{ts}": (lambda ts=ts: _sample(ts)) for ts in samples.BUNDLED if ts != DEFLATED},
}


def write(datasets: list[Dataset], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def received(folder: Path, sop_uid: str) -> tuple[str, bytes]:
    """(transfer syntax, dataset bytes) the script received (or sent) for an instance."""
    return (folder / f"{sop_uid}.ts").read_text(), (folder / f"{sop_uid}.raw").read_bytes()


# ------------------------------------------------------------- dcmjs-dimse as the SCU
def test_dcmjs_c_echo_to_isthmus_succeeds(module: Module) -> None:
    assert dcmjs({"op": "echo", "peer": module.address, "calling": DCMJS}) == {"status": 0}


@pytest.mark.parametrize("kind", list(INSTANCES))
def test_dcmjs_c_store_to_isthmus_is_kept_byte_for_byte(
    module: Module, kind: str, tmp_path: Path
) -> None:
    """What dcmjs-dimse encodes (its own re-encoding of the file, transcoded to the
    transfer syntax Isthmus accepted: the first proposed, PS3.8 9.3.3.2) is what Isthmus
    keeps, in that syntax."""
    ds = INSTANCES[kind]()
    [path] = write([ds], tmp_path / "files")
    sent = tmp_path / "sent"
    sent.mkdir()
    answer = dcmjs({"op": "store", "peer": module.address, "files": [str(path)], "sent": str(sent)})
    assert answer == {"statuses": {ds.SOPInstanceUID: 0}}
    assert stored(module.node, ds.SOPInstanceUID) == received(sent, ds.SOPInstanceUID)


def test_dcmjs_c_store_of_a_deflated_dataset_that_is_not_deflated_is_refused(
    module: Module, tmp_path: Path
) -> None:
    """dcmjs-dimse proposes Deflated Explicit VR Little Endian for a deflated file and,
    once it is accepted, sends the data set as plain Explicit VR Little Endian bytes
    (dcmjs deflates only whole files): its deviation from PS3.5 A.5, where the data set
    is the deflated stream.  Isthmus cannot inflate it and refuses the C-STORE with
    0xC000 (cannot understand), storing nothing."""
    ds = _sample(DEFLATED)
    [path] = write([ds], tmp_path / "files")
    sent = tmp_path / "sent"
    sent.mkdir()
    answer = dcmjs({"op": "store", "peer": module.address, "files": [str(path)], "sent": str(sent)})
    assert answer == {"statuses": {ds.SOPInstanceUID: 0xC000}}
    syntax, data = received(sent, ds.SOPInstanceUID)
    assert syntax == DEFLATED
    assert decoded(data, implicit=False).SOPInstanceUID == ds.SOPInstanceUID  # not deflated
    assert not module.node.archive.instances(sop_uid=ds.SOPInstanceUID)


def test_dcmjs_c_store_of_a_study_on_one_association(module: Module, tmp_path: Path) -> None:
    datasets = own_study("DCMJS-STUDY", 5)
    paths = write(datasets, tmp_path / "files")
    sent = tmp_path / "sent"
    sent.mkdir()
    command = {"op": "store", "peer": module.address, "files": [str(p) for p in paths]}
    answer = dcmjs({**command, "sent": str(sent)})
    assert answer["statuses"] == {ds.SOPInstanceUID: 0 for ds in datasets}
    for ds in datasets:
        assert stored(module.node, ds.SOPInstanceUID) == received(sent, ds.SOPInstanceUID)


def find(module: Module, level: str, **keys: Any) -> list[dict[str, Any]]:
    """dcmjs-dimse's C-FIND (its own default return keys, plus `keys`); the matches."""
    answer = dcmjs({"op": "find", "peer": module.address, "level": level, "keys": keys})
    assert answer["status"] == 0
    matches: list[dict[str, Any]] = answer["matches"]
    return matches


def alphabetic(match: dict[str, Any]) -> str:
    return str(match["PatientName"][0]["Alphabetic"])


def test_dcmjs_study_level_c_find_with_a_wildcard_name(module: Module) -> None:
    """Names match case-insensitively (Isthmus's conformance statement, PS3.4
    C.2.2.2.4); dcmjs-dimse asks its long list of return keys, Issuer of Patient ID
    among them, which the catalogue's instances lack: it comes back zero length."""
    matches = find(module, "STUDY", PatientName="SMITH*")
    assert {m["StudyInstanceUID"] for m in matches} == {catalogue.study_uid(k) for k in "ABC"}
    by_uid = {m["StudyInstanceUID"]: m for m in matches}
    a = by_uid[catalogue.study_uid("A")]
    assert (alphabetic(a), a["AccessionNumber"], a["ModalitiesInStudy"]) == (
        "SMITH^JOHN",
        "ACC1",
        "CT",
    )
    assert (a["NumberOfStudyRelatedSeries"], a["NumberOfStudyRelatedInstances"]) == (2, 4)
    assert a["IssuerOfPatientID"] == ""


def test_dcmjs_study_level_c_find_with_a_question_mark_and_a_date_range(module: Module) -> None:
    matches = find(module, "STUDY", AccessionNumber="ACC?", StudyDate="20200101-20201231")
    assert {m["StudyInstanceUID"] for m in matches} == {catalogue.study_uid(k) for k in "BCE"}


def test_dcmjs_series_level_c_find_within_a_study(module: Module) -> None:
    matches = find(module, "SERIES", StudyInstanceUID=catalogue.study_uid("D"))
    assert {(m["SeriesInstanceUID"], m["Modality"]) for m in matches} == {
        (catalogue.series_uid("D", 1), "CT"),
        (catalogue.series_uid("D", 2), "SR"),
    }


def test_dcmjs_image_level_c_find_within_a_series(module: Module) -> None:
    keys = {
        "StudyInstanceUID": catalogue.study_uid("A"),
        "SeriesInstanceUID": catalogue.series_uid("A", 2),
    }
    matches = find(module, "IMAGE", **keys)
    assert {m["SOPInstanceUID"] for m in matches} == {catalogue.sop_uid("A", 2, n) for n in (1, 2)}
    assert {m["InstanceNumber"] for m in matches} == {1, 2}


def test_dcmjs_c_find_of_an_iso_ir_192_name(module: Module) -> None:
    """dcmjs-dimse encodes the query in UTF-8 (ISO_IR 192, PS3.5 6.1.2.3); the stored
    name with its ideographic and phonetic groups comes back decoded."""
    name = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    [match] = find(module, "STUDY", SpecificCharacterSet="ISO_IR 192", PatientName=name)
    assert match["StudyInstanceUID"] == catalogue.study_uid("E")
    assert match["SpecificCharacterSet"] == "ISO_IR 192"
    assert match["PatientName"] == [
        {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
    ]


def test_dcmjs_c_find_of_a_non_ascii_name_with_a_wildcard(module: Module) -> None:
    [ds] = own_study("DCMJS-UMLAUT", 1, patient_name="Jürgens^Käthe", charset="ISO_IR 192")
    assert module.node.archive.store(_part10(ds)).status == "stored"
    [match] = find(module, "STUDY", SpecificCharacterSet="ISO_IR 192", PatientName="Jürg*")
    assert (match["PatientID"], alphabetic(match)) == ("DCMJS-UMLAUT", "Jürgens^Käthe")


def test_dcmjs_patient_root_patient_level_c_find(module: Module) -> None:
    answer = dcmjs(
        {
            "op": "find",
            "peer": module.address,
            "model": "PATIENT",
            "level": "PATIENT",
            "keys": {"PatientName": "SMITH*", "PatientID": "", "NumberOfPatientRelatedStudies": ""},
        }
    )
    assert answer["status"] == 0
    assert {(m["PatientID"], m["NumberOfPatientRelatedStudies"]) for m in answer["matches"]} == {
        ("PID0001", 2),
        ("PID0002", 1),
    }


def test_dcmjs_modality_worklist_c_find(module: Module) -> None:
    """dcmjs-dimse's worklist query (its own long list of return keys, a Scheduled
    Procedure Step Sequence item among them) lists a scheduled procedure."""
    entry = {
        "patient_id": "DCMJS-MWL",
        "patient_name": "WORK^LIST",
        "accession": "DCMJSMWL1",
        "procedure": "CT HEAD",
        "modality": "CT",
        "station_aet": DCMJS,
        "start": "2030-01-02T08:30",
    }
    module.node.archive.workitems.create(scheduled_workitem(entry))
    [match] = find(module, "WORKLIST", PatientID="DCMJS-MWL")
    assert (alphabetic(match), match["AccessionNumber"]) == ("WORK^LIST", "DCMJSMWL1")
    [step] = match["ScheduledProcedureStepSequence"]
    assert (step["Modality"], step["ScheduledStationAETitle"]) == ("CT", DCMJS)


def _part10(ds: Dataset) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def retrieve(module: Module, op: str, out: Path, level: str, **keys: str) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    command = {"op": op, "peer": module.address, "calling": DCMJS, "out": str(out)}
    command.update(level=level, keys=keys)
    if op == "move":
        command.update(destination=DCMJS, port=module.move_port)
    return dcmjs(command)


def test_dcmjs_c_move_from_isthmus_to_its_own_scp_is_byte_for_byte(
    module: Module, tmp_path: Path
) -> None:
    """C-MOVE to the script's own SCP (dcmjs-dimse's Server, accepting the first
    proposed syntax): Isthmus proposes the stored syntax first, so the sub-operations
    carry the stored bytes as they are."""
    answer = retrieve(module, "move", tmp_path, "STUDY", StudyInstanceUID=catalogue.study_uid("A"))
    assert answer["status"] == 0
    assert (answer["counts"]["completed"], answer["counts"]["failed"]) == (4, 0)
    expected = {catalogue.sop_uid("A", s, n) for s in (1, 2) for n in (1, 2)}
    assert set(answer["received"]) == expected
    for sop_uid in expected:
        assert received(tmp_path, sop_uid) == stored(module.node, sop_uid)


def test_dcmjs_c_get_from_isthmus_is_transcoded_to_the_syntax_isthmus_accepted(
    module: Module, tmp_path: Path
) -> None:
    """dcmjs-dimse's C-GET proposes each storage class once, with Implicit then
    Explicit VR Little Endian; Isthmus, the acceptor, takes the requestor's first choice
    as for every context (one syntax per context, PS3.8 9.3.3.2;
    test_retrieve_syntax.py), so the Explicit VR instances are transcoded to Implicit,
    every element intact."""
    answer = retrieve(module, "get", tmp_path, "STUDY", StudyInstanceUID=catalogue.study_uid("A"))
    assert answer["status"] == 0
    assert (answer["counts"]["completed"], answer["counts"]["failed"]) == (4, 0)
    expected = {catalogue.sop_uid("A", s, n) for s in (1, 2) for n in (1, 2)}
    assert set(answer["received"]) == expected
    for sop_uid in expected:
        syntax, data = received(tmp_path, sop_uid)
        kept_syntax, kept = stored(module.node, sop_uid)
        assert (syntax, kept_syntax) == (IMPLICIT_LE, EXPLICIT_LE)
        assert decoded(data, implicit=True) == decoded(kept, implicit=False)


def decoded(data: bytes, *, implicit: bool) -> Dataset:
    return read_dataset(BytesIO(data), is_implicit_VR=implicit, is_little_endian=True)


@pytest.mark.parametrize("op", ["move", "get"])
def test_dcmjs_retrieves_one_series_and_one_instance(
    module: Module, op: str, tmp_path: Path
) -> None:
    series = retrieve(
        module,
        op,
        tmp_path / "series",
        "SERIES",
        StudyInstanceUID=catalogue.study_uid("D"),
        SeriesInstanceUID=catalogue.series_uid("D", 2),
    )
    assert series["received"] == [catalogue.sop_uid("D", 2, 1)]
    image = retrieve(
        module,
        op,
        tmp_path / "image",
        "IMAGE",
        StudyInstanceUID=catalogue.study_uid("F"),
        SeriesInstanceUID=catalogue.series_uid("F", 1),
        SOPInstanceUID=catalogue.sop_uid("F", 1, 1),
    )
    assert (image["status"], image["received"]) == (0, [catalogue.sop_uid("F", 1, 1)])


def test_dcmjs_c_move_to_an_unknown_destination_is_refused(module: Module, tmp_path: Path) -> None:
    command = {"op": "move", "peer": module.address, "out": str(tmp_path), "port": free_port()}
    command.update(level="STUDY", keys={"StudyInstanceUID": catalogue.study_uid("A")})
    answer = dcmjs({**command, "destination": "NOWHERE"})
    assert (answer["status"], answer["received"]) == (0xA801, [])  # PS3.4 C.4.2.1.5


@pytest.mark.parametrize("op", ["move", "get"])
def test_dcmjs_c_cancel_ends_a_retrieve_with_the_remaining_count(
    module: Module, op: str, tmp_path: Path
) -> None:
    """A C-CANCEL-RQ after the first pending response (PS3.7 9.3.2.3): Isthmus stops
    between sub-operations and answers 0xFE00 with the sub-operations left (PS3.4
    C.4.2.1.5, C.4.3.1.3)."""
    datasets = own_study(f"DCMJS-CANCEL-{op.upper()}", 12)
    for ds in datasets:
        assert module.node.archive.store(_part10(ds)).status == "stored"
    study_uid = datasets[0].StudyInstanceUID
    out = tmp_path / "out"
    out.mkdir()
    command = {"op": op, "peer": module.address, "calling": DCMJS, "out": str(out), "cancel": True}
    command.update(level="STUDY", keys={"StudyInstanceUID": study_uid})
    if op == "move":
        command.update(destination=DCMJS, port=module.move_port)
    answer = dcmjs(command)
    counts = answer["counts"]
    assert answer["status"] == 0xFE00
    assert 0 < counts["completed"] < len(datasets)
    assert counts["completed"] + counts["remaining"] == len(datasets)
    assert len(answer["received"]) == counts["completed"]


# ------------------------------------------------------------- Isthmus as the SCU
class Scp:
    """The script serving as a dcmjs-dimse SCP (its Server class) on a free port."""

    def __init__(self, process: subprocess.Popen[str], peer: Peer, folder: Path) -> None:
        self.process = process
        self.peer = peer
        self.out = folder / "received"
        self.sent = folder / "sent"


@pytest.fixture(scope="module")
def dcmjs_scp(module: Module, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scp]:
    """A dcmjs-dimse SCP serving a study of its own (Patient ID DCMJS-SCP), knowing
    Isthmus as a C-MOVE destination; it stops when its standard input closes."""
    assert NODE is not None
    folder = tmp_path_factory.mktemp("dcmjs-scp")
    files = [
        *write(
            own_study("DCMJS-SCP", 3, patient_name="Dürer^Albrecht", charset="ISO_IR 192"),
            folder / "files",
        ),
        *write(own_study("DCMJS-SCP-GET", 3), folder / "get"),
        *write(own_study("DCMJS-SCP-MOVE", 3), folder / "move"),
    ]
    (folder / "received").mkdir()
    (folder / "sent").mkdir()
    port = free_port()
    command = {
        "op": "serve",
        "aet": DCMJS_SCP,
        "port": port,
        "files": [str(p) for p in files],
        "out": str(folder / "received"),
        "sent": str(folder / "sent"),
        "destinations": {ISTHMUS: {"host": "127.0.0.1", "port": module.node.dicom_port}},
    }
    process = subprocess.Popen(
        [NODE, str(SCRIPT), json.dumps(command)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        assert json.loads(process.stdout.readline()) == {"ready": True}
        yield Scp(process, Peer(DCMJS_SCP, "127.0.0.1", port), folder)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scp_study(scp: Scp, name: str = "files") -> list[Dataset]:
    """A study the SCP serves: "files" (for queries), "get" or "move" (one retrieve each)."""
    return [dcmread(p) for p in sorted((scp.out.parent / name).glob("*.dcm"))]


def test_isthmus_c_echo_to_dcmjs_succeeds(dcmjs_scp: Scp) -> None:
    assert scu.echo(dcmjs_scp.peer, ISTHMUS) == 0


def test_isthmus_c_find_on_dcmjs_at_study_and_image_level(dcmjs_scp: Scp) -> None:
    datasets = scp_study(dcmjs_scp)
    identifier = Dataset()
    identifier.SpecificCharacterSet = "ISO_IR 192"
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientName = "Dür*"
    identifier.StudyInstanceUID = ""
    identifier.PatientID = ""
    [answer] = scu.find(dcmjs_scp.peer, identifier, calling_aet=ISTHMUS)
    assert (answer.StudyInstanceUID, answer.PatientID) == (
        datasets[0].StudyInstanceUID,
        "DCMJS-SCP",
    )
    assert str(answer.PatientName) == "Dürer^Albrecht"
    image = Dataset()
    image.QueryRetrieveLevel = "IMAGE"
    image.StudyInstanceUID = datasets[0].StudyInstanceUID
    image.SOPInstanceUID = ""
    answers = scu.find(dcmjs_scp.peer, image, calling_aet=ISTHMUS)
    assert {a.SOPInstanceUID for a in answers} == {ds.SOPInstanceUID for ds in datasets}


def test_isthmus_c_store_to_dcmjs_is_received_byte_for_byte(dcmjs_scp: Scp, tmp_path: Path) -> None:
    """Each file in its own transfer syntax (deflated too): dcmjs-dimse's SCP accepts
    the first syntax proposed, the file's own, and receives the file's bytes."""
    datasets = [make() for make in INSTANCES.values()] + [_sample(DEFLATED)]
    files = write(datasets, tmp_path)
    report = scu.send(dcmjs_scp.peer, files, calling_aet=ISTHMUS)
    assert (report.sent, report.failed) == (len(files), [])
    for path in files:
        meta, dataset = split_part10(path.read_bytes())
        syntax, data = received(dcmjs_scp.out, meta.MediaStorageSOPInstanceUID)
        assert (syntax, data) == (meta.TransferSyntaxUID, bytes(dataset))


@pytest.mark.parametrize("via", ["get", "move"])
def test_isthmus_retrieves_a_study_from_dcmjs_into_the_archive(
    module: Module, dcmjs_scp: Scp, via: str
) -> None:
    """What dcmjs-dimse encodes in its sub-operations is what Isthmus keeps."""
    datasets = scp_study(dcmjs_scp, via)
    report = retrieve_into_archive(
        module.node.settings, dcmjs_scp.peer, datasets[0].StudyInstanceUID, None, via
    )
    assert (report.status, report.completed, report.failed) == (0, 3, 0)
    for ds in datasets:
        assert stored(module.node, ds.SOPInstanceUID) == received(dcmjs_scp.sent, ds.SOPInstanceUID)
