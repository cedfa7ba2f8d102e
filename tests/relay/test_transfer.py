"""Transfers between two sites (relay/transfer*.py) on a real NATS with JetStream and a
real S3 server: instances arrive byte-identical and in order, the manifest completes
the transfer, progress reaches the originator, and nothing readable leaves a site."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tests.relay.transfer_support import (
    Collector,
    Federation,
    ct_series,
    federation,
    final_report,
    send_all,
)

from isthmus.relay.crypto import peek_header
from isthmus.relay.transfer import STREAM
from isthmus.testing.nats import TemporaryNATS

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def nats_server() -> Iterator[TemporaryNATS]:
    server = TemporaryNATS().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def series():
    return ct_series(30, 512)


@pytest.fixture
def fed(nats_server, seaweedfs, tmp_path) -> Iterator[Federation]:
    with federation(nats_server.url, seaweedfs.url(), tmp_path) as running:
        yield running


def test_every_instance_arrives_byte_identical_in_order_and_the_manifest_completes(
    fed, series
) -> None:
    collector = Collector()
    fed.receiver(collector)
    with fed.listener() as listener:
        sender = fed.sender(listener.subject)
        send_all(sender, series)
        final, pending = final_report(listener)
    assert [data for _, data in collector.delivered] == [i.data for i in series]
    assert collector.uids() == [i.sop_instance_uid for i in series]
    assert {a.destination_aet for a, _ in collector.delivered} == {"STORESCP"}
    assert (final.status, final.completed, final.failed, final.warning) == (0, 30, 0, 0)
    assert final.failed_uids == ()
    assert [p.completed for p in pending] == sorted(p.completed for p in pending)
    transfer = fed.state().get(sender.transfer_id)
    assert transfer is not None and transfer.status == "complete"
    assert len(fed.state().deliveries(sender.transfer_id)) == 30
    assert fed.objects.names(sender.transfer_id) == []  # deleted once complete


def test_pending_reports_count_down_what_the_source_said_it_would_send(fed, series) -> None:
    collector = Collector()
    fed.receiver(collector)
    with fed.listener() as listener:
        sender = fed.sender(listener.subject)
        sender.expected = 5
        send_all(sender, series[:5])
        final, pending = final_report(listener)
    # Pending reports are at most one per REPORT_EVERY seconds: the first always goes.
    assert pending and pending[0].completed == 1
    assert all(p.remaining == 5 - p.completed for p in pending)
    assert [p.completed for p in pending] == sorted({p.completed for p in pending})
    assert final.remaining == 0 and final.status == 0


def test_an_instance_larger_than_a_part_streams_in_several_objects(fed, series) -> None:
    big = series[0].data * 40  # 21 MB: three parts of at most 8 MiB
    collector = Collector()
    with fed.listener() as listener:
        sender = fed.sender(listener.subject)
        sender.add(series[0].sop_class_uid, "1.2.3.4.5", series[0].transfer_syntax, big)
        sender.finish(0)
        assert fed.objects.names(sender.transfer_id) == ["0.0", "0.1", "0.2", "manifest"]
        fed.receiver(collector)
        final, _ = final_report(listener)
    assert final.status == 0 and collector.delivered[0][1] == big


def test_the_source_failures_and_status_make_the_final_status(fed, series) -> None:
    collector = Collector()
    fed.receiver(collector)
    with fed.listener() as listener:
        sender = fed.sender(listener.subject)
        for item in series[:3]:
            sender.add(item.sop_class_uid, item.sop_instance_uid, item.transfer_syntax, item.data)
        sender.finish(0xB000, failed=2, failed_uids=["9.9.1", "9.9.2"])
        final, _ = final_report(listener)
    assert (final.status, final.completed, final.failed) == (0xB000, 3, 2)
    assert final.failed_uids == ("9.9.1", "9.9.2")


def test_destination_statuses_count_as_warnings_and_failures(fed, series) -> None:
    collector = Collector(status=0xB007)
    fed.receiver(collector)
    with fed.listener() as listener:
        send_all(fed.sender(listener.subject), series[:2])
        final, _ = final_report(listener)
    assert (final.status, final.completed, final.warning, final.failed) == (0xB000, 0, 2, 0)

    refusing = Collector(status=0xA700)
    fed.receivers.pop().stop()
    fed.receiver(refusing)
    with fed.listener() as listener:
        send_all(fed.sender(listener.subject), series[:2])
        final, _ = final_report(listener)
    assert (final.status, final.failed) == (0xA702, 2)  # every sub-operation failed
    assert set(final.failed_uids) == {i.sop_instance_uid for i in series[:2]}


def test_an_empty_transfer_completes_with_success(fed) -> None:
    fed.receiver(Collector())
    with fed.listener() as listener:
        fed.sender(listener.subject).finish(0)
        final, _ = final_report(listener)
    assert (final.status, final.completed, final.failed) == (0, 0, 0)


def test_an_aborted_transfer_ends_with_its_status_and_keeps_what_was_delivered(fed, series) -> None:
    collector = Collector()
    fed.receiver(collector)
    with fed.listener() as listener:
        sender = fed.sender(listener.subject)
        for item in series[:2]:
            sender.add(item.sop_class_uid, item.sop_instance_uid, item.transfer_syntax, item.data)
        sender.abort("C-CANCEL")
        final, _ = final_report(listener)
    assert (final.status, final.completed) == (0xFE00, 2)
    assert "C-CANCEL" in (final.reason or "")
    assert fed.state().get(sender.transfer_id).status == "aborted"
    assert fed.objects.names(sender.transfer_id) == []


def test_no_patient_data_uid_or_pixels_in_the_bucket_or_on_nats(fed, series) -> None:
    """Issue 11's plaintext check: read back every object and every message raw."""
    seen: list[bytes] = []

    async def sniff() -> None:
        async def keep(msg) -> None:
            seen.append(msg.subject.encode() + b"\n" + bytes(msg.data))

        await fed.link_a.nc.subscribe(">", cb=keep)
        await fed.link_a.nc.flush()

    fed.link_a.call(sniff())
    with fed.listener() as listener:
        sender = fed.sender(listener.subject)
        send_all(sender, series)
        stored = [
            fed.objects.get(sender.transfer_id, n) for n in fed.objects.names(sender.transfer_id)
        ]
        fed.receiver(Collector())
        final, _ = final_report(listener)
    assert final.status == 0
    streamed = fed.link_a.call(_stream_messages(fed))
    assert len(stored) == 31 and len(streamed) >= 31 and seen
    secrets = _secrets(series)
    for blob in stored + streamed + seen:
        for secret in secrets:
            assert secret not in blob


async def _stream_messages(fed: Federation) -> list[bytes]:
    js = fed.link_a.js
    info = await js.stream_info(STREAM)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(STREAM, seq)
        headers = repr(msg.header).encode()
        out.append(msg.subject.encode() + headers + (msg.data or b""))
    return out


def _secrets(series) -> list[bytes]:
    """Patient name and ID (in any case), the UIDs, and runs of pixel bytes."""
    import io

    from pydicom import dcmread

    out: set[bytes] = set()
    for item in series[:5]:
        ds = dcmread(io.BytesIO(item.data))
        for value in (str(ds.PatientName), ds.PatientID, "QUOKKA", "ZEDEKIAH", "PID-QX"):
            out |= {value.encode(), value.lower().encode()}
        for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID):
            out.add(uid.encode())
        pixels = ds.PixelData
        out |= {pixels[k : k + 32] for k in range(0, len(pixels), len(pixels) // 8)}
    return sorted(out)


def test_the_stream_is_made_once_with_its_subjects(fed) -> None:
    fed.sender("relay.A.progress.x")
    fed.sender("relay.A.progress.y")
    info = fed.link_a.call(fed.link_a.js.stream_info(STREAM))
    assert info.config.subjects == ["relay.*.transfer.>"]


def test_only_instances_that_shrink_are_compressed(fed, series) -> None:
    jpeg = "1.2.840.10008.1.2.4.50"  # JPEG Baseline: compression would not shrink it
    payload = bytes(range(256)) * 4000
    noise = os.urandom(len(payload))  # raw pixel data that does not shrink either
    raw = series[0].transfer_syntax
    collector = Collector()
    with fed.listener() as listener:
        sender = fed.sender(listener.subject)
        sender.add(series[0].sop_class_uid, "1.2.3.4.6", jpeg, payload)
        sender.add(series[0].sop_class_uid, "1.2.3.4.7", raw, payload)
        sender.add(series[0].sop_class_uid, "1.2.3.4.8", raw, noise)
        sender.finish(0)
        names = ("0.0", "1.0", "2.0")
        headers = [peek_header(fed.objects.get(sender.transfer_id, n)) for n in names]
        fed.receiver(collector)
        final, _ = final_report(listener)
    assert [h["zstd"] for h in headers] == [False, True, False]
    delivered = [d for _, d in collector.delivered]
    assert final.status == 0 and delivered == [payload, payload, noise]


class Signing:
    """The bucket's objects behind a store that signs URLs (as PresignedObjects does):
    records what it is asked to pre-sign."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[tuple[str, int]] = []

    def presign(self, transfer: str, names: list[str], method: str) -> None:
        self.calls.append((method, len(names)))

    def put(self, transfer: str, name: str, data: bytes) -> None:
        self.inner.put(transfer, name, data)

    def get(self, transfer: str, name: str) -> bytes:
        return self.inner.get(transfer, name)

    def delete_transfer(self, transfer: str) -> None:
        self.inner.delete_transfer(transfer)


def test_a_store_that_signs_urls_is_asked_for_them_in_batches(fed, series) -> None:
    """Not one request to the bridge per instance: URLs for many objects at once."""
    fed.objects = Signing(fed.objects)
    collector = Collector()
    with fed.listener() as listener:
        send_all(fed.sender(listener.subject), series)
        fed.receiver(collector)
        final, _ = final_report(listener)
    assert final.status == 0 and len(collector.delivered) == 30
    puts = [n for method, n in fed.objects.calls if method == "PUT"]
    gets = [n for method, n in fed.objects.calls if method == "GET"]
    assert puts == [101]  # the next 100 instances and the manifest
    assert gets == [101]  # the receiver asks ahead too: names are positions
