"""The relational index: patients, studies, series and instances in SQLAlchemy Core.

Runs the same on SQLite (WAL, synchronous=FULL so that a commit is durable) and on
PostgreSQL (psycopg 3).  Schema changes are numbered migrations recorded in
``schema_version``; opening an index applies the missing ones.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from isthmus.archive.attributes import ATTRIBUTES
from isthmus.archive.connections import postgres_engine
from isthmus.archive.prepared import Prepared

log = logging.getLogger(__name__)

metadata = sa.MetaData()


def _columns(level: str) -> list[sa.Column[Any]]:
    cols: list[sa.Column[Any]] = []
    for attr in ATTRIBUTES:
        if (
            attr.level != level
            or attr.computed
            or not attr.from_header
            or attr.keyword.endswith("InstanceUID")
        ):
            continue
        kind = sa.Integer if attr.vr in ("IS", "US", "UL", "SL", "SS") else sa.String(256)
        cols.append(sa.Column(attr.column, kind, index=attr.vr in ("DA", "PN", "LO", "SH", "CS")))
        if attr.vr == "PN":  # upper-cased alphabetic group, for case-insensitive matching
            cols.append(sa.Column(attr.column + "_norm", sa.String(256), index=True))
    return cols


patient = sa.Table(
    "patient",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    *_columns("PATIENT"),
    sa.UniqueConstraint("patient_id", "issuer_of_patient_id", name="uq_patient_identity"),
)

study = sa.Table(
    "study",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column(
        "patient_pk", sa.ForeignKey("patient.pk", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, unique=True),
    *_columns("STUDY"),
)

series = sa.Table(
    "series",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column(
        "study_pk", sa.ForeignKey("study.pk", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("series_instance_uid", sa.String(64), nullable=False, unique=True),
    *_columns("SERIES"),
)

instance = sa.Table(
    "instance",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column(
        "series_pk", sa.ForeignKey("series.pk", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
    *_columns("IMAGE"),
    sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
    sa.Column("blob_key", sa.String(256), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("pixel_offset", sa.BigInteger),  # offset of pixel value in the blob
    sa.Column("pixel_length", sa.BigInteger),  # 0xFFFFFFFF when encapsulated
    sa.Column("metadata", sa.Text, nullable=False),  # DICOM JSON, BulkDataURIs relative
    sa.Column("source_aet", sa.String(16)),
    sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

# De-identification projects (PS3.15 Annex E): each has the secret key its pseudonyms
# are keyed hashes of (isthmus.deid.pseudonyms); created on first use, never changed.
deid_project = sa.Table(
    "deid_project",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("secret", sa.String(64), nullable=False),  # 256 bits, hexadecimal
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# AE titles other doors registered at run time (a browser through the WebSocket
# gateway), with the DICOM port of the process that holds them, so that every process
# sharing the index can send there (docs/scaling.md).  Not patient data.
route = sa.Table(
    "route",
    metadata,
    sa.Column("aet", sa.String(16), primary_key=True),
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("process", sa.String(64), nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
)

TABLES = {"PATIENT": patient, "STUDY": study, "SERIES": series, "IMAGE": instance}

# Work items (UPS, PS3.4 Annex CC): archive/workitems.py owns these tables.
workitem = sa.Table(
    "workitem",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),  # Procedure Step State
    sa.Column("transaction_uid", sa.String(64)),  # never returned to a reader (CC.2.6)
    sa.Column("version", sa.Integer, nullable=False),  # conditional UPDATE: one writer wins
    sa.Column("scheduled_start", sa.String(32), index=True),  # (0040,4005), as stored
    sa.Column("patient_id", sa.String(64), index=True),
    sa.Column("metadata", sa.Text, nullable=False),  # DICOM JSON, Transaction UID left out
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Subscriptions (PS3.4 CC.2.3.2): `workitem_uid` is the work item's UID, or the well-known
# UID of the global subscription (…34.5) or of the filtered global one (…34.5.1).
# `active` False records an unsubscription from one item that a global one would cover.
ups_subscription = sa.Table(
    "ups_subscription",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("aet", sa.String(16), nullable=False, index=True),
    sa.Column("workitem_uid", sa.String(64), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("deletion_lock", sa.Boolean, nullable=False),
    sa.Column("filter", sa.Text),  # JSON {keyword: value} of a filtered global subscription
    # A suspended global subscription covers the work items up to this pk only.
    sa.Column("suspended_after", sa.Integer),
    sa.UniqueConstraint("aet", "workitem_uid", name="uq_ups_subscription"),
)

# Event reports (PS3.4 CC.2.4), one row per recipient, kept for `event_retention` so a
# subscriber whose channel was down gets them when it reconnects.
ups_event = sa.Table(
    "ups_event",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("aet", sa.String(16), nullable=False),
    sa.Column("workitem_uid", sa.String(64), nullable=False),
    sa.Column("event_type", sa.Integer, nullable=False),
    sa.Column("info", sa.Text, nullable=False),  # DICOM JSON of the event information
    sa.Column("delivered", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Index("ix_ups_event_aet", "aet", "delivered", "pk"),
)

# Key of the PostgreSQL advisory lock that serializes migrations of processes starting
# together (any constant; "isthmus" in ASCII).
_MIGRATION_LOCK = 0x697374686D7573


# Modality Performed Procedure Steps (PS3.4 Annex F): archive/performed.py owns this table.
performed_step = sa.Table(
    "performed_step",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),  # Performed Procedure Step Status
    sa.Column("version", sa.Integer, nullable=False),  # conditional UPDATE: one writer wins
    sa.Column("workitem_uid", sa.String(64), index=True),  # the work item it performs
    sa.Column("source_aet", sa.String(16)),
    sa.Column("metadata", sa.Text, nullable=False),  # DICOM JSON
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


# Relay transfers (docs/relay.md "Transfers"): archive/relay_transfers.py owns these.
# One row per transfer this site receives, one per instance of it delivered (or failed)
# to the local destination AE, so a restarted router resumes and never delivers twice.
relay_transfer = sa.Table(
    "relay_transfer",
    metadata,
    sa.Column("transfer_id", sa.String(160), primary_key=True),  # <source>.<dest>.<hex>
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("destination", sa.String(64), nullable=False),
    sa.Column("destination_aet", sa.String(16), nullable=False),
    sa.Column("origin", sa.Text, nullable=False),  # JSON: where progress goes
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("dicom_status", sa.Integer),  # the final C-MOVE/C-GET status, once final
    sa.Column("expected", sa.Integer),  # instances the source said it would send
    sa.Column("manifest_count", sa.Integer),  # entries of the manifest, once it came
    sa.Column("failed_at_source", sa.Integer, nullable=False, default=0),
    sa.Column("source_status", sa.Integer),  # the status the source device reported
    sa.Column("completed", sa.Integer, nullable=False, default=0),
    sa.Column("failed", sa.Integer, nullable=False, default=0),
    sa.Column("warning", sa.Integer, nullable=False, default=0),
    sa.Column("reason", sa.Text),
    sa.Column("manifest_at", sa.DateTime(timezone=True)),  # first seen (its wait starts)
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    # JSON: the request a source site's transfer serves (the C-GET to re-issue after a
    # restart: AE titles, model, identifier, parties), kept while SENDING: migration 10.
    sa.Column("request", sa.Text),
)

relay_delivery = sa.Table(
    "relay_delivery",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column(
        "transfer_id",
        sa.ForeignKey("relay_transfer.transfer_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("seq", sa.Integer, nullable=False),  # order of announcement
    sa.Column("sop_instance_uid", sa.String(64), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # delivered, warning, failed
    sa.Column("dicom_status", sa.Integer),  # of the C-STORE to the destination AE
    sa.Column("reason", sa.Text),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("transfer_id", "sop_instance_uid", name="uq_relay_delivery"),
)


# Share links of peer-to-peer sharing (docs/p2p.md): archive/shares.py owns this.  The
# secret is kept because both ends prove knowledge of it with an HMAC keyed by it.
share = sa.Table(
    "share",
    metadata,
    sa.Column("link_id", sa.String(64), primary_key=True),
    sa.Column("study_instance_uid", sa.String(64), nullable=False, index=True),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    # Published to the federation's peers (docs/p2p.md, "Discovery"): migration 9.
    sa.Column("federation", sa.Boolean, nullable=False, server_default=sa.false()),
)


def _migration_1(conn: Connection) -> None:
    """The initial schema."""
    metadata.create_all(conn, tables=[patient, study, series, instance])


job = sa.Table(
    "job",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),  # "forward", "retention", …
    sa.Column("label", sa.String(64), nullable=False, default=""),  # e.g. the rule's name
    sa.Column("subject", sa.String(64), nullable=False, default=""),  # e.g. a study UID
    sa.Column("params", sa.Text, nullable=False, default="{}"),  # JSON
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("not_before", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("first_try", sa.DateTime(timezone=True)),  # retries end max_retry_time after
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Index("ix_job_kind_label_subject", "kind", "label", "subject"),
)

job_item = sa.Table(
    "job_item",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("job_pk", sa.ForeignKey("job.pk", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("item", sa.String(64), nullable=False),  # e.g. a SOP Instance UID
    sa.Column("status", sa.String(16), nullable=False),  # pending, done, failed
    sa.Column("reason", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("job_pk", "item", name="uq_job_item"),
    sa.Index("ix_job_item_item", "item"),
)


def _migration_2(conn: Connection) -> None:
    """De-identification projects and their pseudonym keys."""
    metadata.create_all(conn, tables=[deid_project])


def _migration_3(conn: Connection) -> None:
    """Work items (UPS), their subscriptions and event log."""
    metadata.create_all(conn, tables=[workitem, ups_subscription, ups_event])


def _migration_4(conn: Connection) -> None:
    """AE titles registered at run time, shared by the processes of one archive."""
    metadata.create_all(conn, tables=[route])


def _migration_5(conn: Connection) -> None:
    """Persistent jobs (archive/jobs.py) and their per-item progress."""
    metadata.create_all(conn, tables=[job, job_item])


def _migration_6(conn: Connection) -> None:
    """Modality Performed Procedure Steps (MPPS)."""
    metadata.create_all(conn, tables=[performed_step])


def _migration_7(conn: Connection) -> None:
    """Relay transfers received and their deliveries (resumable, never twice)."""
    metadata.create_all(conn, tables=[relay_transfer, relay_delivery])


def _migration_8(conn: Connection) -> None:
    """Share links for peer-to-peer study sharing (expiring, revocable)."""
    metadata.create_all(conn, tables=[share])


def _migration_9(conn: Connection) -> None:
    """Shares published to the federation (a flag; migration 8 of a new index has it)."""
    if "federation" not in {c["name"] for c in sa.inspect(conn).get_columns("share")}:
        conn.execute(
            sa.text("ALTER TABLE share ADD COLUMN federation BOOLEAN NOT NULL DEFAULT false")
        )


def _migration_10(conn: Connection) -> None:
    """The request a source's transfer serves (resumed after a restart; migration 7 of
    a new index has it)."""
    if "request" not in {c["name"] for c in sa.inspect(conn).get_columns("relay_transfer")}:
        conn.execute(sa.text("ALTER TABLE relay_transfer ADD COLUMN request TEXT"))


# Rows of one table a statement of migration 11 visits at most (a range of primary keys).
PN_MIGRATION_BATCH = 10_000


def _migration_11(conn: Connection) -> None:
    """Person names' upper-cased columns (``*_norm``) without the delimiters of trailing
    empty components, as ingest writes them now (PS3.5 6.2.1.1: ``SMITH^JOHN^^^`` is
    ``SMITH^JOHN``; matchers.pn_norm).

    The old value is the upper-cased alphabetic group, so the new one is it without
    trailing ``^`` (upper-casing makes none): SQL alone, nothing read into Python,
    only names ending in ``^`` written, one range of primary keys per statement.  The
    ranges stay in `migrate`'s one transaction: PostgreSQL's migration lock is that
    transaction's, so committing a range would let a process starting at the same
    time take the lock, find migration 11 unrecorded and run it too (then fail to
    record it a second time); an interrupted migration leaves nothing half done."""
    for table in (patient, study, series, instance):
        norms = [c for c in table.c if c.name.endswith("_norm")]
        top = conn.execute(sa.select(sa.func.max(table.c.pk))).scalar() if norms else None
        for low in range(0, top or 0, PN_MIGRATION_BATCH):
            in_range = sa.and_(table.c.pk > low, table.c.pk <= low + PN_MIGRATION_BATCH)
            for norm in norms:
                conn.execute(
                    table.update()
                    .where(in_range, norm.like("%^"))
                    .values({norm.name: sa.func.rtrim(norm, "^")})
                )


def _summary(step: Callable[[Connection], None]) -> str:
    """A migration's docstring's first paragraph on one line: what the log says."""
    return " ".join((step.__doc__ or step.__name__).split("\n\n", 1)[0].split())


MIGRATIONS: list[Callable[[Connection], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
    _migration_8,
    _migration_9,
    _migration_10,
    _migration_11,
]


@dataclass
class InstanceRow:
    """An index row the archive hands back to doors (no file paths)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size: int
    pixel_offset: int | None
    pixel_length: int | None
    number_of_frames: int | None


def create_engine(url: str, durable: bool = True) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql://…`` (psycopg 3)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas if durable else _sqlite_pragmas_fast)
        return engine
    return postgres_engine(url)


def writer_lock_path(engine: Engine) -> str | None:
    """The file whose lock the index writers of several processes take turns on
    (writer.py): next to a SQLite database file; None for PostgreSQL, which lets
    writers wait on each other itself, and for an in-memory database."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return database + "-writer.lock"


def _sqlite_pragmas_fast(dbapi_conn: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_conn, record, synchronous="NORMAL")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, synchronous: str = "FULL") -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={synchronous}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA case_sensitive_like=ON")  # PS3.4: only PN matching ignores case
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cur.close()


# SQLite's page cache per connection (its default, 2 MiB, keeps too little of a large
# index in memory: at a million instances the study-level queries re-read pages).
SQLITE_CACHE_KIB = 32 * 1024
# Statistics for SQLite's query planner (ANALYZE over a sample of this many rows per
# index): without them it picks the StudyDate index for a ten-year range and walks most
# studies instead of using the PatientName prefix (bench/scale, docs/performance.md).
SQLITE_ANALYSIS_LIMIT = 1000
_STATISTICS_AT = frozenset(1000 * 2**k for k in range(8))


def refresh_statistics(conn: Connection) -> None:
    """Give the query planner up-to-date statistics (SQLite; PostgreSQL's autovacuum
    analyzes on its own).  Sampled, so it takes milliseconds even at a million rows."""
    if conn.dialect.name != "sqlite":
        return
    conn.exec_driver_sql(f"PRAGMA analysis_limit={SQLITE_ANALYSIS_LIMIT}")
    conn.exec_driver_sql("ANALYZE")


def statistics_due(written: int) -> bool:
    """Refresh after 1,000, 2,000, 4,000 … 128,000 instances written, then every
    256,000: the planner's picture of a growing archive stays within a factor of two."""
    return written in _STATISTICS_AT or (written > 0 and written % 256_000 == 0)


def migrate(engine: Engine) -> int:
    """Apply missing migrations; returns the schema version now in force.

    Several processes may open one PostgreSQL index at the same moment: an advisory
    lock held for the transaction makes them migrate one after the other (the second
    finds the work done).  On SQLite the first write takes the database lock."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
        schema_version.create(conn, checkfirst=True)
        current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
        for number, step in enumerate(MIGRATIONS, start=1):
            if number > current:
                log.info("index: applying migration %d (%s)", number, _summary(step))
                step(conn)
                conn.execute(
                    schema_version.insert().values(version=number, applied_at=datetime.now(UTC))
                )
                current = number
    return current


def insert_ignore(conn: Connection, table: sa.Table, values: dict[str, Any]) -> None:
    """INSERT … ON CONFLICT DO NOTHING on either dialect (safe with several processes)."""
    conn.execute(insert_ignore_statement(conn.dialect.name, table).values(**values))


def insert_ignore_statement(dialect: str, table: sa.Table) -> Any:
    """The INSERT … ON CONFLICT DO NOTHING of `table` for a dialect, without values."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


_INSERT_INSTANCE: dict[str, Any] = {}


def insert_instance(dialect: str) -> Any:
    """INSERT of one instance row that does nothing when the SOP Instance UID is there
    (another process stored it first) and returns the new row's key (no row: nothing
    inserted; `rowcount` does not tell); built once per dialect, so compiled once."""
    statement = _INSERT_INSTANCE.get(dialect)
    if statement is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            statement = pg_insert(instance).on_conflict_do_nothing(
                index_elements=["sop_instance_uid"]
            )
            statement = statement.returning(instance.c.pk)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            statement = sqlite_insert(instance).on_conflict_do_nothing(
                index_elements=["sop_instance_uid"]
            )
            statement = statement.returning(instance.c.pk)
        _INSERT_INSTANCE[dialect] = statement
    return statement


def instance_rows(conn: Connection, where: Iterable[Any]) -> list[InstanceRow]:
    """Instance rows with their study and series UIDs, in series/instance order."""
    rows: Iterable[Sequence[Any]] = conn.execute(_instance_rows_select().where(*where))
    return [InstanceRow(*row) for row in rows]


def instance_rows_by_uid(
    conn: Connection,
    study_uid: str | Sequence[str] | None = None,
    series_uid: str | Sequence[str] | None = None,
    sop_uid: str | Sequence[str] | None = None,
) -> list[InstanceRow]:
    """`instance_rows` of `uid_filter`; a statement built once for single UIDs (what
    every WADO-RS, rendering and frame request asks: building its joins and clauses
    again cost more than running it)."""
    given = (study_uid, series_uid, sop_uid)
    if any(v is not None and not isinstance(v, str) for v in given):
        return instance_rows(conn, uid_filter(study_uid, series_uid, sop_uid))
    shape = tuple(v is not None for v in given)
    params = {name: v for name, v in zip(_UID_PARAMS, given, strict=True) if v is not None}
    return [InstanceRow(*row) for row in _prepared_rows_by_uid(shape).all(conn, params)]


@functools.cache
def _prepared_rows_by_uid(shape: tuple[bool, ...]) -> Prepared:
    """`_rows_by_uid` run on the DB-API cursor (archive/prepared.py): every WADO-RS,
    rendering and frame request looks its instances up, and SQLAlchemy's execution
    took longer than the lookup."""
    return Prepared(_rows_by_uid(shape))


_UID_PARAMS = ("study", "series", "sop")


@functools.cache
def _instance_rows_select() -> Any:
    i, s, st = instance.c, series.c, study.c
    return (
        sa.select(
            st.study_instance_uid,
            s.series_instance_uid,
            i.sop_instance_uid,
            i.sop_class_uid,
            i.transfer_syntax_uid,
            i.blob_key,
            i.size,
            i.pixel_offset,
            i.pixel_length,
            i.number_of_frames,
        )
        .select_from(instance.join(series).join(study))
        .order_by(st.pk, s.series_number, s.pk, i.instance_number, i.pk)
    )


@functools.cache
def _rows_by_uid(shape: tuple[bool, ...]) -> Any:
    return _instance_rows_select().where(*_uid_conditions(shape))


def metadata_texts(
    conn: Connection, study_uid: str, series_uid: str | None, sop_uid: str | None
) -> Iterator[str]:
    """The stored DICOM JSON text of each instance of a study (series, instance), in
    series/instance order; the statement is built once per shape and run on the DB-API
    cursor, like `_prepared_rows_by_uid`."""
    shape = (True, series_uid is not None, sop_uid is not None)
    params = {"study": study_uid, "series": series_uid, "sop": sop_uid}
    given = {name: v for name, v in params.items() if v is not None}
    for (text,) in _metadata_by_uid(shape).all(conn, given):
        yield text


@functools.cache
def _metadata_by_uid(shape: tuple[bool, ...]) -> Prepared:
    i, s = instance.c, series.c
    return Prepared(
        sa.select(i.metadata)
        .select_from(instance.join(series).join(study))
        .where(*_uid_conditions(shape))
        .order_by(s.series_number, s.pk, i.instance_number, i.pk)
    )


def _uid_conditions(shape: tuple[bool, ...]) -> list[Any]:
    """`uid_filter`'s clauses with bound parameters, for the levels `shape` names."""
    columns = (
        study.c.study_instance_uid,
        series.c.series_instance_uid,
        instance.c.sop_instance_uid,
    )
    return [
        column == sa.bindparam(name)
        for column, name, given in zip(columns, _UID_PARAMS, shape, strict=True)
        if given
    ]


def uid_filter(
    study_uid: str | Sequence[str] | None = None,
    series_uid: str | Sequence[str] | None = None,
    sop_uid: str | Sequence[str] | None = None,
) -> list[Any]:
    """WHERE clauses selecting instances by any mix of study/series/instance UIDs."""
    where: list[Any] = []
    for column, value in (
        (study.c.study_instance_uid, study_uid),
        (series.c.series_instance_uid, series_uid),
        (instance.c.sop_instance_uid, sop_uid),
    ):
        if value is None:
            continue
        values = [value] if isinstance(value, str) else list(value)
        where.append(column.in_(values) if len(values) > 1 else column == values[0])
    return where
