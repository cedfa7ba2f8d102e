"""One shared archive served by two processes behind HAProxy, for the tests of this folder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from isthmus.testing.postgres import TemporaryPostgres

from .cluster import Balancer, Process


@dataclass
class Cluster:
    index_url: str
    blobs: Path
    processes: list[Process]
    balancer: Balancer

    @property
    def blob_url(self) -> str:
        return f"file://{self.blobs}"


@pytest.fixture(scope="module")
def cluster(
    postgres: TemporaryPostgres, tmp_path_factory: pytest.TempPathFactory, dcmtk: None
) -> Iterator[Cluster]:
    """Two processes started at the same moment on a fresh index (so their migrations
    race), one blob folder, HAProxy in front."""
    folder = tmp_path_factory.mktemp("cluster")
    index_url = postgres.create_database("s_" + uuid.uuid4().hex[:12])
    blobs = folder / "blobs"
    processes = [Process(f"isthmus{n}", folder, index_url, f"file://{blobs}") for n in (1, 2)]
    balancer = Balancer(folder, processes)
    try:
        for process in processes:
            process.launch()
        for process in processes:
            process.wait_ready()
        balancer.start()
        for n in (1, 2):
            balancer.wait_up("isthmus_dicom", f"isthmus{n}")
            balancer.wait_up("isthmus_http", f"isthmus{n}")
        yield Cluster(index_url, blobs, processes, balancer)
    finally:
        balancer.stop()
        for process in processes:
            process.stop()
