"""The bridge's state: site accounts and exported AE titles, in one SQL database.

SQLite (``DIR/bridge.db``) for one bridge process, PostgreSQL for several on one
database (issue 11: "stateless enough to run as several processes on one
PostgreSQL"): every request reads and writes here, nothing is cached in a process, and
the uniqueness rules are constraints of the database (a site name is the primary key
of `sites`, an AE title the primary key of `exports`), so two processes cannot both
win a race.  Engines come from `isthmus.archive.index.create_engine`, as the archive's.

A site is *added* by an administrator (`isthmus bridge add-site`: a one-time enrolment
secret, of which only the SHA-256 is kept), *enrolled* when it presents that secret
with its public keys (the secret is then spent), and may be *revoked* (for good: a
revoked site cannot enrol again, under that name, with any secret).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from isthmus.archive.index import create_engine, insert_ignore
from isthmus.config import ConfigError, check_aet
from isthmus.relay.crypto import EnvelopeError, SiteKeys
from isthmus.relay.directory import ANY_SITE, SERVICES, Export, SiteEntry
from isthmus.relay.names import BadName, check_site_name

metadata = sa.MetaData()
sites = sa.Table(
    "relay_sites",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("keys", sa.Text, nullable=True),  # SiteKeys.to_json(), once enrolled
    sa.Column("added", sa.DateTime(timezone=True), nullable=False),
    sa.Column("enrolled", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked", sa.DateTime(timezone=True), nullable=True),
)
exports = sa.Table(
    "relay_exports",
    metadata,
    sa.Column("aet", sa.String(16), primary_key=True),  # unique across the federation
    sa.Column("site", sa.String(64), sa.ForeignKey("relay_sites.name"), nullable=False),
    sa.Column("services", sa.Text, nullable=False),  # JSON list
    sa.Column("sites", sa.Text, nullable=False),  # JSON list of site names or "*"
)
bridge_keys = sa.Table(
    "relay_bridge_keys",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("private", sa.String(64), nullable=False),  # raw Ed25519, hex
)
_SCHEMA_LOCK = 0x15749  # PostgreSQL advisory lock: one process creates the tables


class Refused(Exception):
    """A request the bridge refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.detail = status, message, detail


@dataclass(frozen=True)
class SiteAccount:
    name: str
    keys: SiteKeys | None
    enrolled: bool
    revoked: bool


def hash_secret(secret: str) -> str:
    """SHA-256 of an enrolment secret (256 random bits: no slow hash needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class BridgeState:
    """The bridge's database: `add_site`, `enrol`, `revoke`, `set_exports`, `entries`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url)
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
            metadata.create_all(conn, checkfirst=True)

    def close(self) -> None:
        self.engine.dispose()

    def directory_key(self) -> Ed25519PrivateKey:
        """The key the bridge signs directory entries with: one for every process on
        this database, made on first use (it signs; it opens nothing)."""
        query = sa.select(bridge_keys.c.private).where(bridge_keys.c.name == "directory")
        with self.engine.begin() as conn:
            found = conn.execute(query).scalar()
            if found is None:
                fresh = Ed25519PrivateKey.generate().private_bytes_raw().hex()
                insert_ignore(conn, bridge_keys, {"name": "directory", "private": fresh})
                found = conn.execute(query).scalar()
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(str(found)))

    # ------------------------------------------------------------------ sites
    def add_site(self, name: str) -> str:
        """A new site account; returns its one-time enrolment secret (shown once)."""
        try:
            check_site_name(name)
        except BadName as exc:
            raise Refused(400, str(exc)) from None
        secret = secrets.token_urlsafe(32)
        row = {"name": name, "secret_hash": hash_secret(secret), "added": _now()}
        try:
            with self.engine.begin() as conn:
                conn.execute(sites.insert().values(**row))
        except IntegrityError:
            raise Refused(409, f"site {name!r} already exists (site names are unique)") from None
        return secret

    def discard(self, name: str) -> None:
        """Remove a site added but never enrolled (its enrolment file was not written)."""
        with self.engine.begin() as conn:
            conn.execute(sites.delete().where(sites.c.name == name, sites.c.enrolled.is_(None)))

    def enrol(self, name: str, secret: str, keys: SiteKeys) -> SiteAccount:
        """Register `keys` for `name` if `secret` is its unspent enrolment secret.

        Presenting the spent secret again with the same keys answers as the first time
        (a site whose reply was lost may retry); with other keys it is refused."""
        with self.engine.begin() as conn:
            row = conn.execute(sites.select().where(sites.c.name == name)).first()
            if row is None or not hmac.compare_digest(row.secret_hash, hash_secret(secret)):
                raise Refused(403, "unknown site or wrong enrolment secret")
            if row.revoked is not None:
                raise Refused(403, f"site {name!r} is revoked")
            if row.enrolled is not None:
                if row.keys and SiteKeys.from_json(json.loads(row.keys)) == keys:
                    return self._account(row)
                raise Refused(403, f"the enrolment secret of {name!r} was already used")
            done = conn.execute(
                sites.update()
                .where(sites.c.name == name, sites.c.enrolled.is_(None))
                .values(keys=json.dumps(keys.to_json()), enrolled=_now())
            )
        account = self.account(name)
        if done.rowcount != 1 and (account is None or account.keys != keys):
            raise Refused(403, f"the enrolment secret of {name!r} was already used")
        assert account is not None
        return account

    def revoke(self, name: str) -> bool:
        """Cut a site off; False if there is no such site.  Its AE titles stay taken."""
        with self.engine.begin() as conn:
            done = conn.execute(
                sites.update()
                .where(sites.c.name == name, sites.c.revoked.is_(None))
                .values(revoked=_now())
            )
            if done.rowcount:
                return True
            return conn.execute(sites.select().where(sites.c.name == name)).first() is not None

    def accounts(self) -> list[SiteAccount]:
        """Every site account, enrolled or not, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(sites.select().order_by(sites.c.name)).all()
        return [self._account(row) for row in rows]

    def account(self, name: str) -> SiteAccount | None:
        with self.engine.connect() as conn:
            row = conn.execute(sites.select().where(sites.c.name == name)).first()
        return None if row is None else self._account(row)

    @staticmethod
    def _account(row: Any) -> SiteAccount:
        keys = SiteKeys.from_json(json.loads(row.keys)) if row.keys else None
        return SiteAccount(row.name, keys, row.enrolled is not None, row.revoked is not None)

    # ---------------------------------------------------------------- exports
    def set_exports(self, site: str, docs: Any) -> list[Export]:
        """Replace the exports of `site` with `docs` (`Export.to_json` shapes), all or none.

        An AE title another site exports is refused (409, naming the owner): AE titles
        are unique across the federation, first come first served (docs/relay.md)."""
        wanted = parse_exports(site, docs)
        try:
            with self.engine.begin() as conn:
                self._check_owners(conn, site, wanted)
                conn.execute(exports.delete().where(exports.c.site == site))
                for export in wanted:
                    conn.execute(exports.insert().values(**_export_row(export)))
        except IntegrityError:  # another process took one of them in the meantime
            with self.engine.connect() as conn:
                self._check_owners(conn, site, wanted)
            raise Refused(409, "an AE title was taken by another site meanwhile") from None
        return wanted

    @staticmethod
    def _check_owners(conn: Connection, site: str, wanted: list[Export]) -> None:
        titles = [e.aet for e in wanted]
        if not titles:
            return
        query = sa.select(exports.c.aet, exports.c.site).where(
            exports.c.aet.in_(titles), exports.c.site != site
        )
        for aet, owner in conn.execute(query):
            raise Refused(409, f"AE title {aet!r} is exported by site {owner!r}", owner=owner)

    # -------------------------------------------------------------- directory
    def entries(self) -> dict[str, SiteEntry]:
        """Every enrolled site as the directory shows it (revoked ones marked so)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sites.select().where(sites.c["keys"].is_not(None))).all()
            export_rows = conn.execute(exports.select().order_by(exports.c.aet)).all()
        by_site: dict[str, list[Export]] = {}
        for row in export_rows:
            by_site.setdefault(row.site, []).append(
                Export(
                    aet=row.aet,
                    site=row.site,
                    services=frozenset(json.loads(row.services)),
                    sites=frozenset(json.loads(row.sites)),
                )
            )
        return {
            row.name: SiteEntry(
                name=row.name,
                keys=SiteKeys.from_json(json.loads(row.keys)),
                revoked=row.revoked is not None,
                exports=tuple(by_site.get(row.name, [])),
            )
            for row in rows
        }


def parse_exports(site: str, docs: Any) -> list[Export]:
    """Validated exports of `site` from JSON; Refused(400) says what is wrong."""
    if not isinstance(docs, list):
        raise Refused(400, "exports must be a list of {aet, services, sites}")
    out: list[Export] = []
    for doc in docs:
        out.append(_parse_export(site, doc))
    titles = [e.aet for e in out]
    if len(set(titles)) != len(titles):
        raise Refused(400, "an AE title appears twice in the exports")
    return out


def _parse_export(site: str, doc: Any) -> Export:
    if not isinstance(doc, dict) or not isinstance(doc.get("aet"), str):
        raise Refused(400, "an export is {aet, services, sites} with aet a string")
    try:
        aet = check_aet(doc["aet"])
    except ConfigError as exc:
        raise Refused(400, str(exc)) from None
    services = doc.get("services", list(SERVICES))
    if not isinstance(services, list) or not services or not set(services) <= set(SERVICES):
        raise Refused(400, f"services of {aet!r} must be a non-empty subset of {list(SERVICES)}")
    allowed = doc.get("sites", [ANY_SITE])
    if not isinstance(allowed, list) or not allowed:
        raise Refused(400, f"sites of {aet!r} must be a non-empty list of site names or '*'")
    for name in allowed:
        if name != ANY_SITE:
            try:
                check_site_name(name)
            except BadName as exc:
                raise Refused(400, f"export {aet!r}: {exc}") from None
    return Export(aet, site, frozenset(services), frozenset(allowed))


def parse_keys(doc: Any) -> SiteKeys:
    try:
        return SiteKeys.from_json(doc if isinstance(doc, dict) else {})
    except EnvelopeError as exc:
        raise Refused(400, str(exc)) from None


def _export_row(export: Export) -> dict[str, Any]:
    return {
        "aet": export.aet,
        "site": export.site,
        "services": json.dumps(sorted(export.services)),
        "sites": json.dumps(sorted(export.sites)),
    }


def _now() -> datetime:
    return datetime.now(UTC)
