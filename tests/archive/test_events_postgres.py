"""The cross-process event bus on PostgreSQL LISTEN/NOTIFY: two buses stand for two
processes sharing one index."""

from __future__ import annotations

import queue
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from isthmus.archive import Archive, Event
from isthmus.archive.events import LocalEventBus
from isthmus.archive.events_postgres import MAX_NOTIFY, PostgresEventBus
from isthmus.testing.postgres import TemporaryPostgres


@pytest.fixture
def pg_url(postgres: TemporaryPostgres) -> str:
    return postgres.create_database("e_" + uuid.uuid4().hex[:12])


@pytest.fixture
def buses(pg_url: str) -> Iterator[tuple[PostgresEventBus, PostgresEventBus]]:
    one, two = PostgresEventBus(pg_url), PostgresEventBus(pg_url)
    try:
        yield one, two
    finally:
        one.close()
        two.close()


def collect(bus: PostgresEventBus, prefix: str = "") -> queue.Queue[Event]:
    heard: queue.Queue[Event] = queue.Queue()
    bus.subscribe(prefix, heard.put)
    return heard


def test_an_event_published_on_one_bus_reaches_subscribers_of_the_other(
    buses: tuple[PostgresEventBus, PostgresEventBus],
) -> None:
    one, two = buses
    heard = collect(two, "ups.")
    one.publish("ups.1.2.3.state", {"state": "IN PROGRESS", "n": 3})
    one.publish("route.browser", {"aet": "X"})  # not their prefix
    one.publish("ups.1.2.4.state", {"state": "COMPLETED"})
    first, second = heard.get(timeout=10), heard.get(timeout=10)
    assert (first.topic, dict(first.payload)) == (
        "ups.1.2.3.state",
        {"state": "IN PROGRESS", "n": 3},
    )
    assert second.topic == "ups.1.2.4.state"  # in the order published
    assert heard.empty()


def test_a_local_event_stays_in_the_process_that_published_it(
    buses: tuple[PostgresEventBus, PostgresEventBus],
) -> None:
    """Metrics, audit facts and stored instances are each process's own: counted,
    audited and forwarded once, by the process that did the work."""
    one, two = buses
    here, there = collect(one), collect(two)
    one.publish("metrics.instance", {"door": "dimse"}, local=True)
    one.publish("ups.1.2.5.state", {"state": "SCHEDULED"})  # shared: a marker after it
    assert here.get(timeout=10).topic == "metrics.instance"
    assert there.get(timeout=10).topic == "ups.1.2.5.state"  # in order: nothing before it
    assert there.empty()


def test_the_publishing_process_hears_its_event_once_and_at_once(
    buses: tuple[PostgresEventBus, PostgresEventBus],
) -> None:
    one, two = buses
    mine, theirs = collect(one), collect(two)
    one.publish("transfer.progress", {"done": 1})
    assert mine.get_nowait().topic == "transfer.progress"  # on the publisher's thread
    assert theirs.get(timeout=10).topic == "transfer.progress"
    one.publish("transfer.progress", {"done": 2})  # its own NOTIFY came back: skipped
    assert theirs.get(timeout=10).payload == {"done": 2}
    assert mine.get_nowait().payload == {"done": 2}
    assert mine.empty()


def test_an_event_too_large_for_notify_is_refused_with_a_clear_error(
    buses: tuple[PostgresEventBus, PostgresEventBus],
) -> None:
    one, two = buses
    heard = collect(two)
    with pytest.raises(ValueError, match="too large"):
        one.publish("big", {"data": "x" * MAX_NOTIFY})
    one.publish("small", {"data": "x" * (MAX_NOTIFY - 100)})  # just under the limit
    assert heard.get(timeout=10).topic == "small"


def test_the_listener_reconnects_when_its_connection_is_killed(
    buses: tuple[PostgresEventBus, PostgresEventBus], pg_url: str
) -> None:
    one, two = buses
    heard = collect(two)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (two._backend_pid,))
    for attempt in range(100):  # events published while it reconnects may be lost
        one.publish("after", {"attempt": attempt})
        try:
            assert heard.get(timeout=0.2).topic == "after"
            break
        except queue.Empty:
            continue
    else:
        pytest.fail("the listener never came back")
    assert two.listening


def test_each_bus_counts_the_other_processes_listening_on_its_database(
    buses: tuple[PostgresEventBus, PostgresEventBus], postgres: TemporaryPostgres
) -> None:
    one, two = buses
    other_db = PostgresEventBus(postgres.create_database("e_" + uuid.uuid4().hex[:12]))
    try:
        assert one.others() == 1 and two.others() == 1  # not the bus of another database
        assert other_db.others() == 0
    finally:
        other_db.close()
    two.close()
    assert one.others() == 0


def test_an_archive_on_postgresql_shares_its_events_and_one_on_sqlite_keeps_them(
    pg_url: str, tmp_path: Path
) -> None:
    on_pg = Archive(pg_url, f"file://{tmp_path / 'a'}")
    on_sqlite = Archive(f"sqlite:///{tmp_path / 'i.sqlite'}", f"file://{tmp_path / 'b'}")
    try:
        assert isinstance(on_pg.events, PostgresEventBus)
        assert isinstance(on_sqlite.events, LocalEventBus)
    finally:
        on_pg.close()
        on_sqlite.close()


def test_an_ae_title_registered_by_one_archive_is_found_by_the_other(
    pg_url: str, tmp_path: Path
) -> None:
    one = Archive(pg_url, f"file://{tmp_path / 'b'}")
    two = Archive(pg_url, f"file://{tmp_path / 'b'}")
    try:
        heard = collect(two.events, "route.")  # type: ignore[arg-type]
        one.register_route("BROWSER1", "127.0.0.1", 11112)
        assert heard.get(timeout=10).payload["registered"] is True
        assert one.route("BROWSER1") == ("127.0.0.1", 11112, True)
        assert two.route("BROWSER1") == ("127.0.0.1", 11112, False)
        two.unregister_route("BROWSER1")  # not its registration: nothing happens
        assert two.route("BROWSER1") is not None
        one.close()  # a process's registrations end with it
        assert two.route("BROWSER1") is None
        two.register_route("BROWSER2", "127.0.0.1", 11113)
        two.forget_routes_at("127.0.0.1", 11113)  # only an earlier process's: kept
        assert two.route("BROWSER2") is not None
    finally:
        one.close()
        two.close()
