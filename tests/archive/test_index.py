"""The index database: engines, durability settings and migrations on both backends."""

from __future__ import annotations

import sqlalchemy as sa

from isthmus.archive import index as idx


def test_migrations_apply_once_and_record_their_version(index_url: str) -> None:
    engine = idx.create_engine(index_url)
    try:
        latest = len(idx.MIGRATIONS)
        assert idx.migrate(engine) == latest
        assert idx.migrate(engine) == latest
        with engine.connect() as conn:
            versions = [v for (v,) in conn.execute(sa.select(idx.schema_version.c.version))]
            tables = set(sa.inspect(conn).get_table_names())
        assert versions == list(range(1, latest + 1))
        assert {"patient", "study", "series", "instance"} <= tables
    finally:
        engine.dispose()


def test_sqlite_index_is_durable_at_commit(tmp_path) -> None:
    engine = idx.create_engine(f"sqlite:///{tmp_path / 'i.sqlite'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_postgresql_urls_use_psycopg_3() -> None:
    for url in ("postgresql://u@h:5/db", "postgres://u@h:5/db"):
        engine = idx.create_engine(url)
        assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
        engine.dispose()
