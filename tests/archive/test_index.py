"""The index database: engines, durability settings and migrations on both backends."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sqlalchemy as sa

from isthmus.archive import Archive, query_from_keywords
from isthmus.archive import index as idx
from isthmus.testing.generate import ROOT, StudySpec, ct_instance


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


# Patient names (and one referring physician's) as sent, each with trailing empty
# components or groups (PS3.5 6.2.1.1, 6.2.1.2) but one.
OLD_NAMES = ["Smith^John^^^", "Doe^Jane^^Dr", "Müller^Hans^", "Roe^Ann^^=山田^花子^", "Poe^Ed=="]


def test_migration_11_upgrades_names_indexed_with_trailing_empty_components(
    index_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index of the previous schema held the upper-cased alphabetic group as sent
    (``SMITH^JOHN^^^``); migration 11 gives it the form ingest writes now, in ranges of
    primary keys (two rows here), so PatientName=SMITH^JOHN finds it."""
    archive = Archive(index_url, f"file://{tmp_path / 'blobs'}")
    try:
        for n, name in enumerate(OLD_NAMES):
            spec = StudySpec(patient_name=name, patient_id=f"MIG{n}", charset="ISO_IR 192")
            ds = ct_instance(spec, f"{ROOT}300.{n}", f"{ROOT}300.{n}.1", 1, 1)
            ds.ReferringPhysicianName = "Who^Cares^^" if n == 0 else "Who^Cares"
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            assert archive.store(out.getvalue()).status == "stored"
    finally:
        archive.close()
    engine = idx.create_engine(index_url)
    try:
        with engine.begin() as conn:  # back to the values and version the previous one wrote
            for table, column in (
                (idx.patient, "patient_name"),
                (idx.study, "referring_physician_name"),
            ):
                norm = table.c[column + "_norm"]
                for pk, raw in conn.execute(sa.select(table.c.pk, table.c[column])).all():
                    old = raw.split("=", 1)[0].upper()
                    conn.execute(table.update().where(table.c.pk == pk).values({norm.name: old}))
            conn.execute(idx.schema_version.delete().where(idx.schema_version.c.version == 11))
        monkeypatch.setattr(idx, "PN_MIGRATION_BATCH", 2)
        assert idx.migrate(engine) == 11
        with engine.connect() as conn:
            norms = set(conn.execute(sa.select(idx.patient.c.patient_name_norm)).scalars())
            referring = set(
                conn.execute(sa.select(idx.study.c.referring_physician_name_norm)).scalars()
            )
    finally:
        engine.dispose()
    assert norms == {"SMITH^JOHN", "DOE^JANE^^DR", "MÜLLER^HANS", "ROE^ANN", "POE^ED"}
    assert referring == {"WHO^CARES"}
    archive = Archive(index_url, f"file://{tmp_path / 'blobs'}")
    try:
        query = query_from_keywords("STUDY", {"PatientName": "SMITH^JOHN", "PatientID": ""})
        assert [m["00100020"]["Value"] for m in archive.find(query).matches] == [["MIG0"]]
        query = query_from_keywords("STUDY", {"ReferringPhysicianName": "who^cares"})
        assert len(archive.find(query).matches) == len(OLD_NAMES)
    finally:
        archive.close()
