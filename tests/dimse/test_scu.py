"""The SCU helpers used by the command line (pynetdicom as SCU against real peers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from isthmus.config import Peer
from isthmus.dimse import scu
from isthmus.server import Node
from isthmus.testing import samples
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port

from .support import CT_IMAGE_STORAGE, LONG_FAILED_LIST, failing_retrieve_scp, peer


def test_unreachable_peer_is_an_scu_error_naming_it() -> None:
    nobody = Peer("NOBODY", "127.0.0.1", free_port())
    with pytest.raises(scu.SCUError, match=f"cannot reach {nobody}"):
        scu.echo(nobody)


def test_send_reports_unreadable_files_by_name_and_sends_the_rest(
    module_node: Node, tmp_path: Path
) -> None:
    good = write_study(StudySpec(instances_per_series=2), tmp_path / "good")
    bad = tmp_path / "notes.txt"
    bad.write_text("not DICOM")
    report = scu.send(peer(module_node), [good[0], bad, good[1]], "SENDER")
    assert report.sent == 2
    assert [name for name, _reason in report.failed] == [str(bad)]


def test_send_counts_progress_for_every_file(module_node: Node, tmp_path: Path) -> None:
    files = list(samples.write_samples(tmp_path).values())
    ticks: list[int] = []
    report = scu.send(peer(module_node), files, progress=ticks.append)
    assert report.sent == len(files) and sum(ticks) == len(files)


def test_files_needing_more_than_128_contexts_go_over_several_associations() -> None:
    # 64 (class, syntax) pairs per association: with one uncompressed fallback context
    # per class, never more than 128 presentation contexts (PS3.8 9.3.2.2).
    items = [(Path(f"{n}.dcm"), f"1.2.3.{n}", "1.2.840.10008.1.2.1") for n in range(300)]
    batches = list(scu._context_batches(items))
    assert [len(b) for b in batches] == [64, 64, 64, 64, 44]
    assert [i for b in batches for i in b] == items


@pytest.fixture
def failing_pacs() -> Iterator[Peer]:
    with failing_retrieve_scp() as pacs:
        yield pacs


@pytest.mark.parametrize("service", ["get", "move"])
def test_a_failed_sop_instance_uid_list_over_64_kib_is_read_as_uids(
    failing_pacs: Peer, service: str
) -> None:
    """A list too long for UI in Explicit VR comes as UN (PS3.5 6.2.2): its bytes are the
    UIDs, not a list of byte values."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = "1.2.3"
    if service == "get":
        report = scu.get(failing_pacs, identifier, lambda event: 0x0000, [CT_IMAGE_STORAGE])
    else:
        report = scu.move(failing_pacs, identifier, "SCU", calling_aet="SCU")
    assert report.status == 0xA702
    assert report.failed_uids == LONG_FAILED_LIST
