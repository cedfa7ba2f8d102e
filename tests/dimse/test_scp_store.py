"""C-ECHO and C-STORE from real peers (DCMTK, pynetdicom): every transfer syntax is kept
exactly as sent, on SQLite and PostgreSQL."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread

from isthmus.archive import query_from_keywords
from isthmus.dimse import scu
from isthmus.server import Node
from isthmus.testing import samples
from isthmus.testing.generate import StudySpec, write_study

from .support import address, dataset_bytes, peer, run_ok, sop_uid_of, stored

# storescu option proposing each syntax (and the uncompressed ones after it)
STORESCU_OPTION = {
    "1.2.840.10008.1.2": "--propose-implicit",
    "1.2.840.10008.1.2.1": "--propose-little",
    "1.2.840.10008.1.2.2": "--propose-big",
    "1.2.840.10008.1.2.1.99": "--propose-deflated",
    "1.2.840.10008.1.2.4.50": "--propose-jpeg8",
    "1.2.840.10008.1.2.4.51": "--propose-jpeg12",
    "1.2.840.10008.1.2.4.70": "--propose-lossless",
    "1.2.840.10008.1.2.4.80": "--propose-jls-lossless",
    "1.2.840.10008.1.2.4.81": "--propose-jls-lossy",
    "1.2.840.10008.1.2.4.90": "--propose-j2k-lossless",
    "1.2.840.10008.1.2.4.91": "--propose-j2k-lossy",
    "1.2.840.10008.1.2.5": "--propose-rle",
}
COMPRESSED = [
    ts
    for ts in samples.BUNDLED
    if ts.startswith("1.2.840.10008.1.2.4") or ts == "1.2.840.10008.1.2.5"
]


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return samples.write_samples(tmp_path_factory.mktemp("samples"))


def test_echoscu_gets_success(dcmtk_tools: None, module_node: Node) -> None:
    output = run_ok("echoscu", "-v", *address(module_node))
    assert "Received Echo Response (Success)" in output


def test_pynetdicom_c_echo_gets_success(module_node: Node) -> None:
    assert scu.echo(peer(module_node), "PYNETDICOM") == 0x0000


@pytest.mark.parametrize("syntax", list(STORESCU_OPTION))
def test_storescu_instance_is_stored_as_sent_in_its_transfer_syntax(
    dcmtk_tools: None, module_node: Node, sample_files: dict[str, Path], syntax: str
) -> None:
    path = sample_files[syntax]
    run_ok("storescu", STORESCU_OPTION[syntax], *address(module_node), str(path))
    stored_syntax, stored_bytes = stored(module_node, sop_uid_of(path))
    assert stored_syntax == syntax
    assert stored_bytes == dataset_bytes(path.read_bytes())


def test_dcmsend_stores_compressed_instances_without_decompressing(
    dcmtk_tools: None, module_node: Node, tmp_path: Path
) -> None:
    files = samples.write_samples(tmp_path, COMPRESSED)
    run_ok("dcmsend", "--decompress-never", *address(module_node), *map(str, files.values()))
    for syntax, path in files.items():
        assert stored(module_node, sop_uid_of(path)) == (syntax, dataset_bytes(path.read_bytes()))


def test_dcmsend_uncompressed_instances_keep_their_content(
    dcmtk_tools: None, module_node: Node, tmp_path: Path
) -> None:
    uncompressed = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"]
    files = samples.write_samples(tmp_path, uncompressed)
    run_ok("dcmsend", *address(module_node), *map(str, files.values()))
    for path in files.values():
        rows = module_node.archive.instances(sop_uid=sop_uid_of(path))
        back = dcmread(BytesIO(module_node.archive.read_instance(rows[0])))
        sent = dcmread(path)
        assert back.file_meta.TransferSyntaxUID in uncompressed
        assert (back.PatientName, back.Rows) == (sent.PatientName, sent.Rows)
        assert (back.pixel_array == sent.pixel_array).all()


def test_storescu_sends_a_ct_series_on_one_association(
    dcmtk_tools: None, module_node: Node, tmp_path: Path
) -> None:
    spec = StudySpec(
        patient_id="PID-STORESCU", series_count=2, instances_per_series=10, rows=128, columns=128
    )
    paths = write_study(spec, tmp_path)
    run_ok("storescu", *address(module_node), *map(str, paths))
    for path in paths:
        assert stored(module_node, sop_uid_of(path))[1] == dataset_bytes(path.read_bytes())
    match = module_node.archive.find(
        query_from_keywords(
            "STUDY",
            {
                "PatientID": "PID-STORESCU",
                "NumberOfStudyRelatedInstances": "",
                "NumberOfStudyRelatedSeries": "",
            },
        )
    ).matches
    assert [(m["00201206"]["Value"], m["00201208"]["Value"]) for m in match] == [([2], [20])]


def test_pynetdicom_scu_sends_files_in_their_own_syntax(module_node: Node, tmp_path: Path) -> None:
    files = samples.write_samples(tmp_path)
    report = scu.send(peer(module_node), list(files.values()), "PYNETDICOM")
    assert (report.sent, report.failed) == (len(files), [])
    for syntax, path in files.items():
        assert stored(module_node, sop_uid_of(path)) == (syntax, dataset_bytes(path.read_bytes()))
    [row] = module_node.archive.instances(sop_uid=sop_uid_of(files[COMPRESSED[0]]))
    meta = dcmread(BytesIO(module_node.archive.read_instance(row))).file_meta
    assert meta.SourceApplicationEntityTitle == "PYNETDICOM"


def test_sending_an_instance_twice_keeps_one_copy(module_node: Node, tmp_path: Path) -> None:
    path = write_study(StudySpec(instances_per_series=1), tmp_path)[0]
    for _ in range(2):
        assert scu.send(peer(module_node), [path]).sent == 1
    assert len(module_node.archive.instances(sop_uid=sop_uid_of(path))) == 1
