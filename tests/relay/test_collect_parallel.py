"""relay/collect_parallel: a study retrieved from the source device over several
associations, one IMAGE-level C-GET per instance."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from tests.dimse.test_get_requestor import datasets, study_identifier

from isthmus.config import Peer
from isthmus.dicom.part10 import dataset_offset
from isthmus.dimse.get_requestor import GetRequestor
from isthmus.relay import collect_parallel
from isthmus.testing.dcmtk import QRSCP
from isthmus.testing.generate import StudySpec, write_study

pytestmark = pytest.mark.dcmtk
SPEC = StudySpec(patient_id="PAR001", series_count=2, instances_per_series=20)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_study(SPEC, tmp_path_factory.mktemp("parallel") / "study")


@pytest.fixture(scope="module")
def pacs(files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[QRSCP]:
    qr = QRSCP(tmp_path_factory.mktemp("pacs"), ["PACS"], {}).start()
    try:
        qr.load(files)
        yield qr
    finally:
        qr.stop()


class _Collector:
    """`add` of a collection: the dataset bytes of each instance, by SOP Instance UID."""

    def __init__(self) -> None:
        self.datasets: dict[str, bytes] = {}
        self.stored = 0
        self._lock = threading.Lock()

    def add(self, sop_class: str, sop_instance: str, syntax: str, part10: bytes) -> None:
        with self._lock:
            self.datasets[sop_instance] = part10[dataset_offset(part10) :]
            self.stored += 1


def _counting_gets(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of SOP Instance UIDs of every C-GET the collection sends."""
    sizes: list[int] = []
    real = GetRequestor.get

    def get(self: GetRequestor, identifier: Dataset, *args: Any, **kwargs: Any) -> Any:
        value = identifier.SOPInstanceUID
        sizes.append(1 if isinstance(value, str) else len(value))
        return real(self, identifier, *args, **kwargs)

    monkeypatch.setattr(GetRequestor, "get", get)
    return sizes


def test_a_study_comes_byte_identical_one_c_get_per_instance(
    pacs: QRSCP, files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _counting_gets(monkeypatch)
    collector = _Collector()
    expected: list[int] = []
    device = Peer("PACS", "127.0.0.1", pacs.port)
    report = collect_parallel.collect(
        device, "RELAYB", study_identifier(files), "STUDY", collector.add, expected.append
    )
    assert (report.completed, report.failed, report.status) == (40, 0, 0)
    assert collector.datasets == datasets(files) and collector.stored == 40
    assert expected == [40]
    assert sizes == [1] * 40


def test_instances_already_sent_are_skipped(pacs: QRSCP, files: list[Path]) -> None:
    collector = _Collector()
    sent = set(list(datasets(files))[:15])
    device = Peer("PACS", "127.0.0.1", pacs.port)
    report = collect_parallel.collect(
        device,
        "RELAYB",
        study_identifier(files),
        "STUDY",
        collector.add,
        lambda n: None,
        skip=sent.__contains__,
    )
    assert report.completed == 25 and set(collector.datasets).isdisjoint(sent)
