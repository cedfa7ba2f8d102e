"""Statements compiled once and run on the DB-API cursor behave as Connection.execute."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from tests.archive.conftest import engine_with

from isthmus.archive.index import insert_ignore_statement
from isthmus.archive.prepared import Prepared

meta = sa.MetaData()
things = sa.Table(
    "prepared_test",
    meta,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("size", sa.BigInteger),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
)
defaulted = sa.Table(
    "prepared_defaulted",
    meta,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), default="unnamed"),
)

FIND = Prepared(sa.select(things.c.pk, things.c.size).where(things.c.name == sa.bindparam("name")))
INSERT = Prepared(
    lambda dialect: insert_ignore_statement(dialect, things).returning(things.c.pk),
    per_columns=True,
)
SEEN = datetime(2026, 12, 3, 6, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def engine(index_url: str) -> Iterator[sa.Engine]:
    with engine_with(index_url, meta) as eng:
        yield eng


def row(name: str, size: int | None = 7) -> dict[str, object]:
    return {"name": name, "size": size, "seen_at": SEEN}


def test_an_inserted_row_reads_back_as_sqlalchemy_reads_it(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        inserted = INSERT.first(conn, row("a"))
        found = FIND.first(conn, {"name": "a"})
    assert inserted is not None and found == (inserted[0], 7)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(things.c.name, things.c.size, things.c.seen_at)).one()
    assert stored.name == "a" and stored.size == 7
    assert stored.seen_at.replace(tzinfo=UTC) == SEEN  # SQLite keeps no zone, the instant


def test_a_select_that_matches_nothing_gives_none(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert FIND.first(conn, {"name": "nobody"}) is None


def test_an_insert_that_conflicts_returns_no_row_and_changes_nothing(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        assert INSERT.first(conn, row("a", 1)) is not None
        assert INSERT.first(conn, row("a", 2)) is None
        assert FIND.first(conn, {"name": "a"}) == (1, 1)


def test_the_columns_given_are_the_columns_inserted(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        INSERT.first(conn, {"name": "b", "seen_at": SEEN})  # no size: NULL
        INSERT.first(conn, row("c", 3))
        assert FIND.first(conn, {"name": "b"}) == (1, None)
        assert FIND.first(conn, {"name": "c"}) == (2, 3)


def test_statements_run_in_the_transaction_of_the_connection(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        with conn.begin() as transaction:
            INSERT.first(conn, row("gone"))
            transaction.rollback()
        INSERT.first(conn, row("kept"))  # outside a transaction: one begins, as it would
        conn.commit()
    with engine.connect() as conn:
        assert FIND.first(conn, {"name": "gone"}) is None
        assert FIND.first(conn, {"name": "kept"}) is not None


def test_a_database_error_is_raised_as_sqlalchemy_raises_it(engine: sa.Engine) -> None:
    with engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
        INSERT.first(conn, {"name": "no time", "seen_at": None})


def test_a_column_default_it_cannot_compute_is_refused_not_left_null(engine: sa.Engine) -> None:
    insert = Prepared(defaulted.insert(), per_columns=True)
    with engine.connect() as conn, pytest.raises(ValueError, match="name"):
        insert.first(conn, {"pk": 1})


def test_a_result_that_needs_processing_is_refused(engine: sa.Engine) -> None:
    select = Prepared(sa.select(things.c.seen_at).where(things.c.pk == sa.bindparam("pk")))
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            pytest.skip("psycopg returns datetimes itself")
        with pytest.raises(ValueError, match="processing"):
            select.first(conn, {"pk": 1})


def test_every_row_of_a_read_comes_back_in_the_statement_order(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for name, size in (("b", 2), ("a", 1), ("c", 3)):
            INSERT.first(conn, row(name, size))
    sizes = Prepared(
        sa.select(things.c.name, things.c.size)
        .where(things.c.size >= sa.bindparam("least"))
        .order_by(things.c.name)
    )
    with engine.connect() as conn:  # a read outside any transaction begins one, as execute does
        assert sizes.all(conn, {"least": 2}) == [("b", 2), ("c", 3)]
        assert sizes.all(conn, {"least": 9}) == []


def test_the_engine_s_statement_listeners_see_each_prepared_statement(engine: sa.Engine) -> None:
    """Statement counters and tracers listening on the engine see what runs here too."""
    before: list[str] = []
    after: list[str] = []

    def on_before(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        before.append(statement)

    def on_after(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        after.append(statement)

    sa.event.listen(engine, "before_cursor_execute", on_before)
    sa.event.listen(engine, "after_cursor_execute", on_after)
    try:
        with engine.begin() as conn:
            INSERT.first(conn, row("listened"))
            FIND.first(conn, {"name": "listened"})
    finally:
        sa.event.remove(engine, "before_cursor_execute", on_before)
        sa.event.remove(engine, "after_cursor_execute", on_after)
    assert len(before) == len(after) == 2
    assert before[0].upper().startswith("INSERT") and before[1].upper().startswith("SELECT")
