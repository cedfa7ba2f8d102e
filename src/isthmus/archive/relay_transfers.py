"""The relay's transfers this site receives or sends, in the index (docs/relay.md,
"Transfers").

`Archive.relay_transfers` is a `RelayTransfers`.  The relay door's receiver records each
transfer (who sent it, to which local AE, where progress goes) and each instance it
delivered or failed to deliver, in one transaction with the transfer's counts, before
it acknowledges the announcement on JetStream.  A router that restarts finds here what
it already delivered and never delivers it twice; the status page finds here the
transfers in flight with their progress.  A source router may keep its transfers here
too (status SENDING, each instance SENT once JetStream acknowledged it, and the request
it serves), so that after its own restart it continues the same transfer without
sending an instance twice.  Nothing here is patient data beyond SOP Instance UIDs
(which the index holds anyway) and, while a sent transfer is in flight, its request's
identifier (the C-MOVE's keys, as the site's own device received them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from isthmus.archive.index import relay_delivery, relay_transfer

RECEIVING, SENDING = "receiving", "sending"  # a transfer in flight, either way
COMPLETE, FAILED, ABORTED = "complete", "failed", "aborted"
DELIVERED, WARNING, SENT = "delivered", "warning", "sent"  # a delivery's status, or FAILED
FINISHED = (COMPLETE, FAILED, ABORTED)


@dataclass(frozen=True)
class RelayTransfer:
    """One transfer as recorded: its parties, its counts, and how it ended."""

    transfer_id: str
    source: str
    destination: str
    destination_aet: str
    origin: dict[str, Any]
    status: str
    dicom_status: int | None
    expected: int | None
    manifest_count: int | None
    failed_at_source: int
    source_status: int | None
    completed: int
    failed: int
    warning: int
    reason: str | None
    manifest_at: datetime | None
    created_at: datetime
    finished_at: datetime | None
    updated_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def remaining(self) -> int | None:
        """Instances still to come, once the source said how many (expected or manifest)."""
        total = self.manifest_count if self.manifest_count is not None else self.expected
        if total is None:
            return None
        return max(0, total - self.completed - self.warning - self.failed)


@dataclass(frozen=True)
class RelayDelivery:
    """One instance of a transfer, delivered (or warning, or failed) to the local AE."""

    transfer_id: str
    seq: int
    sop_instance_uid: str
    sha256: str
    size: int
    status: str
    dicom_status: int | None
    reason: str | None


class RelayTransfers:
    """Transfers received (or sent) and their deliveries (thread-safe; every call one
    transaction).  The statuses are attributes, for doors: a transfer's RECEIVING,
    SENDING, COMPLETE, FAILED, ABORTED; a delivery's DELIVERED, WARNING, FAILED, SENT."""

    RECEIVING, SENDING, COMPLETE, FAILED, ABORTED = RECEIVING, SENDING, COMPLETE, FAILED, ABORTED
    DELIVERED, WARNING, SENT = DELIVERED, WARNING, SENT

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def begin(
        self,
        transfer_id: str,
        *,
        source: str,
        destination: str,
        destination_aet: str,
        origin: dict[str, Any],
        status: str = RECEIVING,
        request: dict[str, Any] | None = None,
    ) -> RelayTransfer:
        """The transfer's row, created on its first announcement (idempotent); a
        source's own record of what it sends begins as SENDING, with the `request` it
        serves (what `request_of` gives back to resume it after a restart)."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            if _transfer(conn, transfer_id) is None:
                _insert_ignore(
                    conn,
                    relay_transfer,
                    {
                        "transfer_id": transfer_id,
                        "source": source,
                        "destination": destination,
                        "destination_aet": destination_aet,
                        "origin": json.dumps(origin, sort_keys=True),
                        "status": status,
                        "failed_at_source": 0,
                        "completed": 0,
                        "failed": 0,
                        "warning": 0,
                        "created_at": now,
                        "updated_at": now,
                        "request": None if request is None else json.dumps(request),
                    },
                )
            row = _transfer(conn, transfer_id)
        assert row is not None
        return row

    def get(self, transfer_id: str) -> RelayTransfer | None:
        with self.engine.connect() as conn:
            return _transfer(conn, transfer_id)

    def request_of(self, transfer_id: str) -> dict[str, Any] | None:
        """The request a transfer this site sends serves, while it is in flight (None
        for a received one, a finished one, or one begun without it).  It may hold
        patient data (the identifier of the C-MOVE): it stays in this index, the site's
        own, and `finish` clears it."""
        query = sa.select(relay_transfer.c.request).where(
            relay_transfer.c.transfer_id == transfer_id
        )
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar()
        return None if value is None else dict(json.loads(value))

    def in_flight(self) -> list[RelayTransfer]:
        """Transfers still receiving or sending, oldest first (the status page)."""
        t = relay_transfer.c
        query = (
            sa.select(relay_transfer)
            .where(t.status.in_([RECEIVING, SENDING]))
            .order_by(t.created_at)
        )
        with self.engine.connect() as conn:
            return [_transfer_of(row) for row in conn.execute(query).mappings()]

    def recent(self, limit: int = 20) -> list[RelayTransfer]:
        """Transfers in flight (oldest first), then up to `limit` finished ones, the
        most recently finished first: what the status page and `isthmus relay status`
        show."""
        t = relay_transfer.c
        ended = (
            sa.select(relay_transfer)
            .where(t.status.in_(FINISHED))
            .order_by(sa.func.coalesce(t.finished_at, t.updated_at).desc())
            .limit(max(0, limit))
        )
        with self.engine.connect() as conn:
            finished = [_transfer_of(row) for row in conn.execute(ended).mappings()]
        return self.in_flight() + finished

    def delivery(self, transfer_id: str, sop_instance_uid: str) -> RelayDelivery | None:
        with self.engine.connect() as conn:
            found = conn.execute(_DELIVERY, {"b_transfer": transfer_id, "b_uid": sop_instance_uid})
            row = found.mappings().first()
        return None if row is None else _delivery_of(row)

    def deliveries(self, transfer_id: str) -> list[RelayDelivery]:
        """Every delivery of a transfer, in order of announcement."""
        d = relay_delivery.c
        query = sa.select(relay_delivery).where(d.transfer_id == transfer_id).order_by(d.seq)
        with self.engine.connect() as conn:
            return [_delivery_of(row) for row in conn.execute(query).mappings()]

    def record(self, delivery: RelayDelivery) -> bool:
        """Record one instance's outcome and count it; False (nothing changed) when it
        was recorded before - by this process before a restart, or by another one."""
        values = {
            "transfer_id": delivery.transfer_id,
            "seq": delivery.seq,
            "sop_instance_uid": delivery.sop_instance_uid,
            "sha256": delivery.sha256,
            "size": delivery.size,
            "status": delivery.status,
            "dicom_status": delivery.dicom_status,
            "reason": delivery.reason,
            "recorded_at": datetime.now(UTC),
        }
        counter = _COUNTERS.get(delivery.status, "failed")
        with self.engine.begin() as conn:
            inserted = conn.execute(_insert_delivery(conn.dialect.name), values).first()
            if inserted is None:
                return False
            conn.execute(
                _COUNT[counter],
                {"b_transfer": delivery.transfer_id, "b_at": values["recorded_at"]},
            )
        return True

    def expect(self, transfer_id: str, expected: int) -> None:
        """The number of instances the source says it will send (for "remaining")."""
        self._update(transfer_id, expected=expected)

    def manifest_seen(
        self, transfer_id: str, *, count: int, failed_at_source: int, source_status: int
    ) -> datetime:
        """Note the manifest; returns when it was first seen (its bounded wait starts)."""
        t = relay_transfer.c
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(
                relay_transfer.update()
                .where(t.transfer_id == transfer_id)
                .values(
                    manifest_count=count,
                    failed_at_source=failed_at_source,
                    source_status=source_status,
                    manifest_at=sa.func.coalesce(t.manifest_at, now),
                    updated_at=now,
                )
            )
            row = _transfer(conn, transfer_id)
        assert row is not None and row.manifest_at is not None
        return row.manifest_at  # made aware by _transfer_of

    def finish(
        self, transfer_id: str, status: str, dicom_status: int, reason: str | None = None
    ) -> None:
        """The transfer ended: COMPLETE, FAILED or ABORTED, with its final DICOM status
        (its request, no longer needed, is cleared)."""
        now = datetime.now(UTC)
        self._update(
            transfer_id,
            status=status,
            dicom_status=dicom_status,
            reason=reason,
            finished_at=now,
            request=None,
        )

    def forget(self, transfer_id: str) -> None:
        """Remove a finished transfer and its deliveries (housekeeping)."""
        with self.engine.begin() as conn:
            conn.execute(relay_delivery.delete().where(relay_delivery.c.transfer_id == transfer_id))
            conn.execute(relay_transfer.delete().where(relay_transfer.c.transfer_id == transfer_id))

    def _update(self, transfer_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                relay_transfer.update()
                .where(relay_transfer.c.transfer_id == transfer_id)
                .values(updated_at=datetime.now(UTC), **values)
            )


def _transfer(conn: Connection, transfer_id: str) -> RelayTransfer | None:
    query = sa.select(relay_transfer).where(relay_transfer.c.transfer_id == transfer_id)
    row = conn.execute(query).mappings().first()
    return None if row is None else _transfer_of(row)


def _transfer_of(row: Any) -> RelayTransfer:
    fields = {name: row[name] for name in RelayTransfer.__dataclass_fields__}
    fields["origin"] = json.loads(row["origin"])
    for name in ("manifest_at", "created_at", "finished_at", "updated_at"):
        fields[name] = _aware(row[name])
    return RelayTransfer(**fields)


def _delivery_of(row: Any) -> RelayDelivery:
    return RelayDelivery(**{name: row[name] for name in RelayDelivery.__dataclass_fields__})


def _aware(moment: Any) -> Any:
    """SQLite gives naive datetimes back (they were stored in UTC)."""
    if isinstance(moment, datetime) and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


# The statements every instance of a transfer runs, built once (so compiled once: an
# expression built per call costs more than SQLite's work in it).
_d, _t = relay_delivery.c, relay_transfer.c
_DELIVERY = sa.select(relay_delivery).where(
    _d.transfer_id == sa.bindparam("b_transfer"), _d.sop_instance_uid == sa.bindparam("b_uid")
)
_COUNTERS = {DELIVERED: "completed", SENT: "completed", WARNING: "warning"}
_COUNT = {
    counter: relay_transfer.update()
    .where(_t.transfer_id == sa.bindparam("b_transfer"))
    .values({counter: _t[counter] + 1, "updated_at": sa.bindparam("b_at")})
    for counter in ("completed", "warning", "failed")
}
_INSERT_DELIVERY: dict[str, Any] = {}


def _insert_delivery(dialect: str) -> Any:
    """INSERT of one delivery that does nothing when the transfer has that SOP Instance UID and
    returns its key when it inserted; one statement per dialect."""
    statement = _INSERT_DELIVERY.get(dialect)
    if statement is None:
        statement = _on_conflict_do_nothing(dialect, relay_delivery)
        _INSERT_DELIVERY[dialect] = statement
    return statement


def _on_conflict_do_nothing(dialect: str, table: sa.Table) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING the first key column, values bound at
    execution."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement: Any = pg_insert(table).on_conflict_do_nothing()
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(table).on_conflict_do_nothing()
    return statement.returning(next(iter(table.primary_key.columns)))


def _insert_ignore(conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; True when a row was inserted."""
    statement = _on_conflict_do_nothing(conn.dialect.name, table)
    return conn.execute(statement, values).first() is not None
