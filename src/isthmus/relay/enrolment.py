"""A site's side of enrolment: the enrolment file, its keys, its first contact.

`isthmus bridge add-site NAME` writes an enrolment file (JSON: `bridge`, `nats`, `site`,
`secret`, a one-time secret).  `enrol_site(data_dir, file)` is what a site's
`isthmus serve --relay FILE` does at start:

1. On the first start it generates the site's keys (`SiteIdentity.create`; the private
   keys never leave ``DATA/relay/site.json``, mode 0600), saves them, *then* enrols
   (POST /api/relay/enrol, signed with the new key), and records the enrolment in
   ``DATA/relay/enrolled.json`` (bridge URL, NATS URL, fingerprint, and the bridge's
   directory key from the enrolment file, with which the directory is checked).
2. Later starts load the keys and the record and do not contact the bridge for it; the
   enrolment file may be deleted once it is spent.  A start interrupted between 1's
   save and record enrols again with the same keys, which the bridge accepts.

The site-side classes live in small modules of their own and are importable from here:
`BridgeClient` (relay/bridge_client.py), `PresignedObjects` (relay/presigned.py),
`DirectoryWatcher` (relay/directory_watch.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from isthmus.config import ConfigError
from isthmus.relay.bridge_client import (
    BridgeClient,
    BridgeError,
    BridgeRefused,
    BridgeUnavailable,
)
from isthmus.relay.crypto import SiteIdentity
from isthmus.relay.directory_watch import DirectoryWatcher
from isthmus.relay.names import BadName, check_site_name
from isthmus.relay.presigned import PresignedObjects

__all__ = [
    "BridgeClient",
    "BridgeError",
    "BridgeRefused",
    "BridgeUnavailable",
    "DirectoryWatcher",
    "EnrolmentFile",
    "PresignedObjects",
    "enrol_site",
    "enrolled",
    "identity_path",
]


@dataclass(frozen=True)
class EnrolmentFile:
    """What `isthmus bridge add-site` hands a site: where to go, who it is, its secret."""

    bridge: str
    nats: str
    site: str
    secret: str
    bridge_key: str = ""  # hex Ed25519 public key that signs the directory's entries

    @classmethod
    def load(cls, path: Path | str) -> EnrolmentFile:
        """Read and check one; ConfigError says what is wrong with it."""
        try:
            doc = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"enrolment file {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ConfigError(f"enrolment file {path} is not JSON: {exc}") from None
        fields = ("bridge", "nats", "site", "secret")
        if not isinstance(doc, dict) or not all(isinstance(doc.get(f), str) for f in fields):
            raise ConfigError(f"enrolment file {path} needs the strings {', '.join(fields)}")
        try:
            check_site_name(doc["site"])
        except BadName as exc:
            raise ConfigError(f"enrolment file {path}: {exc}") from None
        key = doc.get("bridge_key", "")
        if not isinstance(key, str) or (key and len(_hex(key)) != 32):
            raise ConfigError(f"enrolment file {path}: bridge_key is not a hex Ed25519 key")
        bridge, nats, site, secret = (str(doc[f]) for f in fields)
        return cls(bridge, nats, site, secret, bridge_key=key)


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def identity_path(data_dir: Path) -> Path:
    return Path(data_dir) / "relay" / "site.json"


def record_path(data_dir: Path) -> Path:
    return Path(data_dir) / "relay" / "enrolled.json"


def enrol_site(data_dir: Path, enrolment_file: Path | str) -> tuple[SiteIdentity, BridgeClient]:
    """This site's identity and a client of its bridge; enrols on the first start only."""
    record = _record(data_dir)
    keys_file = identity_path(data_dir)
    if record is not None and keys_file.exists():
        identity = SiteIdentity.load(keys_file)
        return identity, BridgeClient(record["bridge"], identity)
    enrolment = EnrolmentFile.load(enrolment_file)
    if keys_file.exists():
        identity = SiteIdentity.load(keys_file)
        if identity.name != enrolment.site:
            raise ConfigError(
                f"{keys_file} holds the keys of site {identity.name!r}, "
                f"the enrolment file is for {enrolment.site!r}"
            )
    else:
        identity = SiteIdentity.create(enrolment.site)
        identity.save(keys_file)  # before enrolling: a retry must present the same keys
    client = BridgeClient(enrolment.bridge, identity)
    reply = client.enrol(enrolment.secret)
    bridge_key = str(reply.get("bridge_key", ""))
    if enrolment.bridge_key and bridge_key != enrolment.bridge_key:
        raise BridgeError("the bridge's directory key is not the one in the enrolment file")
    _save_record(
        data_dir,
        {
            "bridge": enrolment.bridge,
            "nats": str(reply.get("nats") or enrolment.nats),
            "site": identity.name,
            "fingerprint": identity.keys.fingerprint,
            "bridge_key": enrolment.bridge_key or bridge_key,
        },
    )
    return identity, client


def enrolled(data_dir: Path) -> dict[str, str] | None:
    """The record of this site's enrolment (bridge, nats, site, fingerprint, bridge_key:
    give `bytes.fromhex` of it to `DirectoryWatcher`), or None."""
    return _record(data_dir)


def _record(data_dir: Path) -> dict[str, str] | None:
    try:
        doc = json.loads(record_path(data_dir).read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ConfigError(f"{record_path(data_dir)}: {exc}") from None
    return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else None


def _save_record(data_dir: Path, doc: dict[str, str]) -> None:
    path = record_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as out:
        json.dump(doc, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
