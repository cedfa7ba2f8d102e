"""GDCM's gdcmscu (Debian's libgdcm-tools, GDCM 3.0) as a real DICOM peer of Isthmus.

gdcmscu as SCU against Isthmus: C-ECHO, C-STORE of files and of a folder (kept byte for
byte), C-FIND in the Study and Patient Root models at each level, C-MOVE to gdcmscu's own
storage SCP (--port-scp).  gdcmscu has no working C-GET (its --get returns 1 unsent).

GDCM 3.0.21 aborts after every association it releases: once the A-RELEASE-RP has
arrived (PS3.8 9.3.7), its event loop asks the closed connection for a stream and throws
"ProtocolStream as nullptr is invalid" (gdcmULConnectionManager.cxx, since GDCM 3.0.10),
with DCMTK and pynetdicom as peers too.  Its results printed after the release (C-FIND
answers) are lost with it; so the tests read what crossed the wire in its debug log (-D:
every PDU it received, the command sets decoded) and what Isthmus stored, and take an
abort as the end of a run only after the A-RELEASE-RP.

One Isthmus node (SQLite) holding the catalogue serves the module; the tests that store
use Patient IDs starting "GDCM" so that the catalogue's answers stay as they are.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from isthmus.archive import scheduled_workitem
from isthmus.config import Peer, Settings
from isthmus.dicom.part10 import split_part10
from isthmus.server import Node
from isthmus.testing import catalogue, gdcm
from isthmus.testing.generate import StudySpec, study
from isthmus.testing.net import free_port

from .support import stored

pytestmark = pytest.mark.skipif(
    gdcm.tool() is None, reason="gdcmscu is missing (scripts/system-deps.sh installs libgdcm-tools)"
)

ISTHMUS, GDCM = "ISTHMUS", "GDCMSCU"
TIMEOUT = 30  # seconds one gdcmscu run may take
RELEASE_ABORT = "ProtocolStream as nullptr is invalid"
A_RELEASE_RP = 6  # PDU type (PS3.8 9.3.7)
C_STORE_RSP, C_FIND_RSP, C_MOVE_RSP = 0x8001, 0x8020, 0x8021
PENDING = 0xFF00


# ------------------------------------------------------------------------- fixtures
@dataclass(frozen=True)
class Message:
    """A DIMSE command gdcmscu received, as its debug log shows it."""

    command: int
    status: int | None
    fields: dict[int, str]  # command element (0000,eeee) → its value as printed
    context_id: int


@dataclass(frozen=True)
class Run:
    returncode: int
    log: str

    def pdus(self) -> list[tuple[int, str]]:
        """(PDU type, what the log says of it) for each PDU read off the wire."""
        parts = re.split(r"^PDU code: (\d+)\n", self.log, flags=re.M)
        return [(int(parts[i]), parts[i + 1]) for i in range(1, len(parts) - 1, 2)]

    def messages(self) -> list[Message]:
        """Each DIMSE command set received (GDCM prints each P-DATA-TF's twice)."""
        out = []
        for kind, text in self.pdus():
            printed = re.findall(r"^\(0000,([0-9a-f]{4})\) \?\? \(\w\w\) (.*?)\s+#", text, re.M)
            fields = {int(tag, 16): value.strip("[] ") for tag, value in printed}
            context = re.search(r"^PresentationContextID: (\d+)", text, re.M)
            if kind != 4 or 0x0100 not in fields or context is None:
                continue
            status = int(fields[0x0900]) if 0x0900 in fields else None
            out.append(Message(int(fields[0x0100]), status, fields, int(context.group(1))))
        return out

    def responses(self, command: int) -> list[Message]:
        return [m for m in self.messages() if m.command == command]

    @property
    def released(self) -> bool:
        return any(kind == A_RELEASE_RP for kind, _text in self.pdus())


def gdcmscu(node: Node, *args: str, scp: bool = False) -> Run:
    """Run gdcmscu against `node` with its debug log on (with `scp`, its C-MOVE SCP where
    `node` knows it); it must end with the association released (exit 0, or GDCM
    3.0.21's abort right after the A-RELEASE-RP)."""
    done = gdcm.run(
        ["-D", "--aetitle", GDCM, "--call", ISTHMUS, *args],
        node.dicom_port,
        scp_port=scp_port(node) if scp else None,
        timeout=TIMEOUT,
    )
    run = Run(done.returncode, done.stdout + done.stderr)
    aborted_after_release = (
        done.returncode == -signal.SIGABRT and RELEASE_ABORT in done.stderr and run.released
    )
    assert done.returncode == 0 or aborted_after_release, run.log[-3000:]
    return run


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    folder = tmp_path_factory.mktemp("gdcm-peer")
    scp_port = free_port()
    settings = Settings(
        data=folder / "data",
        dicom_port=free_port(),
        http_port=free_port(),
        aet=ISTHMUS,
        peers=(Peer(GDCM, "127.0.0.1", scp_port),),
        check_on_start=False,
    )
    running = Node(settings)
    running.start(http=False)
    try:
        catalogue.load(running.archive, folder / "catalogue")
        yield running
    finally:
        running.stop()


def scp_port(node: Node) -> int:
    """Where gdcmscu's storage SCP listens (--port-scp): the port Isthmus knows for it."""
    [peer] = [p for p in node.settings.peers if p.aet == GDCM]
    return peer.port


def own_study(patient_id: str, count: int = 2, **spec: Any) -> list[Dataset]:
    """A small CT study of its own (Patient ID "GDCM…", outside the catalogue's)."""
    assert patient_id.startswith("GDCM")
    return list(
        study(
            StudySpec(
                patient_id=patient_id, instances_per_series=count, rows=16, columns=16, **spec
            )
        )
    )


def write(datasets: list[Dataset], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def implicit(datasets: list[Dataset]) -> list[Dataset]:
    for ds in datasets:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return datasets


# -------------------------------------------------------------------------- C-ECHO
def test_gdcmscu_c_echo_to_isthmus_succeeds(node: Node) -> None:
    run = gdcmscu(node, "--echo")
    [response] = run.responses(0x8030)  # C-ECHO-RSP
    assert response.status == 0


# ------------------------------------------------------------------------- C-STORE
def test_gdcmscu_c_store_of_a_file_is_kept_byte_for_byte(node: Node, tmp_path: Path) -> None:
    [ds] = own_study("GDCM-FILE", 1, patient_name="Müller^Jürgen", charset="ISO_IR 192")
    [path] = write([ds], tmp_path)
    run = gdcmscu(node, "--store", "-i", str(path))
    assert [m.status for m in run.responses(C_STORE_RSP)] == [0]
    meta, dataset = split_part10(path.read_bytes())
    assert stored(node, ds.SOPInstanceUID) == (meta.TransferSyntaxUID, bytes(dataset))


def test_gdcmscu_c_store_of_a_folder_on_one_association(node: Node, tmp_path: Path) -> None:
    """A folder (-i DIR -r, two syntaxes): one association, every file kept as sent."""
    datasets = own_study("GDCM-FOLDER", 3) + implicit(own_study("GDCM-FOLDER-IVR", 2))
    paths = write(datasets[:3], tmp_path / "explicit") + write(datasets[3:], tmp_path / "ivr")
    run = gdcmscu(node, "--store", "-r", "-i", str(tmp_path))
    assert [m.status for m in run.responses(C_STORE_RSP)] == [0] * 5
    for path in paths:
        meta, dataset = split_part10(path.read_bytes())
        uid = meta.MediaStorageSOPInstanceUID
        assert stored(node, uid) == (meta.TransferSyntaxUID, bytes(dataset))


# -------------------------------------------------------------------------- C-FIND
def find(node: Node, *args: str) -> list[Message]:
    """gdcmscu --find; the C-FIND responses it received (pending ones, then the final)."""
    run = gdcmscu(node, "--find", *args)
    responses = run.responses(C_FIND_RSP)
    assert responses and responses[-1].status == 0, responses
    assert all(m.status == PENDING for m in responses[:-1])
    return responses[:-1]


def test_gdcmscu_study_root_study_level_c_find_with_a_wildcard_name(node: Node) -> None:
    """SMITH* matches SMITH^JOHN's two studies and Smith^Anna's (names match without
    regard to case in Isthmus, PS3.4 C.2.2.2.4 leaves it to the SCP)."""
    matches = find(node, "--studyroot", "--study", "--key", "10,10=SMITH*", "--key", "20,d=")
    assert len(matches) == 3


def test_gdcmscu_study_root_series_and_image_levels(node: Node) -> None:
    study_d = f"20,d={catalogue.study_uid('D')}"
    series = find(node, "--studyroot", "--series", "--key", study_d, "--key", "20,e=")
    assert len(series) == 2
    keys = ["--key", f"20,d={catalogue.study_uid('A')}"]
    keys += ["--key", f"20,e={catalogue.series_uid('A', 2)}", "--key", "8,18="]
    assert len(find(node, "--studyroot", "--image", *keys)) == 2


def test_gdcmscu_patient_root_patient_level_c_find(node: Node) -> None:
    keys = ["--key", "10,10=SMITH*", "--key", "10,20="]
    assert len(find(node, "--patientroot", "--patient", *keys)) == 2  # PID0001, PID0002


def test_gdcmscu_patient_root_study_level_within_a_patient(node: Node) -> None:
    keys = ["--key", "10,20=PID0001", "--key", "20,d="]
    assert len(find(node, "--patientroot", "--study", *keys)) == 2


def test_gdcmscu_c_find_of_an_iso_ir_192_name(node: Node) -> None:
    """gdcmscu declares ISO_IR 192 in every identifier (Specific Character Set, PS3.5
    6.1.2.3): its UTF-8 name with ideographic and phonetic groups finds study E."""
    name = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    assert len(find(node, "--studyroot", "--study", "--key", f"10,10={name}")) == 1
    assert len(find(node, "--studyroot", "--study", "--key", "10,10=Yamada*")) == 1


def test_gdcmscu_modality_worklist_c_find(node: Node) -> None:
    entry = {
        "patient_id": "GDCM-MWL",
        "patient_name": "WORK^LIST",
        "accession": "GDCMMWL1",
        "procedure": "CT HEAD",
        "modality": "CT",
        "station_aet": GDCM,
        "start": "2030-01-02T08:30",
    }
    node.archive.workitems.create(scheduled_workitem(entry))
    run = gdcmscu(node, "--worklist", "--key", "10,20=GDCM-MWL", "--key", "10,10=")
    assert [m.status for m in run.responses(C_FIND_RSP)] == [PENDING, 0]


# -------------------------------------------------------------------------- C-MOVE
def move(node: Node, out: Path, *keys: str) -> Run:
    out.mkdir(parents=True, exist_ok=True)
    return gdcmscu(node, "--move", "--studyroot", "-o", str(out), *keys, scp=True)


def received(out: Path) -> dict[str, bytes]:
    """SOP Instance UID → dataset bytes of the files gdcmscu wrote."""
    files = [p for p in out.rglob("*") if p.is_file()]
    return {
        str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): bytes(
            split_part10(p.read_bytes())[1]
        )
        for p in files
    }


@pytest.fixture(scope="module")
def implicit_study(node: Node, tmp_path_factory: pytest.TempPathFactory) -> list[Dataset]:
    """A study stored in Implicit VR Little Endian, the one syntax GDCM's storage SCP
    reads right whatever it accepted (test_gdcmscu_c_move_of_explicit_vr_instances_…)."""
    datasets = implicit(own_study("GDCM-MOVE", 3))
    for path in write(datasets, tmp_path_factory.mktemp("gdcm-move")):
        assert node.archive.store(path.read_bytes()).status == "stored"
    return datasets


def test_gdcmscu_c_move_of_a_study_to_its_own_scp(
    node: Node, implicit_study: list[Dataset], tmp_path: Path
) -> None:
    """gdcmscu receives on its --port-scp what Isthmus sends as stored; the final
    C-MOVE-RSP counts every sub-operation (PS3.4 C.4.2.1.6)."""
    run = move(node, tmp_path, "--study", "--key", f"20,d={implicit_study[0].StudyInstanceUID}")
    final = run.responses(C_MOVE_RSP)[-1]
    assert (final.status, final.fields.get(0x1021), final.fields.get(0x1022)) == (0, "3", "0")
    got = received(tmp_path)
    assert set(got) == {ds.SOPInstanceUID for ds in implicit_study}
    for uid, data in got.items():
        assert stored(node, uid) == (ImplicitVRLittleEndian, data)


def test_gdcmscu_c_move_of_a_series_and_of_an_instance(
    node: Node, implicit_study: list[Dataset], tmp_path: Path
) -> None:
    first = implicit_study[0]
    series = ["--key", f"20,d={first.StudyInstanceUID}", "--key", f"20,e={first.SeriesInstanceUID}"]
    run = move(node, tmp_path / "series", "--series", *series)
    assert run.responses(C_MOVE_RSP)[-1].status == 0
    assert len(received(tmp_path / "series")) == 3
    image = [*series, "--key", f"8,18={first.SOPInstanceUID}"]
    run = move(node, tmp_path / "image", "--image", *image)
    assert run.responses(C_MOVE_RSP)[-1].fields.get(0x1021) == "1"
    assert set(received(tmp_path / "image")) == {first.SOPInstanceUID}


def test_gdcmscu_patient_root_c_move_of_a_patient(
    node: Node, implicit_study: list[Dataset], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    args = ["--move", "--patientroot", "--patient", "-o", str(out), "--key", "10,20=GDCM-MOVE"]
    run = gdcmscu(node, *args, scp=True)
    assert run.responses(C_MOVE_RSP)[-1].status == 0
    assert set(received(out)) == {ds.SOPInstanceUID for ds in implicit_study}


def proposed_contexts(log: str) -> dict[int, list[str]]:
    """Presentation context ID → transfer syntaxes of the A-ASSOCIATE-RQ gdcmscu's
    storage SCP received, as its debug log prints it."""
    [request] = [text for kind, text in Run(0, log).pdus() if kind == 1]
    contexts: dict[int, list[str]] = {}
    for context_id, body in re.findall(
        r"PresentationContext ID: (\d+)\n(.*?)(?=ItemLength|PresentationContext ID|UserInformation)",
        request,
        re.S,
    ):
        contexts[int(context_id)] = re.findall(r"^Name: ([0-9.]+)", body, re.M)
    return contexts


def test_gdcmscu_c_move_of_explicit_vr_instances_goes_on_an_explicit_vr_context(
    node: Node, tmp_path: Path
) -> None:
    """Isthmus proposes, per SOP class, the stored syntax alone and then Explicit and
    Implicit VR Little Endian (the stored bytes go as they are where that context is
    accepted); each C-STORE goes on the stored syntax's context (PS3.8 9.3.2.2: a
    transfer syntax per presentation context).  GDCM 3.0.21's storage SCP keeps one
    syntax for the whole association, the last one it accepted (Implicit, for the second
    context), reads the Explicit VR data set of the first context as Implicit and aborts
    ("Should not happen (imp)"): GDCM's deviation.  The standard's outcome is checked
    here: the first C-STORE-RQ comes on a context whose only syntax is the stored one."""
    out = tmp_path / "out"
    out.mkdir()
    keys = ["--key", f"20,d={catalogue.study_uid('B')}"]  # one Explicit VR instance
    args = ["-D", "--aetitle", GDCM, "--call", ISTHMUS, "--move", "--studyroot", "--study"]
    args += ["-o", str(out), *keys]
    done = gdcm.run(args, node.dicom_port, scp_port=scp_port(node), timeout=TIMEOUT)
    log = done.stdout + done.stderr
    store = next(m for m in Run(0, log).messages() if m.command == 0x0001)  # C-STORE-RQ
    assert store.fields[0x1000] == catalogue.sop_uid("B", 1, 1)
    assert proposed_contexts(log)[store.context_id] == [stored(node, store.fields[0x1000])[0]]
    for uid, data in received(out).items():  # a GDCM that reads it right keeps it as sent
        assert stored(node, uid)[1] == data
