"""One settings object for every part of Isthmus.

Settings come, lowest precedence first, from the defaults below, a TOML file
(``--config``, see ``examples/isthmus.toml``), ``ISTHMUS_*`` environment
variables, and command-line flags.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

SERVICES = ("echo", "store", "find", "move", "get", "commit", "mpps", "worklist", "ups")

_PEER_RE = re.compile(r"^(?P<aet>[^@]{1,16})@(?P<host>[^:]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class Peer:
    """A known DICOM application entity: who may call us and where we may send."""

    aet: str
    host: str
    port: int
    # DICOM TLS (docs/security.md, "DICOM TLS"): we call it over TLS, and it must call us
    # over TLS; `certificate` ("sha256:<hex>" or "CN=<name>"): the client certificate it
    # must present when it calls us.
    tls: bool = False
    certificate: str = ""

    @classmethod
    def parse(cls, text: str) -> Peer:
        """Parse ``AET@HOST:PORT`` (PS3.8 AE titles are at most 16 characters)."""
        match = _PEER_RE.match(text.strip())
        if not match:
            raise ConfigError(f"peer {text!r} is not of the form AET@HOST:PORT")
        port = int(match["port"])
        if not 0 < port < 65536:
            raise ConfigError(f"peer {text!r}: port out of range")
        return cls(check_aet(match["aet"]), match["host"].strip("[]"), port)

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


def check_certificate(spec: str) -> str:
    """A peer's `certificate`: "sha256:" and the 64 hex digits of the SHA-256 fingerprint
    (colons allowed, as `openssl x509 -fingerprint -sha256` prints it), or "CN=<name>"."""
    text = spec.strip()
    if text.lower().startswith("sha256:"):
        if _HEX64_RE.match(text[7:].replace(":", "").replace(" ", "").lower()):
            return text
    elif text[:3].upper() == "CN=" and text[3:]:
        return text
    raise ConfigError(f"certificate {spec!r}: expected 'sha256:<64 hex digits>' or 'CN=<name>'")


def check_aet(aet: str) -> str:
    """Return a valid AE title (PS3.5 6.2 'AE': 1-16 chars, no backslash or control chars)."""
    value = aet.strip()
    if not value or len(value) > 16 or "\\" in value or any(ord(c) < 32 for c in value):
        raise ConfigError(f"AE title {aet!r} is not valid (1-16 characters, no backslash)")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything `isthmus serve` needs; immutable once built."""

    data: Path = Path("isthmus-data")
    host: str = "127.0.0.1"
    dicom_port: int = 11112
    http_port: int = 8042
    aet: str = "ISTHMUS"
    peers: tuple[Peer, ...] = ()
    index_url: str = ""
    blob_url: str = ""
    # "keep": a second copy of a stored SOP Instance UID is acknowledged and dropped;
    # "overwrite": it replaces the stored one.
    duplicates: str = "keep"
    # True: a success status means blob and index row survive a power loss (fsync).
    # False: they survive a crash of Isthmus only; for scratch archives and benchmarks.
    durable: bool = True
    # Called AE titles this node answers besides `aet`; "accept_any_called_aet" answers all.
    accept_any_called_aet: bool = False
    # Which callers may use each service: "any" or "known" (in `peers`).  Empty → default
    # policy (see `access_policy`).
    access: dict[str, str] = field(default_factory=dict)
    # When a calling AE is known, also require its network address to match the peer's host.
    check_peer_host: bool = False
    # Limits of the DICOM port (docs/security.md, "Limits").  Associations served at once,
    # in total and per calling host and per calling AE title (more: A-ASSOCIATE-RJ
    # transient, "local limit exceeded"); the Maximum Length we announce and the largest
    # P-DATA-TF we accept (PS3.8 D.1; larger: A-ABORT); the largest A-ASSOCIATE-RQ;
    # seconds to receive one PDU once it has begun (and the A-ASSOCIATE-RQ once connected);
    # seconds an association may stay silent (also the timeout of outbound associations).
    max_associations: int = 64
    max_associations_per_host: int = 32
    max_associations_per_aet: int = 32
    max_pdu: int = 262_144
    max_associate_rq: int = 1_048_576
    pdu_timeout: float = 30.0
    network_timeout: float = 60.0
    check_on_start: bool = True
    # Worker processes serving the ports (workers.py): 1 serves in the process started,
    # 0 starts one per core.
    workers: int = 1
    # Where the other processes of a shared archive reach our DICOM port (browser AE
    # titles registered here, docs/scaling.md); empty: the bound address.
    dicom_public_host: str = ""
    log_level: str = "info"
    # API tokens: name → {"hash": "sha256:…", "permissions": [...]}; filled in by the web door.
    tokens: dict[str, Any] = field(default_factory=dict)
    # Web door (docs/security.md, docs/conformance.md).  `public_url`: the externally visible
    # base URL (e.g. https://pacs.example.org) used in RetrieveURL/BulkDataURI; empty → from
    # each request's Host.  `cors_origins`: origins allowed to call the API ("*" for any).
    public_url: str = ""
    cors_origins: tuple[str, ...] = ()
    # OpenID Connect: JWTs from `oidc_issuer` for `oidc_audience`, verified with the keys
    # in `oidc_jwks_file`; permissions from the claim `oidc_permissions_claim`, else the
    # defaults.
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_file: str = ""
    oidc_permissions_claim: str = "permissions"
    oidc_default_permissions: tuple[str, ...] = ("read",)
    # HTTPS for the HTTP door (and wss:// for the gateway): PEM certificate chain and key.
    tls_cert: str = ""
    tls_key: str = ""
    # DICOM TLS (PS3.15 Annex B; docs/security.md, "DICOM TLS"): with a certificate chain
    # and key (PEM) a TLS DICOM port listens on `dicom_tls_port` next to the plain one
    # (`dicom_tls_only`: instead of it).  `dicom_tls_ca`: the CA bundle client certificates
    # are verified against (and peers' server certificates; empty: the system's);
    # `dicom_tls_client_certs`: "none", "optional" or "required".  Our certificate is
    # also our client certificate when we call peers over TLS.
    dicom_tls_port: int = 2762
    dicom_tls_cert: str = ""
    dicom_tls_key: str = ""
    dicom_tls_ca: str = ""
    dicom_tls_client_certs: str = "optional"
    dicom_tls_only: bool = False
    # DICOM-over-WebSocket gateway (docs/dicom-websocket.md, docs/security.md).  Peers a
    # browser may reach and AE titles it may register or call as ("*": all); empty → all
    # in developer mode (loopback, no credentials), none otherwise.  Limits: the largest PDU
    # forwarded (its variable field, PS3.8 D.1), open associations per client, idle seconds.
    dicom_ws_peers: tuple[str, ...] = ()
    dicom_ws_aets: tuple[str, ...] = ()
    dicom_ws_max_pdu: int = 1_048_576
    dicom_ws_max_associations: int = 32
    dicom_ws_idle_timeout: float = 300.0
    # Limits of the HTTP door (docs/security.md, "Limits"): URL bytes (414), header bytes
    # (431), query parameters (400), request body bytes (413; 0: none), seconds for the
    # request line and headers and between two body chunks (408), seconds an answer may
    # wait for its client to take any of it (connection dropped), idle seconds between
    # requests on a connection, open connections (503; 0: none).
    http_max_url: int = 65_536
    http_max_header_bytes: int = 65_536
    http_max_query_params: int = 1_000
    http_max_body: int = 4 * 1024**3
    http_head_timeout: float = 30.0
    http_body_timeout: float = 60.0
    http_send_timeout: float = 60.0
    http_keep_alive: int = 5
    http_max_connections: int = 512
    # The audit trail (docs/operations.md, PS3.15 A.5): the local log (empty → DATA/audit.log),
    # the AuditSourceID of its messages (empty → `aet`), and a syslog collector
    # ("tls://host:6514" per RFC 5425 or "udp://host:514" per RFC 5426; empty → none) with the
    # CA file that verifies it and our client certificate and key, if it asks for one.
    audit_log: str = ""
    audit_source_id: str = ""
    audit_syslog: str = ""
    audit_syslog_ca: str = ""
    audit_syslog_cert: str = ""
    audit_syslog_key: str = ""
    # Forwarding rules (``[[forward]]`` tables: name, from, modality, match, to, settle,
    # delete_after_days; docs/operations.md, "Forwarding and jobs") and the job worker:
    # threads, lease seconds (a job whose lease runs out is taken over), retry backoff
    # (first delay, doubling) bounded by attempts and total seconds, how often retention
    # runs, days finished jobs are kept; `move_as_job`: C-MOVE sub-operations left when the association drops go on.
    forward: tuple[dict[str, Any], ...] = ()
    job_threads: int = 2
    job_lease: float = 60.0
    job_retry_base: float = 5.0
    job_retry_max_attempts: int = 20
    job_retry_max_time: float = 86_400.0
    retention_interval: float = 3600.0
    job_keep_days: float = 30.0
    move_as_job: bool = True
    # The relay (docs/relay.md): the enrolment file the bridge's `add-site` wrote (empty: no
    # relay); the AE titles this site exports ("AET@HOST:PORT" for a device of the site,
    # "AET" for this node's own archive); per exported AE title, narrowing of who may call
    # it for what (``[relay_export_rules.PACSB] services = ["find", "move"]``,
    # ``sites = ["A"]``); seconds the relay waits for the far site before giving up.
    relay: str = ""
    relay_exports: tuple[str, ...] = ()
    relay_export_rules: dict[str, Any] = field(default_factory=dict)
    relay_timeout: float = 30.0
    # Peer-to-peer sharing (docs/p2p.md, "ICE servers and TURN"; the ``[p2p]`` table, keys
    # without the prefix): STUN/TURN URLs ("stun:host:3478", "turn:host:3478?transport=udp"),
    # TURN credentials, static or minted from coturn's shared secret for `turn_ttl` seconds
    # (isthmus.p2p.ice), and `relay_only`: iceTransportPolicy "relay" (TURN only).  Wrong
    # proofs at the offer endpoint: `p2p_offer_failures` per link and per client address,
    # one given back every `p2p_offer_refill` seconds; beyond them 429.
    p2p_ice_servers: tuple[str, ...] = ()
    p2p_turn_username: str = ""
    p2p_turn_credential: str = ""
    p2p_turn_secret: str = ""
    p2p_turn_ttl: float = 3600.0
    p2p_relay_only: bool = False
    p2p_offer_failures: int = 5
    p2p_offer_refill: float = 60.0

    @property
    def resolved_index_url(self) -> str:
        return self.index_url or f"sqlite:///{(self.data / 'index.sqlite').resolve()}"

    @property
    def resolved_blob_url(self) -> str:
        return self.blob_url or f"file://{(self.data / 'blobs').resolve()}"

    @property
    def on_loopback(self) -> bool:
        return is_loopback(self.host)

    def access_policy(self) -> dict[str, str]:
        """Who may use which service.

        Default: on loopback every caller may use every service (developer mode);
        on any other address only known peers may store, find, move and get, while
        C-ECHO stays open so that connectivity can be checked.  C-MOVE destinations
        are always restricted to known peers, whatever this says.
        """
        default = "any" if self.on_loopback else "known"
        policy = {svc: default for svc in SERVICES}
        policy["echo"] = "any"
        policy.update(self.access)
        return policy

    def peer(self, aet: str) -> Peer | None:
        for peer in self.peers:
            if peer.aet == aet:
                return peer
        return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_ENV_PREFIX = "ISTHMUS_"
# Settings given as a list in TOML and as comma-separated text in the environment.
_LIST_SETTINGS = (
    "cors_origins",
    "oidc_default_permissions",
    "dicom_ws_peers",
    "dicom_ws_aets",
    "relay_exports",
    "p2p_ice_servers",
)


def load(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from defaults, TOML file, ``ISTHMUS_*`` environment, then overrides.

    Overrides whose value is None are ignored, so CLI flags map straight onto it.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = config_file or environ.get(_ENV_PREFIX + "CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                values.update(_from_toml(tomllib.load(fh)))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    values.update(_from_env(environ))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return _build(values)


def _from_toml(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    flat = dict(doc)
    for section in ("server", "dicom", "storage", "web"):
        flat.update(flat.pop(section, {}) or {})
    for key, value in (flat.pop("p2p", {}) or {}).items():
        flat["p2p_" + key.replace("-", "_")] = value
    known = {f.name for f in fields(Settings)}
    for key, value in flat.items():
        key = key.replace("-", "_")
        if key == "peers":
            out["peers"] = [_peer_from_toml(p) for p in value]
        elif key in known:
            out[key] = value
        else:
            raise ConfigError(f"unknown setting {key!r} in config file")
    return out


def _peer_from_toml(value: object) -> Peer:
    """A peer from TOML: "AET@HOST:PORT" or a table with aet, host and port."""
    if isinstance(value, str):
        return Peer.parse(value)
    if not isinstance(value, dict):
        raise ConfigError(f"peer entry {value!r} needs aet, host and port")
    unknown = set(value) - {"aet", "host", "port", "tls", "certificate"}
    if unknown:
        raise ConfigError(f"peer entry {value!r}: unknown keys {sorted(unknown)}")
    certificate = check_certificate(str(value["certificate"])) if "certificate" in value else ""
    try:
        return Peer(
            check_aet(value["aet"]),
            str(value["host"]),
            int(value["port"]),
            tls=_bool(value.get("tls", False)),
            certificate=certificate,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"peer entry {value!r} needs aet, host and port") from exc


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(Settings):
        raw = env.get(_ENV_PREFIX + f.name.upper())
        if raw is None:
            continue
        if f.name == "peers":
            out["peers"] = [Peer.parse(p) for p in raw.split(",") if p.strip()]
        elif f.name == "access":
            out["access"] = dict(item.split("=", 1) for item in raw.split(",") if "=" in item)
        elif f.name in ("tokens", "forward", "relay_export_rules"):
            continue
        elif f.name in _LIST_SETTINGS:
            out[f.name] = raw
        else:
            out[f.name] = raw
    return out


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _build(values: dict[str, Any]) -> Settings:
    settings = Settings()
    kinds = {f.name: f.type for f in fields(Settings)}
    clean: dict[str, Any] = {}
    for key, value in values.items():
        kind = kinds[key]
        try:
            if kind == "int":
                clean[key] = int(value)
            elif kind == "float":
                clean[key] = float(value)
            elif kind == "bool":
                clean[key] = _bool(value)
            elif kind == "Path":
                clean[key] = Path(value)
            elif key in _LIST_SETTINGS:
                items = value.split(",") if isinstance(value, str) else value
                clean[key] = tuple(str(v).strip() for v in items if str(v).strip())
            elif key == "peers":
                clean[key] = tuple(p if isinstance(p, Peer) else Peer.parse(p) for p in value)
            elif key == "forward":
                clean[key] = tuple(value)
            else:
                clean[key] = value
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"setting {key}={value!r}: {exc}") from exc
    settings = replace(settings, **clean)
    check_aet(settings.aet)
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("tls_cert and tls_key go together")
    _check_dicom_tls(settings)
    for name in ("dicom_port", "http_port", "dicom_tls_port"):
        port = getattr(settings, name)
        if not 0 <= port < 65536:  # 0: any free port
            raise ConfigError(f"{name} {port} is not a TCP port")
    if settings.duplicates not in ("keep", "overwrite"):
        raise ConfigError("duplicates must be 'keep' or 'overwrite'")
    if not 4096 <= settings.max_pdu <= 64 * 1024 * 1024:
        raise ConfigError("max_pdu must be 4096 .. 67108864 bytes")
    if not 1024 <= settings.max_associate_rq <= 64 * 1024 * 1024:
        raise ConfigError("max_associate_rq must be 1024 .. 67108864 bytes")
    for name in ("max_associations", "max_associations_per_host", "max_associations_per_aet"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    if settings.workers < 0:
        raise ConfigError("workers must be 0 (one per core) or more")
    if settings.pdu_timeout <= 0 or settings.network_timeout <= 0:
        raise ConfigError("pdu_timeout and network_timeout must be positive")
    if not 4096 <= settings.dicom_ws_max_pdu <= 64 * 1024 * 1024 - 6:
        raise ConfigError("dicom_ws_max_pdu must be 4096 .. 67108858 bytes")
    for name in ("http_max_url", "http_max_header_bytes", "http_max_query_params"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    for name in ("http_max_body", "http_max_connections"):
        if getattr(settings, name) < 0:
            raise ConfigError(f"{name} must be 0 (no limit) or more")
    for name in ("http_head_timeout", "http_body_timeout", "http_send_timeout", "http_keep_alive"):
        if not getattr(settings, name) > 0:
            raise ConfigError(f"{name} must be more than 0 seconds")
    _check_forward(settings)
    _check_relay(settings)
    _check_p2p(settings)
    for svc, rule in settings.access.items():
        if svc not in SERVICES or rule not in ("any", "known"):
            raise ConfigError(
                f"access.{svc} = {rule!r}: services are {SERVICES}, rules 'any' or 'known'"
            )
    return settings


def _check_dicom_tls(settings: Settings) -> None:
    """DICOM TLS settings that go together (docs/security.md, "DICOM TLS")."""
    if bool(settings.dicom_tls_cert) != bool(settings.dicom_tls_key):
        raise ConfigError("dicom_tls_cert and dicom_tls_key go together")
    if settings.dicom_tls_only and not settings.dicom_tls_cert:
        raise ConfigError("dicom_tls_only needs dicom_tls_cert and dicom_tls_key")
    if settings.dicom_tls_client_certs not in ("none", "optional", "required"):
        raise ConfigError("dicom_tls_client_certs must be 'none', 'optional' or 'required'")
    verifies = settings.dicom_tls_cert and settings.dicom_tls_client_certs != "none"
    if verifies and not settings.dicom_tls_ca:
        if settings.dicom_tls_client_certs == "required" or any(
            p.certificate for p in settings.peers
        ):
            raise ConfigError("client certificates are verified against dicom_tls_ca: set it")
    if any(p.certificate for p in settings.peers) and not verifies:
        raise ConfigError(
            "a peer's certificate can only be checked on the TLS DICOM port with client "
            "certificates (dicom_tls_cert, dicom_tls_ca, dicom_tls_client_certs)"
        )


RELAY_SERVICES = ("echo", "find", "move", "get", "store")


def _check_relay(settings: Settings) -> None:
    """Exports are AE titles (with the device's address) and narrowing names services."""
    if settings.relay_exports and not settings.relay:
        raise ConfigError("relay_exports need relay (the enrolment file from the bridge)")
    titles = set()
    for spec in settings.relay_exports:
        titles.add(check_aet(spec) if "@" not in spec else Peer.parse(spec).aet)
    for aet, rule in settings.relay_export_rules.items():
        if aet not in titles:
            raise ConfigError(f"relay_export_rules.{aet}: {aet} is not in relay_exports")
        if not isinstance(rule, dict) or set(rule) - {"services", "sites"}:
            raise ConfigError(f"relay_export_rules.{aet}: only services and sites")
        unknown = set(rule.get("services", ())) - set(RELAY_SERVICES)
        if unknown:
            raise ConfigError(
                f"relay_export_rules.{aet}: unknown services {sorted(unknown)}; "
                f"services are {RELAY_SERVICES}"
            )
    if settings.relay_timeout <= 0:
        raise ConfigError("relay_timeout must be positive")


def _check_p2p(settings: Settings) -> None:
    """ICE servers and TURN credentials that can be used (isthmus.p2p.ice)."""
    from isthmus.p2p.ice import check_settings

    try:
        check_settings(settings)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if settings.p2p_offer_failures < 1 or settings.p2p_offer_refill <= 0:
        raise ConfigError("p2p offer_failures must be at least 1 and offer_refill positive")


def _check_forward(settings: Settings) -> None:
    """Forwarding rules must name known peers and real attributes (archive/forwarding.py)."""
    for name in ("job_threads", "job_retry_max_attempts"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    if not settings.forward:
        return
    from isthmus.archive.forwarding import parse_rules

    try:
        parse_rules(settings.forward, [p.aet for p in settings.peers])
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
