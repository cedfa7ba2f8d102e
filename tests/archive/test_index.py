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


def test_planner_statistics_are_refreshed_as_the_archive_doubles() -> None:
    due = [n for n in range(1, 600_000) if idx.statistics_due(n)]
    assert due[:4] == [1000, 2000, 4000, 8000]
    assert due[-2:] == [256_000, 512_000]


def test_sqlite_statistics_give_the_planner_the_name_index_for_a_broad_date_range(
    tmp_path,
) -> None:
    """With statistics, a prefix on PatientName beats a ten-year StudyDate range
    (bench/scale: 72 ms → 23 ms at a million instances)."""
    engine = idx.create_engine(f"sqlite:///{tmp_path / 'i.sqlite'}")
    idx.migrate(engine)
    with engine.begin() as conn:
        for p in range(200):
            pk = conn.execute(
                idx.patient.insert().values(
                    patient_id=f"P{p}", issuer_of_patient_id="", patient_name_norm=f"N{p:03d}"
                )
            ).inserted_primary_key[0]
            for s in range(5):
                conn.execute(
                    idx.study.insert().values(
                        patient_pk=pk, study_instance_uid=f"1.{p}.{s}", study_date=f"201{s}0101"
                    )
                )
        idx.refresh_statistics(conn)
        assert conn.exec_driver_sql("SELECT count(*) FROM sqlite_stat1").scalar() > 0
        plan = " ".join(
            str(row[3])
            for row in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT study.pk FROM study JOIN patient ON patient.pk ="
                " study.patient_pk WHERE patient.patient_name_norm LIKE 'N00%' AND"
                " study.study_date >= '20100101' AND study.study_date <= '20201231'"
            )
        )
    engine.dispose()
    assert "ix_patient_patient_name_norm" in plan


def test_migration_9_adds_the_federation_flag_to_an_existing_share_table(tmp_path) -> None:
    engine = idx.create_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    try:
        with engine.begin() as conn:  # the share table as migration 8 made it before
            conn.exec_driver_sql(
                "CREATE TABLE share (link_id VARCHAR(64) PRIMARY KEY, study_instance_uid"
                " VARCHAR(64) NOT NULL, secret VARCHAR(128) NOT NULL, created_at DATETIME"
                " NOT NULL, expires_at DATETIME NOT NULL, revoked_at DATETIME)"
            )
            conn.exec_driver_sql(
                "INSERT INTO share VALUES ('L', '1.2', 's', '2026-01-01', '2099-01-01', NULL)"
            )
            idx.MIGRATIONS[8](conn)
            idx.MIGRATIONS[8](conn)  # once there, nothing to do
            assert conn.exec_driver_sql("SELECT federation FROM share").scalar() == 0
    finally:
        engine.dispose()


def test_migration_10_adds_the_request_to_an_existing_relay_transfer_table(tmp_path) -> None:
    engine = idx.create_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    try:
        with engine.begin() as conn:  # the table as migration 7 made it before
            conn.exec_driver_sql(
                "CREATE TABLE relay_transfer (transfer_id VARCHAR(160) PRIMARY KEY,"
                " status VARCHAR(16) NOT NULL)"
            )
            conn.exec_driver_sql("INSERT INTO relay_transfer VALUES ('B.A.1', 'sending')")
            idx.MIGRATIONS[9](conn)
            idx.MIGRATIONS[9](conn)  # once there, nothing to do
            assert conn.exec_driver_sql("SELECT request FROM relay_transfer").scalar() is None
    finally:
        engine.dispose()
