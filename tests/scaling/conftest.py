"""One shared archive served by two processes behind HAProxy, for the tests of this folder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from isthmus.testing.postgres import TemporaryPostgres
from isthmus.testing.seaweedfs import TemporarySeaweedFS

from .cluster import Balancer, Process


@dataclass
class Cluster:
    index_url: str
    blob_url: str
    processes: list[Process]
    balancer: Balancer


@pytest.fixture(scope="module", params=["files", "s3"])
def cluster(
    request: pytest.FixtureRequest,
    postgres: TemporaryPostgres,
    tmp_path_factory: pytest.TempPathFactory,
    dcmtk: None,
) -> Iterator[Cluster]:
    """Two processes started at the same moment on a fresh index (so their migrations
    race), one blob store (a folder, or a prefix of the session's S3 server), HAProxy in
    front."""
    folder = tmp_path_factory.mktemp("cluster")
    index_url = postgres.create_database("s_" + uuid.uuid4().hex[:12])
    if request.param == "s3":
        server: TemporarySeaweedFS = request.getfixturevalue("seaweedfs")
        blob_url = server.url()
    else:
        blob_url = f"file://{folder / 'blobs'}"
    processes = [Process(f"isthmus{n}", folder, index_url, blob_url) for n in (1, 2)]
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
        yield Cluster(index_url, blob_url, processes, balancer)
    finally:
        balancer.stop()
        for process in processes:
            process.stop()
