"""/metrics, /healthz and /readyz: Prometheus text read back with prometheus_client's own
parser after real C-STOREs (DCMTK storescu) and STOW-RS requests, and readiness that
follows the index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from isthmus.config import Settings
from isthmus.dicom.part10 import dataset_offset
from isthmus.server import Node
from isthmus.testing import dcmtk
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port
from isthmus.testing.postgres import TemporaryPostgres
from isthmus.web.auth import hash_token

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(node: Node, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reply = httpx.get(f"http://127.0.0.1:{node.http_port}/metrics", headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    settings = Settings(
        data=tmp_path / "data", dicom_port=free_port(), http_port=free_port(), check_on_start=False
    )
    with Node(settings) as running:
        yield running


def stow(node: Node, files: list[Path]) -> None:
    body = (
        b"".join(
            b"--xx\r\nContent-Type: application/dicom\r\n\r\n" + p.read_bytes() + b"\r\n"
            for p in files
        )
        + b"--xx--\r\n"
    )
    reply = httpx.post(
        f"http://127.0.0.1:{node.http_port}/dicom-web/studies",
        content=body,
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=xx'},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text


def test_metrics_count_what_storescu_and_stow_stored_per_door(node: Node, tmp_path: Path) -> None:
    before = scrape(node)
    a = write_study(StudySpec(instances_per_series=4, rows=8, columns=8), tmp_path / "a")
    done = dcmtk.run("storescu", "-aec", "ISTHMUS", "127.0.0.1", str(node.dicom_port), *map(str, a))
    assert done.returncode == 0, done.stderr
    b = write_study(StudySpec(instances_per_series=2, rows=8, columns=8), tmp_path / "b")
    stow(node, b)
    after = scrape(node)
    received = {"direction": "received"}
    dimse = value(after, "isthmus_instances_total", door="dimse", **received)
    web = value(after, "isthmus_instances_total", door="dicomweb", **received)
    assert (dimse, web) == (
        4 + value(before, "isthmus_instances_total", door="dimse", **received),
        2,
    )
    datasets = [p.read_bytes() for p in a]  # storescu sends each dataset as stored
    assert value(after, "isthmus_instance_bytes_total", door="dimse", **received) == sum(
        len(d) - dataset_offset(d) for d in datasets
    )
    assert value(after, "isthmus_association_duration_seconds_count", door="dimse") == 1
    assert value(after, "isthmus_associations_total", result="accepted") == 1
    stow_count = total(after, "isthmus_http_request_duration_seconds_count", route="stow")
    assert stow_count == 1
    assert total(after, "isthmus_http_request_duration_seconds_count", route="metrics") >= 1
    assert value(after, "isthmus_open_associations") == 0
    assert ("isthmus_index_writer_queue_depth", ()) in after
    assert value(after, "isthmus_store_errors_total", store="index") == 0
    assert ("isthmus_store_errors_total", (("store", "blob"),)) in after
    assert value(after, "isthmus_audit_events_total", event="stored", outcome="0") == 2


def test_metrics_count_instances_sent_by_wado_rs(node: Node, tmp_path: Path) -> None:
    files = write_study(StudySpec(instances_per_series=3, rows=8, columns=8), tmp_path / "s")
    stow(node, files)
    from pydicom import dcmread

    study = dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    reply = httpx.get(f"http://127.0.0.1:{node.http_port}/dicom-web/studies/{study}", timeout=60)
    assert reply.status_code == 200
    samples = scrape(node)
    assert value(samples, "isthmus_instances_total", door="dicomweb", direction="sent") == 3
    assert total(samples, "isthmus_http_request_duration_seconds_count", route="wado") == 1


def test_open_associations_are_counted_while_they_are_open(node: Node) -> None:
    from pynetdicom import AE

    ae = AE("GAUGE")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title="ISTHMUS")
    assert assoc.is_established
    try:
        assert value(scrape(node), "isthmus_open_associations") == 1
    finally:
        assoc.release()
    samples = scrape(node)
    assert value(samples, "isthmus_open_associations") == 0
    assert value(samples, "isthmus_association_duration_seconds_count", door="dimse") == 1


def test_relay_and_p2p_counters_are_registered_before_those_doors_exist(node: Node) -> None:
    node.archive.activity.audit("relay-transfer", peer="SITE-B", detail={"direction": "sent"})
    node.archive.events.publish("metrics.p2p", {"direction": "received"})
    samples = scrape(node)
    assert value(samples, "isthmus_relay_transfers_total", direction="sent") == 1
    assert value(samples, "isthmus_p2p_transfers_total", direction="received") == 1


def test_metrics_need_the_metrics_permission_once_tokens_are_configured(tmp_path: Path) -> None:
    tokens = {
        "prometheus": {"hash": hash_token("scrape"), "permissions": ["metrics"]},
        "reader": {"hash": hash_token("read"), "permissions": ["read"]},
    }
    settings = Settings(
        data=tmp_path / "data",
        dicom_port=free_port(),
        http_port=free_port(),
        check_on_start=False,
        tokens=tokens,
    )
    with Node(settings) as node:
        url = f"http://127.0.0.1:{node.http_port}/metrics"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer read"}).status_code == 403
        assert (
            "isthmus_instances" in httpx.get(url, headers={"Authorization": "Bearer scrape"}).text
        )
        # health for load balancers needs no credential
        assert httpx.get(f"http://127.0.0.1:{node.http_port}/healthz").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{node.http_port}/readyz").status_code == 200


def test_healthz_readyz_and_health(node: Node) -> None:
    base = f"http://127.0.0.1:{node.http_port}"
    assert httpx.get(f"{base}/healthz").json() == {"status": "alive"}
    assert httpx.get(f"{base}/readyz").json() == {"status": "ready"}
    assert httpx.get(f"{base}/health").json()["status"] == "ok"


def test_readyz_is_503_while_the_index_is_unreachable(
    postgres: TemporaryPostgres, tmp_path: Path
) -> None:
    name = "ready_" + tmp_path.name[-12:].lower().replace("-", "_")
    url = postgres.create_database(name)
    settings = Settings(
        data=tmp_path / "data",
        dicom_port=free_port(),
        http_port=free_port(),
        check_on_start=False,
        index_url=url,
    )
    with Node(settings) as node:
        ready = f"http://127.0.0.1:{node.http_port}/readyz"
        assert httpx.get(ready).status_code == 200
        node.archive.engine.dispose()
        with psycopg.connect(postgres.url(), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            try:
                reply = httpx.get(ready, timeout=30)
                assert reply.status_code == 503
                assert reply.json()["status"] == "unready"
                assert httpx.get(f"http://127.0.0.1:{node.http_port}/healthz").status_code == 200
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert httpx.get(ready).status_code == 200


def test_readyz_is_503_while_the_blob_store_is_gone(node: Node) -> None:
    blobs = Path(node.archive.blobs.local_path("x/y.dcm")).parent.parent
    moved = blobs.with_name("moved-away")
    blobs.rename(moved)
    try:
        reply = httpx.get(f"http://127.0.0.1:{node.http_port}/readyz")
        assert reply.status_code == 503
        assert "blob store" in reply.json()["reason"]
    finally:
        moved.rename(blobs)
    assert httpx.get(f"http://127.0.0.1:{node.http_port}/readyz").status_code == 200


def test_a_blob_store_that_cannot_be_written_is_counted_as_a_blob_error(
    node: Node, tmp_path: Path
) -> None:
    from pynetdicom import AE

    (instance,) = write_study(StudySpec(instances_per_series=1, rows=8, columns=8), tmp_path)
    blobs = Path(node.archive.blobs.local_path("x/y.dcm")).parent.parent
    blobs.rename(blobs.with_name("blobs-away"))
    blobs.write_bytes(b"a file where the folder was")
    try:
        ae = AE("BROKEN")
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")
        assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title="ISTHMUS")
        from pydicom import dcmread

        status = assoc.send_c_store(dcmread(instance))
        assoc.release()
        assert status.Status != 0x0000
    finally:
        blobs.unlink()
        blobs.with_name("blobs-away").rename(blobs)
    samples = scrape(node)
    assert value(samples, "isthmus_store_errors_total", store="blob") == 1
    assert value(samples, "isthmus_store_errors_total", store="index") == 0


def test_the_metrics_of_several_workers_read_as_one_exposition_labelled_by_worker() -> None:
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from isthmus.metrics import by_worker

    def worker(stored: int) -> str:
        registry = CollectorRegistry()
        Counter("isthmus_x", "X", ["door"], registry=registry).labels("dimse").inc(stored)
        Histogram("isthmus_h", "H", registry=registry, buckets=(1, 2)).observe(1.5)
        return generate_latest(registry).decode()

    merged = by_worker({"w0": worker(1), "w1": worker(2)}).decode()
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    samples = [
        (s.labels, s.value) for s in families["isthmus_x"].samples if s.name.endswith("_total")
    ]
    assert samples == [
        ({"worker": "w0", "door": "dimse"}, 1.0),
        ({"worker": "w1", "door": "dimse"}, 2.0),
    ]
    counts = [s for s in families["isthmus_h"].samples if s.name == "isthmus_h_count"]
    assert [(s.labels["worker"], s.value) for s in counts] == [("w0", 1.0), ("w1", 1.0)]
    assert merged.count("# TYPE isthmus_h histogram") == 1
