"""Who may do what over HTTP: developer mode, API tokens, OpenID Connect JWTs.

- Developer mode: bound to loopback with no token and no OIDC issuer configured,
  every request may do everything (docs/security.md).
- API tokens: `[tokens.NAME]` tables in the config file hold `hash = "sha256:…"`
  (never the token itself) and `permissions`; clients send `Authorization: Bearer`.
- OpenID Connect: a JWT signed by the configured issuer, verified offline against
  the issuer's public keys in a JWKS file (oidc.py); its permissions come from a claim.

Permissions: `read` (QIDO, WADO, capabilities, UPS-RS search, retrieve and event
channel), `write` (STOW, UPS-RS changes and subscriptions), `delete` (DELETE),
`admin` (all of them, and the audit trail: GET /api/audit), `dicom-ws` (the
DICOM-over-WebSocket gateway) and `metrics` (GET /metrics; docs/operations.md).

Each credential checked is told to the audit trail (archive/activity.py, "authentication"):
every failure, and a success once per caller and address every `SUCCESS_INTERVAL`
seconds (bearer tokens come with every request; one message per request would bury
the trail).  Developer mode authenticates nobody and tells nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from isthmus.archive import Activity
from isthmus.config import ConfigError, Settings
from isthmus.web.errors import HTTPError, error_response
from isthmus.web.oidc import JWTError, OIDCVerifier

PERMISSIONS = ("read", "write", "delete", "admin", "dicom-ws", "metrics")
SUCCESS_INTERVAL = 600.0
_HASH_PREFIX = "sha256:"
# Methods → permission needed on the DICOMweb and WADO-URI paths.
METHOD_PERMISSION = {
    "GET": "read",
    "HEAD": "read",
    "OPTIONS": "read",
    "POST": "write",
    "PUT": "write",
    "DELETE": "delete",
}
PROTECTED_PREFIXES = ("/dicom-web", "/wado")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and what it may do."""

    name: str
    permissions: frozenset[str]
    via: str  # "developer-mode", "token" or "oidc"

    def can(self, permission: str) -> bool:
        return permission in self.permissions or "admin" in self.permissions


def hash_token(token: str) -> str:
    """The form a token is kept in the config file: "sha256:" + hex digest."""
    return _HASH_PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random API token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class _Token:
    name: str
    digest: bytes
    permissions: frozenset[str]


class Authenticator:
    """Turns an Authorization header into a Principal, per the settings."""

    def __init__(self, settings: Settings, activity: Activity | None = None) -> None:
        self.tokens = _load_tokens(settings.tokens)
        self.oidc = OIDCVerifier.from_settings(settings)
        self.developer_mode = settings.on_loopback and not self.tokens and self.oidc is None
        self.activity = activity if activity is not None else Activity()
        self._told: dict[tuple[str, str | None], float] = {}
        self._told_lock = threading.Lock()

    def identify(self, authorization: str | None) -> Principal | None:
        """The caller named by an Authorization header; None when there is none.

        Raises HTTPError(401) for a credential that is not valid.
        """
        if self.developer_mode:
            return Principal("developer", frozenset(PERMISSIONS), "developer-mode")
        if not authorization:
            return None
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise _unauthorized("use Authorization: Bearer <token>", "invalid_request")
        return self.from_bearer(credential)

    def from_bearer(self, credential: str) -> Principal:
        """The caller a bearer credential (API token or JWT) stands for, or HTTPError(401)."""
        if credential.count(".") == 2 and self.oidc is not None:
            try:
                claims = self.oidc.verify(credential)
            except JWTError as exc:
                raise _unauthorized(f"token rejected: {exc}", "invalid_token") from None
            return Principal(
                str(claims.get("sub", "oidc-user")), self.oidc.permissions(claims), "oidc"
            )
        digest = hashlib.sha256(credential.encode("utf-8")).digest()
        for token in self.tokens:
            if hmac.compare_digest(digest, token.digest):
                return Principal(token.name, token.permissions, "token")
        raise _unauthorized("unknown or revoked token", "invalid_token")

    def require(
        self, authorization: str | None, permission: str, address: str | None = None
    ) -> Principal:
        """The caller, if it holds `permission`; otherwise HTTPError 401 or 403.
        `address` (the client's) goes into the audit trail."""
        try:
            principal = self.identify(authorization)
        except HTTPError as exc:
            self._tell("unknown", address, exc.message)
            raise
        if principal is None:
            self._tell("unknown", address, "no credential")
            raise _unauthorized("authentication required (Authorization: Bearer <token>)")
        if not principal.can(permission):
            message = f"{principal.name!r} lacks the {permission!r} permission"
            self._tell(principal.name, address, message)
            raise HTTPError(403, message)
        if principal.via != "developer-mode":
            self._tell(principal.name, address, None)
        return principal

    def _tell(self, user: str, address: str | None, failure: str | None) -> None:
        """Audit a credential check: every failure, a success now and then."""
        if failure is None:
            now = time.monotonic()
            with self._told_lock:
                last = self._told.get((user, address))
                if last is not None and now - last < SUCCESS_INTERVAL:
                    return
                if len(self._told) > 10_000:
                    self._told.clear()
                self._told[(user, address)] = now
        self.activity.audit(
            "authentication",
            outcome=0 if failure is None else 4,
            description=failure,
            door="http",
            user=user,
            address=address,
            local="isthmus",
        )


TOKEN_PROTOCOL_PREFIX = "isthmus-token."


def websocket_authorization(websocket: WebSocket) -> str | None:
    """A WebSocket's credentials: the Authorization header, a subprotocol
    ``isthmus-token.<token>`` (browsers cannot set headers), or ``?token=``."""
    header = websocket.headers.get("authorization")
    if header:
        return header
    protocols: list[str] = websocket.scope.get("subprotocols", [])
    for proto in protocols:
        if proto.startswith(TOKEN_PROTOCOL_PREFIX):
            return "Bearer " + proto[len(TOKEN_PROTOCOL_PREFIX) :]
    token = websocket.query_params.get("token")
    return f"Bearer {token}" if token else None


def _unauthorized(message: str, error: str | None = None) -> HTTPError:
    challenge = 'Bearer realm="isthmus"' + (f', error="{error}"' if error else "")
    return HTTPError(401, message, {"WWW-Authenticate": challenge})


def _load_tokens(config: dict[str, Any]) -> list[_Token]:
    tokens = []
    for name, entry in (config or {}).items():
        if not isinstance(entry, dict):
            raise ConfigError(f"tokens.{name} must be a table with hash and permissions")
        digest = str(entry.get("hash", ""))
        if not digest.startswith(_HASH_PREFIX) or len(digest) != len(_HASH_PREFIX) + 64:
            raise ConfigError(
                f"tokens.{name}.hash must be 'sha256:' and 64 hex digits "
                "(python -m isthmus.web.auth new prints one)"
            )
        try:
            raw = bytes.fromhex(digest[len(_HASH_PREFIX) :])
        except ValueError:
            raise ConfigError(f"tokens.{name}.hash is not hexadecimal") from None
        perms = entry.get("permissions", ["read"])
        if isinstance(perms, str):
            perms = [p.strip() for p in perms.split(",")]
        unknown = sorted(set(perms) - set(PERMISSIONS))
        if unknown:
            raise ConfigError(
                f"tokens.{name}: unknown permissions {unknown}; known: {', '.join(PERMISSIONS)}"
            )
        tokens.append(_Token(str(name), raw, frozenset(perms)))
    return tokens


class AuthMiddleware:
    """ASGI middleware: the DICOMweb and WADO-URI paths need a permission per method.

    Other paths (the viewer's static files, /health, the WebSocket gateway, which
    checks `dicom-ws` itself) pass through.  The principal is left in
    ``scope["state"]["principal"]`` for handlers.
    """

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.auth = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _protected(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        authorization = _header(scope, b"authorization")
        permission = permission_for(scope["method"], scope.get("path", ""))
        client = scope.get("client")
        try:
            principal = self.auth.require(authorization, permission, client[0] if client else None)
        except HTTPError as exc:
            response = error_response(exc.status, exc.message, exc.headers)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    """The last value of a request header (`name` lower-case; so are the scope's, ASGI)."""
    value = None
    for key, raw in scope["headers"]:
        if key == name:
            value = raw.decode("latin-1")
    return value


def permission_for(method: str, path: str) -> str:
    """The permission a request needs: by method, except that leaving a UPS
    subscription (DELETE …/workitems/…/subscribers/…) is a write, not a delete."""
    if method == "DELETE" and "/workitems/" in path:
        return "write"
    return METHOD_PERMISSION.get(method, "admin")


def _protected(path: str) -> bool:
    return any(
        path == p or path.startswith(p + "/") or path.startswith(p + "?")
        for p in PROTECTED_PREFIXES
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m isthmus.web.auth new` prints a new token and the hash to configure."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["hash"] and len(args) == 2:
        print(hash_token(args[1]))
        return 0
    if args[:1] in (["new"], []):
        token = new_token()
        print(f"token (give to the client, shown once): {token}")
        print(f'config:  hash = "{hash_token(token)}"')
        return 0
    print("usage: python -m isthmus.web.auth [new | hash TOKEN]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
