"""The `isthmus` command: serve, import, deidentify, echo, send, query, retrieve, worklist,
bridge."""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from tqdm import tqdm

from isthmus import __version__
from isthmus.config import ConfigError, Peer, Settings, load
from isthmus.dicom.status import SUCCESS

if TYPE_CHECKING:
    from isthmus.archive import StoreResult

log = logging.getLogger("isthmus")

LEVELS = {
    "patient": "PATIENT",
    "study": "STUDY",
    "series": "SERIES",
    "image": "IMAGE",
    "instance": "IMAGE",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if (
        extra
        and getattr(args, "func", None) is _query
        and not any(e.startswith("-") for e in extra)
    ):
        args.keys = list(args.keys) + extra  # KEY=VALUE after options
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=getattr(logging, (args.log_level or "info").upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.log_level != "debug":  # our own messages say what failed; pynetdicom's repeat it
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    try:
        status: int = args.func(args)  # argparse's Namespace is untyped
        return status
    except ConfigError as exc:
        print(f"isthmus: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI reports, it does not dump stacks at users
        from isthmus.dimse.scu import SCUError

        if isinstance(exc, (SCUError, OSError)):
            print(f"isthmus: {exc}", file=sys.stderr)
            return 1
        raise


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="isthmus", description="A web-native PACS and DICOM gateway."
    )
    parser.add_argument("--version", action="version", version=f"isthmus {__version__}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(
        name: str, func: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        p.add_argument("--config", help="TOML configuration file")
        p.add_argument("--data", help="archive folder (default ./isthmus-data)")
        p.add_argument("--aet", help="our AE title (default ISTHMUS)")
        p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
        return p

    p = command("serve", _serve, "serve the archive over DIMSE and HTTP")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--dicom-port", type=int, help="DIMSE port (default 11112)")
    p.add_argument("--http-port", type=int, help="HTTP port (default 8042)")
    p.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="AET@HOST:PORT",
        help="a known peer (repeatable)",
    )
    p.add_argument("--index-url", help="sqlite:///path or postgresql://user@host/db")
    _tls_arguments(p)
    p.add_argument("--blob-url", help="file:///path (default: DATA/blobs) or s3://bucket/prefix")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes serving the ports (default 1; 0: one per core)",
    )
    p.add_argument("--relay", metavar="FILE", help="join a federation: the bridge's enrolment file")
    p.add_argument(
        "--export",
        action="append",
        default=[],
        metavar="AET[@HOST:PORT]",
        help="offer a device of this site (or, AET alone, this archive) to the federation",
    )
    p.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="p2p: a STUN/TURN server, stun:HOST:PORT or turn:HOST:PORT (repeatable)",
    )
    p.add_argument(
        "--relay-only",
        action="store_true",
        default=None,
        help="p2p: connect through TURN only (iceTransportPolicy relay)",
    )

    p = command("import", _import, "import DICOM files or folders (recursive) into the archive")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--index-url", help="sqlite:///path or postgresql://user@host/db")
    p.add_argument("--blob-url", help="file:///path (default: DATA/blobs) or s3://bucket/prefix")

    p = command(
        "deidentify",
        _deidentify,
        "de-identify files (into a folder) or stored studies (into new studies), PS3.15 Annex E",
    )
    from isthmus.deidentify import add_arguments

    add_arguments(p)
    p.add_argument("--blob-url", help="file:///path (default: DATA/blobs) or s3://bucket/prefix")

    p = command("echo", _echo, "C-ECHO a peer")
    p.add_argument("peer", metavar="AET@HOST:PORT")
    _tls_arguments(p, client=True)

    p = command("send", _send, "C-STORE files or folders to a peer")
    p.add_argument("peer", metavar="AET@HOST:PORT")
    _tls_arguments(p, client=True)
    p.add_argument("paths", nargs="+", metavar="PATH")

    p = command("query", _query, "C-FIND a peer and print the matches")
    p.add_argument("peer", metavar="AET@HOST:PORT")
    p.add_argument("--level", required=True, choices=sorted(LEVELS))
    p.add_argument(
        "--model",
        choices=["study", "patient"],
        default="study",
        help="query/retrieve information model (default study root)",
    )
    p.add_argument("--json", action="store_true", help="print DICOM JSON")
    _tls_arguments(p, client=True)
    p.add_argument(
        "keys",
        nargs="*",
        metavar="KEY=VALUE",
        help="match keys by keyword or tag (e.g. PatientName=SMITH*); KEY alone returns it",
    )

    p = command("audit", _audit, "search the audit trail (newest first; it names patients)")
    p.add_argument("--from", dest="start", metavar="WHEN", help="ISO 8601 date or date-time")
    p.add_argument("--to", dest="end", metavar="WHEN", help="ISO 8601 date or date-time")
    p.add_argument("--user", help="who asked: AE title or HTTP user")
    p.add_argument("--patient", help="Patient ID, or part of the Patient's Name")
    p.add_argument("--study", help="Study Instance UID")
    p.add_argument("--event", help="stored, transferred, query, deleted, association, …")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.add_argument("--json", action="store_true", help="JSON lines, as GET /api/audit")
    p.add_argument("--xml", action="store_true", help="the DICOM audit messages (PS3.15 A.5)")

    p = sub.add_parser(
        "token",
        help="make an API token and the hash to put in the config",
        description="make an API token (printed once) and its SHA-256 hash for the "
        "config file; `token hash TOKEN` hashes an existing one",
    )
    p.set_defaults(func=_token, log_level="warning")
    p.add_argument("action", nargs="?", choices=["new", "hash"], default="new")
    p.add_argument("value", nargs="?", help="the token to hash")

    p = command("retrieve", _retrieve, "C-MOVE or C-GET a study/series into the local archive")
    p.add_argument("peer", metavar="AET@HOST:PORT")
    p.add_argument("--study", required=True, help="Study Instance UID")
    p.add_argument("--series", help="Series Instance UID")
    p.add_argument("--via", choices=["move", "get"], default="move")
    p.add_argument("--port", type=int, help="port to receive C-MOVE sub-operations on")
    p.add_argument("--index-url", help="sqlite:///path or postgresql://user@host/db")
    _tls_arguments(p, client=True)
    p.add_argument("--blob-url", help="file:///path (default: DATA/blobs) or s3://bucket/prefix")

    p = command("relay", _relay, "the federation as a running node sees it; accept new keys")
    p.add_argument("action", choices=["status", "accept"])
    p.add_argument("site", nargs="?", help="accept: the site whose new keys you compared")
    p.add_argument("fingerprint", nargs="?", help="accept: the new fingerprint, as compared")
    _node_arguments(p, "the running node")
    p.add_argument("--json", action="store_true", help="status: print JSON")

    p = command("share", _share, "make a share link for a study (or revoke one) on a running node")
    p.add_argument("study", nargs="?", help="the Study Instance UID to share")
    p.add_argument("--revoke", metavar="LINK", help="revoke this share link (or its id)")
    p.add_argument("--expires", default="7d", help="lifetime: 7d (default), 12h, 30m, 2w")
    p.add_argument(
        "--federation", action="store_true", help="publish the share to the federation's sites"
    )
    p.add_argument(
        "--list-federation",
        action="store_true",
        help="list the sites online and the studies they shared to this site",
    )
    p.add_argument("--json", action="store_true", help="--list-federation: print JSON")
    _node_arguments(p, "the running node")

    p = command("fetch", _fetch, "make a running node pull a shared study over WebRTC")
    p.add_argument("link", help="the share link, http://HOST:PORT/share/ID#SECRET")
    _node_arguments(p, "the node that fetches")

    from isthmus.relay.bridge_cli import add_bridge_parser

    add_bridge_parser(sub)

    p = command("worklist", _worklist, "add scheduled procedures from a file, or list them")
    p.add_argument("action", choices=["add", "list"])
    p.add_argument("file", nargs="?", help="CSV, JSON or TOML of entries (add)")
    p.add_argument("--url", help="a running Isthmus's DICOMweb root, to add over UPS-RS")
    p.add_argument("--date", help="list: scheduled on this date or range (YYYYMMDD[-YYYYMMDD])")
    p.add_argument("--modality", help="list: only this modality")
    p.add_argument("--json", action="store_true", help="list: print DICOM JSON")
    p.add_argument("--index-url", help="sqlite:///path or postgresql://user@host/db")
    p.add_argument("--blob-url", help="file:///path (default: DATA/blobs) or s3://bucket/prefix")
    return parser


def _node_arguments(p: argparse.ArgumentParser, what: str) -> None:
    """--server and --token of the commands that act on a running node (node_api.py)."""
    from isthmus.node_api import DEFAULT_SERVER

    p.add_argument("--server", default=DEFAULT_SERVER, help=what)
    p.add_argument("--token", help="an API token with the admin permission")


def _tls_arguments(p: argparse.ArgumentParser, client: bool = False) -> None:
    """DICOM TLS flags (docs/security.md, "DICOM TLS"): the settings, and --tls for a peer."""
    if client:
        p.add_argument("--tls", action="store_true", help="call the peer over TLS")
    else:
        p.add_argument("--dicom-tls-port", type=int, help="TLS DIMSE port (default 2762)")
        p.add_argument(
            "--dicom-tls-only", action="store_true", default=None, help="no plain DIMSE port"
        )
        p.add_argument(
            "--dicom-tls-client-certs",
            choices=["none", "optional", "required"],
            help="client certificates on the TLS port (default optional)",
        )
    p.add_argument("--dicom-tls-cert", help="our certificate chain (PEM)")
    p.add_argument("--dicom-tls-key", help="our private key (PEM)")
    p.add_argument("--dicom-tls-ca", help="CA bundle (PEM) to verify peers' certificates")


def _peer(args: argparse.Namespace, settings: Settings) -> Peer:
    """The peer named on the command line; TLS with --tls or when the configured peer of
    that AE title at that address has `tls`."""
    peer = Peer.parse(args.peer)
    known = settings.peer(peer.aet)
    if known is not None and (known.host, known.port) == (peer.host, peer.port):
        peer = known
    return replace(peer, tls=True) if getattr(args, "tls", False) else peer


def _client_tls(settings: Settings, peer: Peer) -> ssl.SSLContext | None:
    from isthmus.node.tls import peer_context

    return peer_context(settings, peer)


def _settings(args: argparse.Namespace) -> Settings:
    peers = (
        [Peer.parse(p) for p in getattr(args, "peer", [])]
        if isinstance(getattr(args, "peer", None), list)
        else None
    )
    overrides: dict[str, Any] = dict(
        data=args.data,
        aet=args.aet,
        host=getattr(args, "host", None),
        dicom_port=getattr(args, "dicom_port", None),
        http_port=getattr(args, "http_port", None),
        index_url=getattr(args, "index_url", None),
        blob_url=getattr(args, "blob_url", None),
        log_level=args.log_level,
        dicom_tls_port=getattr(args, "dicom_tls_port", None),
        dicom_tls_cert=getattr(args, "dicom_tls_cert", None),
        dicom_tls_key=getattr(args, "dicom_tls_key", None),
        dicom_tls_ca=getattr(args, "dicom_tls_ca", None),
        dicom_tls_only=getattr(args, "dicom_tls_only", None),
        dicom_tls_client_certs=getattr(args, "dicom_tls_client_certs", None),
        relay=getattr(args, "relay", None),
        workers=getattr(args, "workers", None),
        relay_exports=getattr(args, "export", None) or None,
        p2p_ice_servers=getattr(args, "ice_server", None) or None,
        p2p_relay_only=getattr(args, "relay_only", None),
    )
    settings = load(args.config, **overrides)
    if peers:
        known = {p.aet: p for p in settings.peers}
        known.update({p.aet: p for p in peers})
        settings = replace(settings, peers=tuple(known.values()))
    return settings


def _serve(args: argparse.Namespace) -> int:
    from isthmus.server import run_forever
    from isthmus.workers import serve_workers, worker_count

    settings = _settings(args)
    if worker_count(settings) > 1:
        return serve_workers(settings)
    run_forever(settings)
    return 0


def iter_files(paths: Sequence[str]) -> Iterator[Path]:
    """Every file under the given files and folders, recursively, in a stable order."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for dirpath, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    yield Path(dirpath, name)
        elif path.exists():
            yield path
        else:
            print(f"isthmus: {raw}: no such file or folder", file=sys.stderr)


def _audit(args: argparse.Namespace) -> int:
    from isthmus.audit import search
    from isthmus.audit.report import make_filter, write

    settings = _settings(args)
    try:
        where = make_filter(
            args.start, args.end, args.user, args.patient, args.study, args.event, args.limit
        )
    except ValueError as exc:
        print(f"isthmus audit: {exc}", file=sys.stderr)
        return 2
    path = Path(settings.audit_log) if settings.audit_log else settings.data / "audit.log"
    write(search(path, where), sys.stdout, args.json, args.xml)
    return 0


def _import(args: argparse.Namespace) -> int:
    from collections import Counter

    from isthmus.archive import Archive, StoreOutcome
    from isthmus.archive.activity import os_user
    from isthmus.audit import AuditTrail

    settings = _settings(args)
    archive = Archive.from_settings(settings)
    trail = AuditTrail.from_settings(archive, settings)  # the import is audited too
    tally = archive.activity.transfer("stored", "import", user=os_user(), local=settings.aet)
    files = list(iter_files(args.paths))
    counts: Counter[StoreOutcome] = Counter()
    failed = 0

    def one(path: Path) -> tuple[Path, StoreResult | OSError]:
        try:
            data = path.read_bytes()
            result = archive.store(data, source_aet=None)
        except OSError as exc:
            return path, exc
        tally.add(result.study_instance_uid, result.sop_class_uid, len(data), result.ok)
        return path, result

    try:
        with (
            ThreadPoolExecutor(max_workers=4) as pool,
            tqdm(total=len(files), unit="file", desc="import", file=sys.stderr) as bar,
        ):
            for path, result in pool.map(one, files):
                bar.update(1)
                if isinstance(result, OSError):
                    failed += 1
                    tqdm.write(f"skipped {path}: {result}", file=sys.stderr)
                elif not result.ok:
                    failed += 1
                    tqdm.write(
                        f"skipped {path}: {result.reason} ({result.outcome})", file=sys.stderr
                    )
                else:
                    counts[result.outcome] += 1
    finally:
        tally.close()
        trail.close()
        archive.close()
    stored = counts[StoreOutcome.STORED] + counts[StoreOutcome.OVERWRITTEN]
    print(
        f"imported {stored} instance(s), {counts[StoreOutcome.DUPLICATE]} already stored, "
        f"{failed} unreadable"
    )
    return 0 if not failed else 1


def _deidentify(args: argparse.Namespace) -> int:
    from isthmus.deidentify import run

    return run(args, _settings(args), iter_files(args.paths))


def _relay(args: argparse.Namespace) -> int:
    """`isthmus relay status` / `isthmus relay accept SITE FINGERPRINT` (relay/console.py)."""
    from isthmus.relay import console

    if args.action == "status":
        return console.status(args.server, args.token, args.json)
    if not (args.site and args.fingerprint):
        print("isthmus: relay accept needs SITE and FINGERPRINT", file=sys.stderr)
        return 2
    return console.accept(args.server, args.token, args.site, args.fingerprint)


def _share(args: argparse.Namespace) -> int:
    """`isthmus share STUDY_UID` / `isthmus share --revoke LINK` (p2p/console.py)."""
    from isthmus.p2p import console

    if args.revoke:
        return console.revoke(args.server, args.token, args.revoke)
    if args.list_federation:
        return console.list_federation(args.server, args.token, args.json)
    if not args.study:
        print("isthmus: share needs STUDY_UID (or --revoke LINK)", file=sys.stderr)
        return 2
    return console.share(args.server, args.token, args.study, args.expires, args.federation)


def _fetch(args: argparse.Namespace) -> int:
    """`isthmus fetch LINK`: the node at --server pulls the study (p2p/console.py)."""
    from isthmus.p2p import console

    return console.fetch(args.server, args.token, args.link)


def _worklist(args: argparse.Namespace) -> int:
    """`isthmus worklist add FILE` / `isthmus worklist list` (isthmus/worklist.py)."""
    from isthmus import worklist

    settings = _settings(args)
    try:
        if args.action == "add":
            if not args.file:
                print("isthmus: worklist add needs a FILE", file=sys.stderr)
                return 2
            return worklist.add(Path(args.file), settings, args.url)
        return worklist.list_items(settings, args.date, args.modality, args.json)
    except (worklist.WorklistFileError, ValueError) as exc:
        print(f"isthmus: {exc}", file=sys.stderr)
        return 1


def _echo(args: argparse.Namespace) -> int:
    from isthmus.dimse import scu

    settings = _settings(args)
    peer = _peer(args, settings)
    status = scu.echo(peer, settings.aet, tls=_client_tls(settings, peer))
    print(f"C-ECHO {peer}: status 0x{status:04X}" + (" (success)" if status == 0 else ""))
    return 0 if status == 0 else 1


def _send(args: argparse.Namespace) -> int:
    from isthmus.dimse import scu

    settings = _settings(args)
    peer = _peer(args, settings)
    tls = _client_tls(settings, peer)
    files = list(iter_files(args.paths))
    with tqdm(total=len(files), unit="file", desc="send", file=sys.stderr) as bar:
        report = scu.send(peer, files, settings.aet, progress=bar.update, tls=tls)
    for path, reason in report.failed:
        print(f"failed {path}: {reason}", file=sys.stderr)
    print(f"sent {report.sent} of {len(files)} file(s) to {peer}")
    return 0 if not report.failed else 1


def parse_keys(level: str, pairs: Sequence[str]) -> Dataset:
    """A C-FIND identifier from KEY=VALUE arguments (KEY alone: return it)."""
    from pydicom.datadict import dictionary_VR

    from isthmus.archive import default_return_keys, resolve_tag

    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in default_return_keys(level):
        tag = resolve_tag(keyword)
        ds.add_new(tag, dictionary_VR(tag), "")
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            tag = resolve_tag(name)
        except KeyError as exc:
            raise ConfigError(str(exc)) from None
        ds.add_new(tag, dictionary_VR(tag), value)
    return ds


def _query(args: argparse.Namespace) -> int:
    from isthmus.dimse import scu

    settings = _settings(args)
    peer = _peer(args, settings)
    level = LEVELS[args.level]
    identifier = parse_keys(level, args.keys)
    matches = scu.find(
        peer, identifier, args.model.upper(), settings.aet, tls=_client_tls(settings, peer)
    )
    if args.json:
        print(json.dumps([m.to_json_dict() for m in matches], indent=1))
        return 0
    _print_table(matches, identifier)
    print(f"{len(matches)} match(es)")
    return 0


def _print_table(matches: list[Dataset], identifier: Dataset) -> None:
    columns = [
        e.keyword
        for e in identifier
        if e.keyword not in ("QueryRetrieveLevel", "SpecificCharacterSet")
    ]
    rows = [[_cell(m.get(c)) for c in columns] for m in matches]
    widths = [min(40, max([len(c)] + [len(r[i]) for r in rows])) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w)[:w] for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(v.ljust(w)[:w] for v, w in zip(row, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _token(args: argparse.Namespace) -> int:
    from isthmus.web import auth

    return auth.main([args.action] + ([args.value] if args.value else []))


def _retrieve(args: argparse.Namespace) -> int:
    from isthmus.dimse.fetch import retrieve_into_archive

    settings = _settings(args)
    peer = _peer(args, settings)
    report = retrieve_into_archive(settings, peer, args.study, args.series, args.via, args.port)
    print(
        f"retrieved {report.completed} instance(s), {report.failed} failed, "
        f"{report.warning} warning(s) (final status 0x{report.status:04X})"
    )
    return 0 if report.status == SUCCESS and not report.failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
