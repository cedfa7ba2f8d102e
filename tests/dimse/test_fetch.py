"""`isthmus retrieve` in-process: a study from a peer into the local archive, by C-GET and
by C-MOVE to ourselves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from isthmus.archive import Archive
from isthmus.config import Peer, Settings
from isthmus.dimse.fetch import receiving_settings, retrieve_into_archive
from isthmus.node.access import AccessControl
from isthmus.server import Node
from isthmus.testing import catalogue
from isthmus.testing.catalogue import series_uid, study_uid
from isthmus.testing.generate import ROOT, StudySpec, write_study
from isthmus.testing.net import free_port

from .support import dataset_bytes, peer


def local_settings(tmp_path: Path, port: int) -> Settings:
    return Settings(data=tmp_path / "local", aet="LOCAL", dicom_port=port, http_port=free_port())


def same_instances(remote: Node, local: Settings, study: str) -> None:
    archive = Archive.from_settings(local)
    try:
        got = {r.sop_instance_uid: r for r in archive.instances()}
        want = remote.archive.instances(study_uid=study)
        assert sorted(got) == sorted(r.sop_instance_uid for r in want)
        for row in want:
            assert dataset_bytes(archive.read_instance(got[row.sop_instance_uid])) == dataset_bytes(
                remote.archive.read_instance(row)
            )
    finally:
        archive.close()


@pytest.mark.parametrize("via", ["get", "move"])
def test_retrieve_a_study_into_the_local_archive(
    start_node: Callable[..., Node], tmp_path: Path, via: str
) -> None:
    port = free_port()
    remote = start_node(peers=(Peer("LOCAL", "127.0.0.1", port),))
    catalogue.load(remote.archive, tmp_path / "files")
    local = local_settings(tmp_path, port)
    report = retrieve_into_archive(local, peer(remote), study_uid("A"), None, via)
    assert (report.status, report.completed, report.failed) == (0, 4, 0)
    same_instances(remote, local, study_uid("A"))


# Classes a study often holds beside its images: Secondary Capture (dose screens),
# X-Ray Radiation Dose SR, Key Object Selection, Encapsulated PDF, Segmentation.
BESIDE_IMAGES = (
    "1.2.840.10008.5.1.4.1.1.7",
    "1.2.840.10008.5.1.4.1.1.88.67",
    "1.2.840.10008.5.1.4.1.1.88.59",
    "1.2.840.10008.5.1.4.1.1.104.1",
    "1.2.840.10008.5.1.4.1.1.66.4",
)


def test_retrieve_by_get_takes_the_classes_a_study_holds_beside_its_images(
    start_node: Callable[..., Node], tmp_path: Path
) -> None:
    """C-GET sub-operations of a class the requestor proposed no context (and role) for
    fail (PS3.4 C.4.3.3): the classes offered are the frequent ones, not the first 60
    by UID, which left out Secondary Capture, every SR and Segmentation."""
    remote = start_node()
    [image] = write_study(StudySpec(instances_per_series=1, rows=8, columns=8), tmp_path / "in")
    study = str(dcmread(image).StudyInstanceUID)
    for n, sop_class in enumerate(BESIDE_IMAGES):
        ds = dcmread(image)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(ROOT)
        ds.SeriesInstanceUID = generate_uid(ROOT)
        path = tmp_path / f"{n}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert remote.archive.store(path.read_bytes()).status == "stored"
    remote.archive.store(image.read_bytes())
    local = local_settings(tmp_path, free_port())
    report = retrieve_into_archive(local, peer(remote), study, None, "get")
    assert (report.status, report.completed, report.failed) == (0, 1 + len(BESIDE_IMAGES), 0)
    same_instances(remote, local, study)


def test_retrieve_one_series(start_node: Callable[..., Node], tmp_path: Path) -> None:
    remote = start_node()
    catalogue.load(remote.archive, tmp_path / "files")
    local = local_settings(tmp_path, free_port())
    report = retrieve_into_archive(local, peer(remote), study_uid("A"), series_uid("A", 2), "get")
    assert report.completed == 2
    archive = Archive.from_settings(local)
    try:
        assert {r.series_instance_uid for r in archive.instances()} == {series_uid("A", 2)}
    finally:
        archive.close()


def test_move_to_ourselves_needs_the_peer_to_know_us(
    start_node: Callable[..., Node], tmp_path: Path
) -> None:
    remote = start_node()  # LOCAL is not one of its peers
    catalogue.load(remote.archive, tmp_path / "files")
    report = retrieve_into_archive(
        local_settings(tmp_path, free_port()), peer(remote), study_uid("B"), None, "move"
    )
    assert (report.status, report.completed) == (0xA801, 0)


def test_move_to_ourselves_beyond_loopback_takes_stores_only_from_the_peer(
    tmp_path: Path,
) -> None:
    """The receiving port of `retrieve --via move` opened store to any caller; beyond
    loopback (docs/security.md: only known peers store there) it takes C-STOREs from the
    peer it retrieves from and the known ones, nobody else.  Judged on the settings it
    listens with: no test binds beyond loopback."""
    source = Peer("PACS", "10.0.0.5", 104)
    for host, stranger in (("10.0.0.2", False), ("127.0.0.1", True)):
        settings = replace(local_settings(tmp_path, free_port()), host=host)
        access = AccessControl(receiving_settings(settings, source, None))
        assert access.allowed("store", "PACS", "10.0.0.5")
        assert access.allowed("store", "STRANGER", "10.0.0.9") is stranger
