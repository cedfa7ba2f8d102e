"""The index's PostgreSQL connections (archive/connections.py), on a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from isthmus.archive import connections
from isthmus.archive import index as idx
from isthmus.testing.postgres import TemporaryPostgres


@pytest.fixture
def engine(postgres: TemporaryPostgres) -> Iterator[Engine]:
    url = postgres.create_database("c_" + uuid.uuid4().hex[:12])
    engine = idx.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (n integer)"))
    try:
        yield engine
    finally:
        engine.dispose()


def terminate_backends(engine: Engine) -> None:
    """End every PostgreSQL backend serving this engine's database, as a restart of
    PostgreSQL does to pooled connections."""
    with psycopg.connect(engine.url.set(drivername="postgresql").render_as_string(False)) as c:
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_reads_run_in_autocommit_and_writes_keep_their_transactions(engine: Engine) -> None:
    reads = connections.for_reads(engine)
    with reads.connect() as conn:
        assert conn.connection.dbapi_connection.autocommit  # type: ignore[union-attr]
        conn.execute(sa.text("SELECT count(*) FROM t"))
        status = conn.connection.dbapi_connection.info.transaction_status  # type: ignore[union-attr]
        assert status == psycopg.pq.TransactionStatus.IDLE  # no BEGIN was sent
    with pytest.raises(RuntimeError), engine.begin() as conn:  # the same pool, afterwards
        assert not conn.connection.dbapi_connection.autocommit  # type: ignore[union-attr]
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        raise RuntimeError("roll back")
    with reads.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 0


def test_sqlite_reads_use_the_engine_as_it_is(tmp_path) -> None:
    engine = idx.create_engine(f"sqlite:///{tmp_path / 'i.sqlite'}")
    assert connections.for_reads(engine) is engine


def test_a_connection_killed_while_idle_is_replaced_at_checkout(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    terminate_backends(engine)
    monkeypatch.setattr(connections, "PING_AFTER", 0.0)  # it has idled long enough
    for reader in (engine, connections.for_reads(engine)):
        with reader.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 0


def test_a_connection_back_from_the_pool_at_once_is_not_pinged(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ping is what the pool no longer pays on every checkout: a busy archive's
    connections come back within PING_AFTER and go straight to work."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    pings: list[object] = []
    monkeypatch.setattr(connections, "PING_AFTER", 3600.0)
    real = connections._test_if_idle

    def counting(dbapi_conn: object, record: object, proxy: object) -> None:
        before = record.info.get(connections._CHECKED_IN)  # type: ignore[attr-defined]
        real(dbapi_conn, record, proxy)
        pings.append(before)

    sa.event.remove(engine, "checkout", real)
    sa.event.listen(engine, "checkout", counting)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    assert len(pings) == 1 and pings[0] is not None  # checked in before, and not pinged
    terminate_backends(engine)  # so a connection that dies that soon is not replaced first:
    with pytest.raises(sa.exc.OperationalError), engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
