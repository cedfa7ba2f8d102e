"""The relay's record of transfers received (archive/relay_transfers.py), on SQLite and
PostgreSQL: a transfer begins once, a delivery is recorded and counted once, the
manifest's first sighting is kept, and a finished transfer leaves the in-flight list."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from isthmus.archive import Archive, RelayDelivery, RelayTransfers


@pytest.fixture
def transfers(index_url: str, tmp_path) -> Iterator[RelayTransfers]:
    archive = Archive(index_url, f"file://{tmp_path / 'blobs'}")
    try:
        yield archive.relay_transfers
    finally:
        archive.close()


def _begin(transfers: RelayTransfers, tid: str = "A.B.1"):
    return transfers.begin(
        tid,
        source="A",
        destination="B",
        destination_aet="STORESCP",
        origin={"site": "A", "subject": "relay.A.progress.1"},
    )


def _delivery(uid: str, status: str = "delivered", seq: int = 0) -> RelayDelivery:
    return RelayDelivery("A.B.1", seq, uid, "ab" * 32, 100, status, 0, None)


def test_a_transfer_begins_once_and_keeps_its_parties(transfers) -> None:
    first = _begin(transfers)
    again = _begin(transfers)
    assert first == again
    assert (first.source, first.destination_aet, first.status) == ("A", "STORESCP", "receiving")
    assert first.origin == {"site": "A", "subject": "relay.A.progress.1"}
    assert [t.transfer_id for t in transfers.in_flight()] == ["A.B.1"]


def test_a_delivery_is_recorded_and_counted_once(transfers) -> None:
    _begin(transfers)
    assert transfers.record(_delivery("1.2.3", seq=0))
    assert not transfers.record(_delivery("1.2.3", "failed", seq=0))  # after a restart
    assert transfers.record(_delivery("1.2.4", "warning", seq=1))
    assert transfers.record(_delivery("1.2.5", "failed", seq=2))
    row = transfers.get("A.B.1")
    assert (row.completed, row.warning, row.failed) == (1, 1, 1)
    assert transfers.delivery("A.B.1", "1.2.3").status == "delivered"
    assert [d.sop_instance_uid for d in transfers.deliveries("A.B.1")] == [
        "1.2.3",
        "1.2.4",
        "1.2.5",
    ]


def test_the_manifest_wait_starts_at_its_first_sighting(transfers) -> None:
    _begin(transfers)
    seen = transfers.manifest_seen("A.B.1", count=3, failed_at_source=1, source_status=0xB000)
    again = transfers.manifest_seen("A.B.1", count=3, failed_at_source=1, source_status=0xB000)
    assert seen == again and seen.tzinfo is not None
    row = transfers.get("A.B.1")
    assert (row.manifest_count, row.failed_at_source, row.source_status) == (3, 1, 0xB000)


def test_a_finished_transfer_leaves_the_in_flight_list(transfers) -> None:
    _begin(transfers)
    transfers.expect("A.B.1", 30)
    transfers.finish("A.B.1", "complete", 0x0000)
    row = transfers.get("A.B.1")
    assert row.finished and row.dicom_status == 0 and row.expected == 30
    assert row.finished_at is not None
    assert transfers.in_flight() == []
    transfers.forget("A.B.1")
    assert transfers.get("A.B.1") is None


def test_recent_lists_transfers_in_flight_then_the_last_finished(transfers) -> None:
    for n in range(1, 5):
        _begin(transfers, f"A.B.{n}")
    transfers.expect("A.B.1", 3)
    transfers.record(_delivery("1.2.3", seq=0))
    for n in (2, 3, 4):  # finished in this order: 4 is the latest
        transfers.finish(f"A.B.{n}", "complete", 0)
    recent = transfers.recent(limit=2)
    assert [t.transfer_id for t in recent] == ["A.B.1", "A.B.4", "A.B.3"]
    assert recent[0].remaining == 2
    assert recent[0].updated_at is not None and recent[0].updated_at.tzinfo is not None
    assert _begin(transfers, "A.B.5").remaining is None  # the source has not said yet


def test_a_sent_transfer_keeps_its_request_until_it_finishes(transfers) -> None:
    request = {"called_aet": "PACSB", "identifier": "AAEC", "origin": {"site": "C"}}
    transfers.begin(
        "B.A.1",
        source="B",
        destination="A",
        destination_aet="STOREA",
        origin={"site": "C", "subject": "relay.C.progress.1"},
        status=transfers.SENDING,
        request=request,
    )
    assert transfers.request_of("B.A.1") == request
    assert transfers.request_of("A.B.404") is None
    _begin(transfers)  # a received one has none
    assert transfers.request_of("A.B.1") is None
    transfers.finish("B.A.1", transfers.ABORTED, 0xC000, "the device is gone")
    assert transfers.request_of("B.A.1") is None  # patient data kept no longer than needed
    assert transfers.get("B.A.1").reason == "the device is gone"
