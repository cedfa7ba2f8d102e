"""`isthmus bridge serve | add-site | revoke-site` (docs/relay.md, "Running a federation").

`serve` records, in ``DIR/bridge.json`` (mode 0600), the URLs sites must be told (the
bridge's public URL, the NATS URL for sites), its own NATS URL and the database URL, so
that `add-site` can write enrolment files and `revoke-site` can publish a revocation
without repeating them.  Every option given on the command line wins over the file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from isthmus.config import ConfigError, is_loopback

if TYPE_CHECKING:
    from isthmus.relay.bridge_state import BridgeState

CONFIG = "bridge.json"
DEFAULT_PORT = 8450


def add_bridge_parser(sub: Any) -> None:
    """The `bridge` command and its three subcommands, on the CLI's subparsers."""
    bridge = sub.add_parser("bridge", help="the relay bridge (docs/relay.md)")
    actions = bridge.add_subparsers(required=True, metavar="ACTION")

    def action(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        p.add_argument("--data", required=True, help="the bridge's folder (bridge.db, bridge.json)")
        p.add_argument("--index-url", help="postgresql://… (default sqlite:///DATA/bridge.db)")
        p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
        return p

    p = action("serve", serve, "serve the bridge's HTTP API and publish the directory")
    p.add_argument("--http-port", type=int, default=DEFAULT_PORT, help="default 8450")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--nats", required=True, metavar="URL", help="NATS server for the directory")
    p.add_argument("--blob-url", required=True, metavar="s3://bucket/prefix")
    p.add_argument("--public-url", help="the bridge URL sites use (default http://HOST:PORT)")
    p.add_argument("--public-nats", metavar="URL", help="the NATS URL sites use (default --nats)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate chain")
    p.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")

    p = action("add-site", add_site, "add a site; write its enrolment file (one-time secret)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--out", required=True, metavar="FILE", help="the enrolment file to write")
    p.add_argument("--bridge-url", help="default: the public URL `serve` recorded")
    p.add_argument("--nats", metavar="URL", help="default: the NATS URL `serve` recorded")

    p = action("sites", list_sites, "list the sites: state, fingerprint, exported AE titles")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = action("revoke-site", revoke_site, "cut a site off at once (for good)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--nats", metavar="URL", help="default: the NATS URL `serve` recorded")


def serve(args: argparse.Namespace) -> int:
    from isthmus.relay.bridge import BridgeServer, BridgeSettings, check_transport

    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    if not args.public_url and not is_loopback(args.host):
        raise ConfigError(f"--public-url is needed on {args.host}: the URL sites reach it at")
    scheme = "https" if args.tls_cert else "http"
    public = args.public_url or f"{scheme}://{args.host}:{args.http_port}"
    settings = BridgeSettings(
        index_url=_index_url(args),
        nats_url=args.nats,
        blob_url=args.blob_url,
        public_nats=args.public_nats or args.nats,
        host=args.host,
        http_port=args.http_port,
        public_url=public,
        tls_cert=args.tls_cert or "",
        tls_key=args.tls_key or "",
    )
    check_transport(settings)  # before anything is written
    record = {
        "bridge_url": public,
        "nats_url": settings.public_nats,
        "bridge_nats": args.nats,
        "index_url": settings.index_url,
    }
    write_private(data / CONFIG, json.dumps(record, indent=1) + "\n", replace=True)
    try:
        asyncio.run(reachable(args.nats))
    except Exception as exc:
        print(
            f"isthmus: NATS at {args.nats} not reached: {exc or type(exc).__name__}",
            file=sys.stderr,
        )
        return 1
    print(f"isthmus bridge: {public} (NATS {args.nats}, objects {args.blob_url})", flush=True)
    return 0 if BridgeServer(settings).run() else 1


async def reachable(url: str, timeout: float = 5.0) -> None:
    """Connect to NATS once (the bridge would otherwise fail inside uvicorn's start)."""
    import nats

    nc = await asyncio.wait_for(
        nats.connect(url, connect_timeout=timeout, max_reconnect_attempts=0, allow_reconnect=False),
        timeout + 1,
    )
    await nc.close()


def add_site(args: argparse.Namespace) -> int:
    saved = recorded(Path(args.data))
    bridge_url = args.bridge_url or saved.get("bridge_url")
    nats_url = args.nats or saved.get("nats_url")
    if not bridge_url or not nats_url:
        raise ConfigError(
            "no bridge or NATS URL: run `isthmus bridge serve` once, or give "
            "--bridge-url and --nats"
        )
    out = Path(args.out)
    if out.exists():
        raise ConfigError(f"{out} exists; not overwriting an enrolment file")
    from isthmus.relay.bridge_state import Refused
    from isthmus.relay.signing import public_bytes

    state = _state(args, create=True)
    try:
        secret = state.add_site(args.name)
        doc = {"bridge": bridge_url, "nats": nats_url, "site": args.name, "secret": secret}
        doc["bridge_key"] = public_bytes(state.directory_key()).hex()
        try:
            write_private(out, json.dumps(doc, indent=1) + "\n")
        except OSError:
            state.discard(args.name)  # nobody holds its secret: as if never added
            raise
    except Refused as exc:
        print(f"isthmus: {exc.message}", file=sys.stderr)
        return 1
    finally:
        state.close()
    print(
        f"site {args.name} added; its enrolment file is {out} (a one-time secret: "
        "hand it over on a safe channel)"
    )
    return 0


def revoke_site(args: argparse.Namespace) -> int:
    """Mark the site revoked in the database (the truth: signed requests of the site are
    refused from now on), then publish its entry to NATS at once.  If NATS cannot be
    reached from here, the running bridge publishes it within a second (its poll)."""
    state = _state(args)
    try:
        if not state.revoke(args.name):
            print(f"isthmus: no site {args.name!r}", file=sys.stderr)
            return 1
        entry = state.entries().get(args.name)
        key = state.directory_key()
    finally:
        state.close()
    print(f"site {args.name} revoked")
    nats_url = args.nats or recorded(Path(args.data)).get("bridge_nats")
    if entry is None or not nats_url:
        return 0
    from isthmus.relay.bridge_publish import publish_once

    try:
        asyncio.run(publish_once(nats_url, entry, key))
    except Exception as exc:
        print(
            f"isthmus: NATS not reached ({exc or type(exc).__name__}); the running bridge "
            "publishes the revocation within a second",
            file=sys.stderr,
        )
    return 0


def list_sites(args: argparse.Namespace) -> int:
    state = _state(args)
    try:
        accounts, entries = state.accounts(), state.entries()
    finally:
        state.close()
    for account in accounts:
        entry = entries.get(account.name)
        doc = {
            "site": account.name,
            "state": "revoked" if account.revoked else "enrolled" if account.enrolled else "added",
            "fingerprint": account.keys.fingerprint if account.keys else "",
            "exports": [e.aet for e in entry.exports] if entry else [],
        }
        if args.json:
            print(json.dumps(doc))
        else:
            exported = " ".join(doc["exports"]) or "-"
            print(f"{doc['site']:<16} {doc['state']:<8} {doc['fingerprint'] or '-'}  {exported}")
    return 0


def recorded(data: Path) -> dict[str, str]:
    """What `serve` recorded in DATA/bridge.json ({} if it never ran there)."""
    try:
        doc = json.loads((data / CONFIG).read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ConfigError(f"{data / CONFIG}: {exc}") from None
    return {k: v for k, v in doc.items() if isinstance(v, str)} if isinstance(doc, dict) else {}


def _state(args: argparse.Namespace, create: bool = False) -> BridgeState:
    """The bridge's database (imported here: `isthmus --help` need not load SQLAlchemy);
    only `add-site` (and `serve`) may create it."""
    from sqlalchemy.exc import SQLAlchemyError

    from isthmus.relay.bridge_state import BridgeState

    url = _index_url(args)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not create and not path.exists():
            raise ConfigError(f"no bridge database in {args.data} (no site was ever added)")
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return BridgeState(url)
    except SQLAlchemyError as exc:
        raise ConfigError(
            f"bridge database {url.split('@')[-1]}: {getattr(exc, 'orig', None) or exc}"
        ) from None


def _index_url(args: argparse.Namespace) -> str:
    data = Path(args.data)
    if args.index_url:
        return str(args.index_url)
    saved = recorded(data).get("index_url")
    return saved or f"sqlite:///{data.resolve() / 'bridge.db'}"


def write_private(path: Path, text: str, replace: bool = False) -> None:
    """Write a file only its owner can read (it holds a secret or a database URL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_suffix(path.suffix + ".tmp") if replace else path
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    if replace:
        os.replace(target, path)
