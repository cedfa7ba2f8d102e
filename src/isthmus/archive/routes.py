"""AE titles registered at run time, shared by the processes of one archive.

A browser registers an AE title through the WebSocket gateway of one process; its
associations arrive at that process's DICOM port, whose router hands them to the
browser.  The index records which DICOM port (host:port) holds each title, so that a
C-MOVE arriving at any process sends its C-STORE sub-operations to that port, and
an association called that title arriving at another process is passed on to it
(node/remote.py, docs/scaling.md).  Each change is also an event (``route.browser``) for the doors.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from isthmus.archive import index as idx
from isthmus.archive.events import EventBus
from isthmus.archive.writer import GroupCommitWriter


class ArchiveParts(Protocol):
    """What of the archive (archive.py) the routes use."""

    engine: Engine
    writer: GroupCommitWriter
    events: EventBus
    process: str


TOPIC = "route.browser"


def process_name() -> str:
    """This process among the others: host, process id and a random part (process ids
    repeat across machines and restarts)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


def register(archive: ArchiveParts, aet: str, host: str, port: int) -> None:
    """Record `aet` at host:port for this process; the latest registration wins."""
    r = idx.route.c

    def job(conn: Connection) -> None:
        conn.execute(idx.route.delete().where(r.aet == aet))
        conn.execute(
            idx.route.insert().values(
                aet=aet,
                host=host,
                port=port,
                process=archive.process,
                registered_at=datetime.now(UTC),
            )
        )

    archive.writer.run(job)
    archive.events.publish(TOPIC, {"aet": aet, "host": host, "port": port, "registered": True})


def unregister(archive: ArchiveParts, aet: str) -> None:
    r = idx.route.c

    def job(conn: Connection) -> int:
        deleted = conn.execute(idx.route.delete().where(r.aet == aet, r.process == archive.process))
        return int(deleted.rowcount)

    if archive.writer.run(job):
        archive.events.publish(TOPIC, {"aet": aet, "registered": False})


def lookup(archive: ArchiveParts, aet: str) -> tuple[str, int, bool] | None:
    """(host, port, registered by this process?) of the DICOM port holding `aet`, or
    None.  Asked for C-MOVE destinations and by the router for associations called a
    title another process holds (node/remote.py): one primary-key read."""
    r = idx.route.c
    with archive.engine.connect() as conn:
        row = conn.execute(sa.select(r.host, r.port, r.process).where(r.aet == aet)).first()
    if row is None:
        return None
    return str(row.host), int(row.port), row.process == archive.process


def forget_process(archive: ArchiveParts) -> None:
    """At close: this process's registrations end with it."""
    archive.writer.run(
        lambda conn: conn.execute(idx.route.delete().where(idx.route.c.process == archive.process))
    )


def forget_address(archive: ArchiveParts, host: str, port: int) -> None:
    """At start: registrations a killed process listening at host:port left behind."""
    r = idx.route.c
    archive.writer.run(
        lambda conn: conn.execute(
            idx.route.delete().where(r.host == host, r.port == port, r.process != archive.process)
        )
    )
