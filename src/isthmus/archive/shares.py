"""Share links of peer-to-peer study sharing (docs/p2p.md), in the index.

A share names one study, carries a random secret (from `secrets`, 256 bits), expires
(default 7 days) and can be revoked.  The secret never leaves this node except in the
link it prints (in the URL fragment); signalling proves knowledge of it with an HMAC, so
the index keeps it as is.  `Shares.check` is what signalling asks before it answers.
"""

from __future__ import annotations

import builtins
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from isthmus.archive.index import share

DEFAULT_LIFETIME = timedelta(days=7)


class ShareRefused(Exception):
    """A share that cannot be used: unknown, expired or revoked (`status` is the HTTP one)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Share:
    link_id: str
    study_instance_uid: str
    secret: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    federation: bool = False  # published to the federation's peers (docs/p2p.md)

    def state(self, now: datetime | None = None) -> str:
        """ "active", "expired" or "revoked"."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if (now or datetime.now(UTC)) >= self.expires_at else "active"


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were written in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class Shares:
    """Create, list, revoke and check share links."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self, study_uid: str, lifetime: timedelta = DEFAULT_LIFETIME, federation: bool = False
    ) -> Share:
        if lifetime <= timedelta(0):
            raise ValueError("a share's lifetime must be positive")
        now = datetime.now(UTC)
        row = Share(
            secrets.token_urlsafe(12),
            study_uid,
            secrets.token_urlsafe(32),
            now,
            now + lifetime,
            None,
            federation,
        )
        with self.engine.begin() as conn:
            conn.execute(
                share.insert().values(
                    link_id=row.link_id,
                    study_instance_uid=row.study_instance_uid,
                    secret=row.secret,
                    created_at=row.created_at,
                    expires_at=row.expires_at,
                    federation=row.federation,
                )
            )
        return row

    def get(self, link_id: str) -> Share | None:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(share).where(share.c.link_id == link_id)).first()
        return self._row(found) if found is not None else None

    def list(self, study_uid: str | None = None) -> list[Share]:
        query = sa.select(share).order_by(share.c.created_at)
        if study_uid:
            query = query.where(share.c.study_instance_uid == study_uid)
        with self.engine.connect() as conn:
            return [self._row(r) for r in conn.execute(query)]

    def federated(self) -> builtins.list[Share]:
        """The shares published to the federation, whatever their state (the publisher
        withdraws the listings of those no longer active)."""
        query = sa.select(share).where(share.c.federation.is_(True)).order_by(share.c.created_at)
        with self.engine.connect() as conn:
            return [self._row(r) for r in conn.execute(query)]

    def revoke(self, link_id: str) -> bool:
        """Revoke a share; False if there is none by that id.  Revoking twice is fine."""
        with self.engine.begin() as conn:
            done = conn.execute(
                share.update()
                .where(share.c.link_id == link_id, share.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        return done.rowcount > 0 or self.get(link_id) is not None

    def check(self, link_id: str) -> Share:
        """The share if it may be used now; else `ShareRefused` saying why."""
        found = self.get(link_id)
        if found is None:
            raise ShareRefused(404, f"no share link {link_id} on this node")
        state = found.state()
        if state == "revoked":
            raise ShareRefused(410, f"share link {link_id} was revoked")
        if state == "expired":
            raise ShareRefused(
                410, f"share link {link_id} expired at {found.expires_at:%Y-%m-%d %H:%M} UTC"
            )
        return found

    @staticmethod
    def _row(r: sa.Row) -> Share:  # type: ignore[type-arg]
        return Share(
            r.link_id,
            r.study_instance_uid,
            r.secret,
            _aware(r.created_at) or datetime.now(UTC),
            _aware(r.expires_at) or datetime.now(UTC),
            _aware(r.revoked_at),
            bool(r.federation),
        )
