"""Transfers under faults (issue 11): a receiver stopped mid-transfer resumes without
delivering twice; an object corrupted or missing in the bucket is fetched again or
failed honestly; a manifest entry that never arrives fails; NATS or S3 down makes
`add` fail within a bounded time, and the next transfer works once NATS is back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import obstore
import pytest
from tests.relay.transfer_support import (
    Collector,
    Federation,
    ct_series,
    federation,
    final_report,
    send_all,
    wait_until,
)

from isthmus.archive import Archive
from isthmus.relay.crypto import SiteIdentity
from isthmus.relay.directory import SiteEntry
from isthmus.relay.objects import object_key
from isthmus.relay.objects_s3 import S3Objects
from isthmus.relay.transfer import (
    STREAM,
    Limits,
    ManifestEntry,
    ProgressListener,
    TransferError,
    TransferSender,
    TransferUnavailable,
    progress_subject,
)
from isthmus.testing.nats import TemporaryNATS
from isthmus.testing.net import free_port

pytestmark = pytest.mark.timeout(240)


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


def test_a_receiver_stopped_mid_transfer_resumes_without_delivering_twice(
    nats_server, seaweedfs, tmp_path, index_url, series
) -> None:
    with federation(nats_server.url, seaweedfs.url(), tmp_path) as fed:
        fed.state(index_url)  # the site's index: SQLite or PostgreSQL
        limits = Limits(ack_wait=3.0, manifest_wait=30.0, poll=0.5)
        first, second = Collector(), Collector()
        first.stop_after = 10
        with fed.listener() as listener:
            send_all(fed.sender(listener.subject), series)
            crashed = fed.receiver(first, limits)
            assert first.reached.wait(60)
            crashed.stop(abandon=True)  # as if killed: its fetched batch is left unacked
            fed.receivers.remove(crashed)
            fed.receiver(second, limits, link=fed.link("B-restarted"))
            final, _ = final_report(listener)
        uids = first.uids() + second.uids()
        assert len(uids) == len(set(uids)) == 30  # every one, none twice
        delivered = {a.sop_instance_uid: data for a, data in first.delivered + second.delivered}
        assert all(delivered[i.sop_instance_uid] == i.data for i in series)
        assert (final.status, final.completed, final.failed) == (0, 30, 0)
        assert len(first.delivered) >= 10 and second.delivered


class Healing:
    """The bucket's objects, where one damaged object is repaired after its first read
    (as a store that served a bad replica once would)."""

    def __init__(self, inner: S3Objects, name: str, original: bytes) -> None:
        self.inner, self.name, self.original = inner, name, original
        self.reads = 0

    def put(self, transfer: str, name: str, data: bytes) -> None:
        self.inner.put(transfer, name, data)

    def get(self, transfer: str, name: str) -> bytes:
        data = self.inner.get(transfer, name)
        if name == self.name:
            self.reads += 1
            self.inner.put(transfer, name, self.original)
        return data

    def delete_transfer(self, transfer: str) -> None:
        self.inner.delete_transfer(transfer)


def _damage(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0x40
    return bytes(damaged)


def test_a_corrupted_object_is_detected_and_fetched_again(fed, series) -> None:
    collector = Collector()
    with fed.listener() as listener:
        sender = fed.sender(listener.subject)
        send_all(sender, series[:5])
        original = fed.objects.get(sender.transfer_id, "2.0")
        fed.objects.put(sender.transfer_id, "2.0", _damage(original))
        fed.objects = Healing(fed.objects, "2.0", original)  # type: ignore[assignment]
        fed.receiver(collector)
        final, _ = final_report(listener)
    assert fed.objects.reads == 2  # type: ignore[attr-defined]
    assert [data for _, data in collector.delivered] == [i.data for i in series[:5]]
    assert (final.status, final.completed, final.failed) == (0, 5, 0)


def test_an_object_that_stays_corrupted_or_is_swapped_fails_honestly(fed, series) -> None:
    collector = Collector()
    with fed.listener() as listener:
        sender = fed.sender(listener.subject)
        send_all(sender, series[:5])
        tid = sender.transfer_id
        fed.objects.put(tid, "2.0", _damage(fed.objects.get(tid, "2.0")))
        fed.objects.put(tid, "3.0", fed.objects.get(tid, "4.0"))  # valid, but not instance 3
        fed.receiver(collector)
        final, _ = final_report(listener)
    bad = {series[2].sop_instance_uid, series[3].sop_instance_uid}
    assert collector.uids() == [
        i.sop_instance_uid for i in series[:5] if i.sop_instance_uid not in bad
    ]
    assert (final.status, final.completed, final.failed) == (0xB000, 3, 2)
    assert set(final.failed_uids) == bad
    reasons = {d.sop_instance_uid: d.reason for d in fed.state().deliveries(tid)}
    assert all("verification" in (reasons[uid] or "") for uid in bad)
    assert fed.state().get(tid).status == "failed"


def test_a_missing_object_fails_its_instance_and_the_transfer_says_so(fed, series) -> None:
    collector = Collector()
    with fed.listener() as listener:
        sender = fed.sender(listener.subject)
        send_all(sender, series[:3])
        obstore.delete(fed.objects.blobs.store, object_key("", sender.transfer_id, "1.0"))
        fed.receiver(collector)
        final, _ = final_report(listener)
    assert (final.status, final.completed, final.failed) == (0xB000, 2, 1)
    assert final.failed_uids == (series[1].sop_instance_uid,)
    failed = [d for d in fed.state().deliveries(sender.transfer_id) if d.status == "failed"]
    assert "missing object" in (failed[0].reason or "")


def test_a_manifest_entry_that_never_arrives_is_failed_after_a_bounded_wait(fed, series) -> None:
    collector = Collector()
    fed.receiver(collector, Limits(ack_wait=5.0, manifest_wait=1.0, poll=0.5))
    with fed.listener() as listener:
        sender = fed.sender(listener.subject)
        for item in series[:2]:
            sender.add(item.sop_class_uid, item.sop_instance_uid, item.transfer_syntax, item.data)
        # An announcement lost on the way: listed in the manifest, never announced.
        sender._entries.append(ManifestEntry(7, "1.2.3.999", 10, "0" * 64))
        sender.finish(0)
        final, _ = final_report(listener)
    assert (final.status, final.completed, final.failed) == (0xB000, 2, 1)
    assert final.failed_uids == ("1.2.3.999",)


def test_add_fails_within_a_bounded_time_when_the_object_store_is_down(fed, series) -> None:
    down = S3Objects(f"s3://isthmus/x?endpoint=http://127.0.0.1:{free_port()}&retry_timeout=1")
    sender = TransferSender(
        fed.link_a,
        fed.a,
        fed.dir_a,
        down,
        destination_site="B",
        destination_aet="X",
        origin={"site": "A", "subject": "relay.A.progress.x"},
    )
    item = series[0]
    with pytest.raises(TransferUnavailable, match="object store"):
        sender.add(item.sop_class_uid, item.sop_instance_uid, item.transfer_syntax, item.data)


def test_add_fails_within_a_bounded_time_when_nats_is_down_and_works_once_back(
    seaweedfs, tmp_path, series
) -> None:
    server = TemporaryNATS().start()
    try:
        with federation(server.url, seaweedfs.url(), tmp_path) as fed:
            collector = Collector()
            fed.receiver(collector)
            item = series[0]
            with fed.listener() as listener:
                broken = fed.sender(listener.subject, timeout=2.0)
                broken.add(
                    item.sop_class_uid, item.sop_instance_uid, item.transfer_syntax, item.data
                )
                server.stop()
                with pytest.raises(TransferUnavailable, match="NATS"):
                    broken.add(
                        series[1].sop_class_uid,
                        series[1].sop_instance_uid,
                        series[1].transfer_syntax,
                        series[1].data,
                    )
                server.start()
                wait_until(lambda: fed.link_a.connected and fed.link_b.connected)
                broken.abort("NATS went down", status=0xA702)
                final, _ = final_report(listener)
            assert (final.status, final.completed) == (0xA702, 1)

            with fed.listener() as listener:
                send_all(fed.sender(listener.subject), series[:3])
                final, _ = final_report(listener)
            assert (final.status, final.completed, final.failed) == (0, 3, 0)
    finally:
        server.close()


def test_messages_of_a_revoked_site_or_an_impostor_are_refused(fed, series) -> None:
    """B stops taking A's transfer once A is revoked, and refuses a third site C that
    claims a transfer of A's; C's own transfer, sent after both, still completes."""
    c = SiteIdentity.create("C")
    for directory in (fed.dir_a, fed.dir_b):
        directory.update(SiteEntry("C", c.keys))
    dir_c = fed.directory("C")
    dir_c.update(SiteEntry("C", c.keys))
    link_c = fed.link("C")
    collector = Collector()
    with fed.listener() as listener:
        send_all(fed.sender(listener.subject), series[:2])  # A's, then A is revoked
    fed.dir_b.update(SiteEntry("A", fed.a.keys, revoked=True))
    forged = c.seal("B", fed.b.keys, {"kind": "announce", "transfer": "A.B.0"}, b"{}")
    link_c.call(link_c.js.publish("relay.B.transfer.A.B.0", forged))
    with ProgressListener(link_c, c, dir_c, progress_subject("C"), from_site="B") as listener:
        sender = TransferSender(
            link_c,
            c,
            dir_c,
            fed.objects,
            destination_site="B",
            destination_aet="STORESCP",
            origin={"site": "C", "subject": listener.subject},
        )
        send_all(sender, series[2:4])
        fed.receiver(collector)
        final, _ = final_report(listener)
    assert final.status == 0
    assert collector.uids() == [i.sop_instance_uid for i in series[2:4]]


def test_a_sender_the_directory_does_not_name_yet_is_waited_for(fed, series) -> None:
    """A router that pulls before its directory has loaded keeps the messages."""
    entry = fed.dir_b.site("A")
    fed.dir_b.remove("A")
    collector = Collector()
    with fed.listener() as listener:
        send_all(fed.sender(listener.subject), series[:2])
        fed.receiver(collector)
        wait_until(lambda: _delivered_by_consumer(fed) >= 2)  # seen, and handed back
        fed.dir_b.update(entry)
        final, _ = final_report(listener)
    assert (final.status, final.completed) == (0, 2)


def _delivered_by_consumer(fed: Federation) -> int:
    info = fed.link_b.call(fed.link_b.js.consumer_info(STREAM, "site-B"))
    return int(info.delivered.consumer_seq or 0)


def test_a_receiving_process_killed_mid_transfer_resumes_without_delivering_twice(
    fed, series, tmp_path
) -> None:
    """SIGKILL of the process that delivers (tests/relay/receiver_process.py), then a
    new receiver on the same index and durable consumer finishes the transfer."""
    out = tmp_path / "process"
    out.mkdir()
    fed.b.save(tmp_path / "b.key")
    index_url = f"sqlite:///{tmp_path / 'b.sqlite'}"
    config = {
        "nats_url": fed.nats_url,
        "blob_url": fed.blob_url,
        "identity": str(tmp_path / "b.key"),
        "sites": {s.name: s.keys.to_json() for s in (fed.a, fed.b)},
        "index_url": index_url,
        "out": str(out),
        "block_after": 12,
        "ack_wait": 3.0,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    script = Path(__file__).with_name("receiver_process.py")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    collector = Collector()
    with fed.listener() as listener:
        send_all(fed.sender(listener.subject), series)
        process = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "config.json")],
            env=env,
            start_new_session=True,
        )
        try:
            wait_until(lambda: (out / "blocked").exists() or process.poll() is not None, 90)
            assert process.poll() is None, "the receiving process died on its own"
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
        fed.state(index_url)  # the same index the killed process wrote
        fed.receiver(collector, Limits(ack_wait=3.0, manifest_wait=60.0, poll=0.5))
        final, _ = final_report(listener)
    before = (out / "delivered.log").read_text().split()
    uids = before + collector.uids()
    assert len(before) == 12
    assert len(uids) == len(set(uids)) == 30
    assert (final.status, final.completed, final.failed) == (0, 30, 0)
    by_uid = {item.sop_instance_uid: item.data for item in series}
    for item in series:
        delivered = out / f"{item.sop_instance_uid}.dcm"
        if item.sop_instance_uid in before:
            assert delivered.read_bytes() == item.data
    assert all(data == by_uid[a.sop_instance_uid] for a, data in collector.delivered)


def test_a_source_router_restarted_mid_transfer_resumes_it_without_sending_twice(
    fed, series, tmp_path
) -> None:
    """The source keeps its transfer in its index: after a restart the re-issued
    C-MOVE's instances that were sent before are skipped, the rest complete it."""
    site_a = Archive(f"sqlite:///{tmp_path / 'a.sqlite'}", f"file://{tmp_path / 'a-blobs'}")
    try:
        collector = Collector()
        with fed.listener() as listener:
            before = fed.sender(listener.subject, state=site_a.relay_transfers)
            for item in series[:10]:
                before.add(
                    item.sop_class_uid, item.sop_instance_uid, item.transfer_syntax, item.data
                )
            # The source router dies here; its successor takes the transfer up.
            after = fed.sender(
                listener.subject, state=site_a.relay_transfers, transfer_id=before.transfer_id
            )
            assert after.sent == 10 and after.already_sent(series[0].sop_instance_uid)
            send_all(after, series)  # the PACS sends the whole series again
            fed.receiver(collector)
            final, _ = final_report(listener)
        assert collector.uids() == [i.sop_instance_uid for i in series]
        assert [d for _, d in collector.delivered] == [i.data for i in series]
        assert (final.status, final.completed, final.failed) == (0, 30, 0)
        sent = site_a.relay_transfers.get(before.transfer_id)
        assert (sent.status, sent.completed) == ("complete", 30)
        with pytest.raises(TransferError, match="no transfer"):
            fed.sender(listener.subject, state=site_a.relay_transfers, transfer_id="A.B.nope")
    finally:
        site_a.close()


class Outage:
    """The bucket for writes, a store that does not answer for reads."""

    def __init__(self, inner: S3Objects) -> None:
        self.inner = inner
        self.down = S3Objects(
            f"s3://isthmus/x?endpoint=http://127.0.0.1:{free_port()}&retry_timeout=0.5"
        )

    def put(self, transfer: str, name: str, data: bytes) -> None:
        self.inner.put(transfer, name, data)

    def get(self, transfer: str, name: str) -> bytes:
        return self.down.get(transfer, name)

    def delete_transfer(self, transfer: str) -> None:
        self.inner.delete_transfer(transfer)


def test_an_object_store_outage_at_the_destination_fails_the_transfer_in_bounded_time(
    fed, series
) -> None:
    fed.objects = Outage(fed.objects)  # type: ignore[assignment]
    limits = Limits(ack_wait=5.0, manifest_wait=10.0, poll=0.5, unavailable_timeout=2.0)
    with fed.listener() as listener:
        send_all(fed.sender(listener.subject), series[:2])
        fed.receiver(Collector(), limits)
        final, _ = final_report(listener)
    assert (final.status, final.completed, final.failed) == (0xA702, 0, 2)
    assert "manifest unreadable" in (final.reason or "")
    reasons = [d.reason or "" for d in fed.state().deliveries(final.transfer_id)]
    assert all("object store unavailable" in r for r in reasons)
