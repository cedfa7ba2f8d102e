"""Which transfers a source router left SENDING it takes up at its start
(relay/resume.py): the probe of the caller's progress subject on a real NATS server,
and the rules that abort a transfer instead (no request, silent too long, nobody
waiting, the caller cancelled)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from isthmus.archive import Archive, RelayTransfers
from isthmus.relay.crypto import SiteIdentity
from isthmus.relay.directory import Directory, SiteEntry
from isthmus.relay.link import Link
from isthmus.relay.resume import RESUME_WITHIN, awaited, left_sending, why_not
from isthmus.relay.transfer import ProgressListener, progress_subject
from isthmus.relay.transfer_progress import PROBE_AWAITED, PROBE_CANCELLED
from isthmus.testing.nats import TemporaryNATS

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def link() -> Iterator[Link]:
    server = TemporaryNATS().start()
    link = Link(server.url, name="site-A").connect()
    try:
        yield link
    finally:
        link.close()
        server.close()


@pytest.fixture
def state(tmp_path) -> Iterator[RelayTransfers]:
    archive = Archive(f"sqlite:///{tmp_path / 'a.sqlite'}", f"file://{tmp_path / 'blobs'}")
    try:
        yield archive.relay_transfers
    finally:
        archive.close()


def listener(link: Link) -> ProgressListener:
    identity = SiteIdentity.create("A")
    directory = Directory("A")
    directory.update(SiteEntry("A", identity.keys))
    return ProgressListener(link, identity, directory, progress_subject("A"))


def sending(state: RelayTransfers, subject: str, request: dict[str, object] | None = None):
    return state.begin(
        "B.C.1",
        source="B",
        destination="C",
        destination_aet="STOREC",
        origin={"site": "A", "subject": subject},
        status=state.SENDING,
        request=request,
    )


def test_a_probe_hears_whether_the_caller_still_waits_or_cancelled(link: Link) -> None:
    assert awaited(link, progress_subject("A")) is None  # nobody listens: NATS says so
    with listener(link) as waiting:
        assert awaited(link, waiting.subject) == PROBE_AWAITED
        waiting.cancelled = True
        assert awaited(link, waiting.subject) == PROBE_CANCELLED
        with pytest.raises(TimeoutError):  # a probe is no progress report
            waiting.next(0.3)


def test_a_transfer_waited_for_with_its_request_is_resumed(link: Link, state) -> None:
    with listener(link) as waiting:
        transfer = sending(state, waiting.subject, {"called_aet": "PACSB"})
        assert left_sending(state, "B") == [transfer]
        assert left_sending(state, "C") == []
        assert why_not(transfer, state.request_of("B.C.1"), link) is None


def test_a_transfer_nobody_waits_for_or_without_request_or_too_old_is_not_resumed(
    link: Link, state
) -> None:
    with listener(link) as waiting:
        transfer = sending(state, waiting.subject)
        assert "no request" in why_not(transfer, None, link)[0]
        old = datetime.now(UTC) - timedelta(seconds=RESUME_WITHIN + 5)
        stale = dataclasses.replace(transfer, created_at=old, updated_at=old)
        assert "silent" in why_not(stale, {"called_aet": "PACSB"}, link)[0]
        waiting.cancelled = True
        why, status = why_not(transfer, {"called_aet": "PACSB"}, link)
        assert "cancelled" in why and status == 0xFE00
    why, status = why_not(transfer, {"called_aet": "PACSB"}, link)
    assert "no longer waits" in why and status == 0xC000
