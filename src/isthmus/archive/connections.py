"""The index's PostgreSQL connections: pooled, tested after idling, and read in autocommit.

Each round trip to PostgreSQL costs a small query as much as its own statement (about
0.1–0.2 ms on loopback here), and two habits of the defaults added three per request:

- **the pool's ping** (`pool_pre_ping`) sent ``SELECT 1`` at every checkout.  A pooled
  connection can only have gone stale while it lay idle (PostgreSQL restarted, a proxy
  timed out), so it is tested when it comes back after `PING_AFTER` idle seconds, and
  replaced when the test fails (SQLAlchemy's custom pessimistic disconnect handling: a
  `DisconnectionError` raised at checkout makes the pool take another connection).  The
  group-commit writer gives its connection back after 5 idle seconds (writer.py), so a
  database restarted while the archive was quiet still costs no failed batch.
- **a transaction around each read**: psycopg sends ``BEGIN`` before the first statement
  and the pool a ``ROLLBACK`` when the connection is returned.  `for_reads` gives an
  engine whose connections run in autocommit, each statement in a snapshot of its own:
  what SQLite's driver does for a SELECT already.  It shares the engine's pool; writes
  keep their transactions (``engine.begin()``).

`python -m bench.scale` and the figures in docs/performance.md ("PostgreSQL's round
trips") measure the difference.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

PING_AFTER = 1.0  # seconds in the pool after which a connection is tested at checkout
POOL_SIZE, MAX_OVERFLOW = 8, 16
_CHECKED_IN = "isthmus_checked_in"


def postgres_engine(url: str) -> Engine:
    """A pooled psycopg 3 engine whose connections are tested only after idling."""
    engine = sa.create_engine(url, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW)
    sa.event.listen(engine, "checkin", _stamp)
    sa.event.listen(engine, "checkout", _test_if_idle)
    return engine


def for_reads(engine: Engine) -> Engine:
    """The engine to read with: autocommit connections from the same pool on
    PostgreSQL (no BEGIN, no ROLLBACK); SQLite's engine as it is (its driver begins
    a transaction only before a write)."""
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def _stamp(_dbapi_conn: Any, record: Any) -> None:
    record.info[_CHECKED_IN] = time.monotonic()


def _test_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """Ping a connection that lay in the pool for PING_AFTER seconds or more; a dead one
    is reported as a disconnection, and the pool connects afresh."""
    since = record.info.get(_CHECKED_IN)
    if since is None or time.monotonic() - since < PING_AFTER:
        return
    try:
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        if not dbapi_conn.autocommit:  # the ping opened a transaction: end it
            dbapi_conn.rollback()
    except Exception as exc:  # psycopg.OperationalError and kin: the connection is gone
        raise sa.exc.DisconnectionError(f"pooled connection lost: {exc}") from exc
