"""Orthanc 1.10's DICOMweb client (plugin 1.7) against Isthmus's DICOMweb server.

Orthanc is driven through its REST API: /dicom-web/servers/isthmus/stow (STOW-RS of
what it holds), /qido (QIDO-RS), /retrieve (WADO-RS into Orthanc) and /get (any GET,
here the metadata).  Isthmus has no DICOMweb client of its own for Orthanc to serve (its
command line's `worklist --url` speaks UPS-RS, which Orthanc does not have), so only
this direction is tested.  One Orthanc and one Isthmus node (SQLite, files) serve the
module; each test stores a study of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from isthmus.dicom.part10 import split_part10
from isthmus.server import Node
from isthmus.testing import orthanc, samples
from isthmus.testing.generate import StudySpec, study
from isthmus.testing.orthanc import TemporaryOrthanc

from .conftest import node_settings, root_of

pytestmark = pytest.mark.skipif(
    not orthanc.installed(),
    reason=f"{orthanc.ORTHANC_BIN} is missing (scripts/system-deps.sh installs Orthanc)",
)

WAIT = 20.0  # seconds each REST call (and Orthanc's HTTP calls to Isthmus) may take


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with Node(node_settings(tmp_path_factory.mktemp("node"))) as running:
        yield running


@pytest.fixture(scope="module")
def peer(node: Node) -> Iterator[TemporaryOrthanc]:
    servers = {"isthmus": [root_of(node) + "/"]}
    with TemporaryOrthanc(dicomweb_servers=servers, timeout=WAIT) as running:
        yield running


def part10(ds: Dataset) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def own_study(patient_id: str, count: int = 2, **spec: Any) -> list[Dataset]:
    return list(
        study(
            StudySpec(
                patient_id=patient_id, instances_per_series=count, rows=16, columns=16, **spec
            )
        )
    )


def kept(node: Node, sop_uid: str) -> tuple[str, bytes]:
    """(transfer syntax, dataset bytes) Isthmus keeps for an instance."""
    [row] = node.archive.instances(sop_uid=sop_uid)
    return row.transfer_syntax_uid, bytes(split_part10(node.archive.read_instance(row))[1])


def orthanc_file(peer: TemporaryOrthanc, sop_uid: str) -> bytes:
    [found] = peer.post("/tools/lookup", sop_uid)
    data: bytes = peer.get(f"/instances/{found['ID']}/file")
    return data


def value(item: dict[str, Any], tag: str) -> Any:
    """The first value of `tag` in a DICOM JSON object (PS3.18 F.2)."""
    return item[tag]["Value"][0]


def qido(peer: TemporaryOrthanc, uri: str, **arguments: str) -> list[dict[str, str]]:
    """Orthanc's QIDO-RS to Isthmus; each match as tag → value, as Orthanc's REST API
    shows them (its own rendering of the DICOM JSON answer: one string per element)."""
    body = {"Uri": uri, "Arguments": arguments}
    matches = peer.post("/dicom-web/servers/isthmus/qido", body)
    return [{tag: element.get("Value", "") for tag, element in m.items()} for m in matches]


def _multi_frame() -> Dataset:
    ds = samples.canonical(dcmread(samples.bundled_path("rtdose.dcm")))
    ds.PatientID = "STOW-MF"
    return ds


def _jpeg() -> Dataset:
    ds = samples.canonical(dcmread(samples.bundled_path(samples.BUNDLED["1.2.840.10008.1.2.4.50"])))
    ds.PatientID = "STOW-JPEG"
    return ds


STOW = {
    "ct": lambda: own_study("STOW-CT", 1)[0],
    "iso-ir-192-name": lambda: own_study(
        "STOW-UTF8", 1, patient_name="Müller^Jürgen=山田^太郎", charset="ISO_IR 192"
    )[0],
    "iso-ir-100-name": lambda: own_study(
        "STOW-LATIN1", 1, patient_name="Gérard^Élodie", charset="ISO_IR 100"
    )[0],
    "multi-frame-rt-dose": _multi_frame,
    "jpeg-baseline": _jpeg,
}


@pytest.mark.parametrize("kind", list(STOW))
def test_orthanc_stow_rs_to_isthmus_is_kept_byte_for_byte(
    node: Node, peer: TemporaryOrthanc, kind: str
) -> None:
    ds = STOW[kind]()
    orthanc_id = peer.upload(part10(ds))["ID"]
    peer.post("/dicom-web/servers/isthmus/stow", {"Resources": [orthanc_id], "Synchronous": True})
    meta, sent = split_part10(orthanc_file(peer, ds.SOPInstanceUID))
    assert kept(node, ds.SOPInstanceUID) == (meta.TransferSyntaxUID, bytes(sent))


def test_orthanc_qido_rs_finds_studies_series_and_instances(
    node: Node, peer: TemporaryOrthanc
) -> None:
    datasets = own_study("QIDO-1", 3, patient_name="QIDO^PATIENT", study_date="20190304")
    for ds in datasets:
        node.archive.store(part10(ds))
    study_uid, series_uid = datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID
    [found] = qido(peer, "/studies", PatientName="qido*", StudyDate="20190301-")
    assert found["0020000D"] == study_uid
    assert found["00100010"] == "QIDO^PATIENT"
    # Number of Study Related Instances: Orthanc's /qido shows IS elements without their
    # value (Isthmus sends a JSON Number, as PS3.18 F.2.3 says and Orthanc's own server
    # does); the answer as it came, through /get, has it.
    assert "00201208" in found
    body = {"Uri": "/studies", "Arguments": {"PatientID": "QIDO-1"}}
    raw = peer.post("/dicom-web/servers/isthmus/get", body)
    assert [s["00201208"] for s in json.loads(raw)] == [{"vr": "IS", "Value": [3]}]
    [series] = qido(peer, f"/studies/{study_uid}/series")
    assert (series["0020000E"], series["00080060"]) == (series_uid, "CT")
    instances = qido(peer, f"/studies/{study_uid}/series/{series_uid}/instances")
    assert {i["00080018"] for i in instances} == {ds.SOPInstanceUID for ds in datasets}


def test_orthanc_wado_rs_retrieves_a_study_from_isthmus_byte_for_byte(
    node: Node, peer: TemporaryOrthanc
) -> None:
    datasets = own_study("WADO-1", 2, patient_name="Wädo^Patient", charset="ISO_IR 192")
    for ds in datasets:
        node.archive.store(part10(ds))
    study_uid = datasets[0].StudyInstanceUID
    peer.post(
        "/dicom-web/servers/isthmus/retrieve",
        {"Resources": [{"Study": study_uid}], "Synchronous": True},
    )
    for ds in datasets:
        meta, received = split_part10(orthanc_file(peer, ds.SOPInstanceUID))
        assert kept(node, ds.SOPInstanceUID) == (meta.TransferSyntaxUID, bytes(received))


def test_orthanc_wado_rs_metadata_of_a_study_from_isthmus(
    node: Node, peer: TemporaryOrthanc
) -> None:
    datasets = own_study("META-1", 2, patient_name="Méta^Données", charset="ISO_IR 100")
    for ds in datasets:
        node.archive.store(part10(ds))
    study_uid = datasets[0].StudyInstanceUID
    answer = peer.post("/dicom-web/servers/isthmus/get", {"Uri": f"/studies/{study_uid}/metadata"})
    metadata = json.loads(answer)  # Isthmus's answer as it came (application/dicom+json)
    assert {value(m, "00080018") for m in metadata} == {ds.SOPInstanceUID for ds in datasets}
    assert {value(m, "00100010")["Alphabetic"] for m in metadata} == {"Méta^Données"}
    assert all("7FE00010" in m for m in metadata)  # pixel data as a bulk data reference
