"""OpenID Connect access tokens: JWTs (RFC 7519) verified offline with the issuer's keys.

The issuer's public keys are read from a JWKS file (RFC 7517) named in the config
(`oidc_jwks_file`), re-read when it changes, so key rotation needs no restart and
Isthmus never calls the network to validate a request.  Parsing, signature and claim
checks are PyJWT's; this module chooses what is accepted:

- algorithms: RS/PS/ES 256-512 and EdDSA, never `none` or HMAC (an HMAC algorithm
  would let the issuer's *public* key serve as a shared secret);
- each key verifies only the algorithms of its own type (RSA: RS*, PS*; EC: the ES* of
  its curve; OKP Ed25519: EdDSA), narrowed to the key's `alg` when the JWKS names one;
- the key is the one the token's `kid` names; a token without `kid` is accepted only
  when the issuer has a single signing key;
- `iss` exactly, `aud` (a string or a list holding ours), `exp` required, `nbf` and
  `iat`, with 60 seconds of clock leeway.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import jwt
from jwt.algorithms import AllowedPublicKeys

from isthmus.config import ConfigError

if TYPE_CHECKING:
    from isthmus.config import Settings

LEEWAY_SECONDS = 60
# Algorithms each key type may verify (RFC 7518 3.1); nothing else is ever accepted.
_RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC = {"P-256": ("ES256",), "P-384": ("ES384",), "P-521": ("ES512",)}
_OKP = {"Ed25519": ("EdDSA",)}
ALGORITHMS = frozenset(_RSA) | {a for algs in (*_EC.values(), *_OKP.values()) for a in algs}
# Private members of a JWK (RFC 7518 6.2.2, 6.3.2): a JWKS file should have none; if it
# does, only the public key is used.
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth")

# JSON values as json.load returns them: claims, JWK members.
JSONValue = str | int | float | bool | None | list["JSONValue"] | dict[str, "JSONValue"]
Claims = dict[str, JSONValue]


class JWTError(ValueError):
    """A token that does not verify; the message says why (safe to show the caller)."""


@dataclass(frozen=True)
class SigningKey:
    """One public key of the issuer and the algorithms it may verify."""

    kid: str
    key: AllowedPublicKeys
    algorithms: tuple[str, ...]


def load_signing_key(jwk: dict[str, JSONValue], kid: str) -> SigningKey:
    """The public key of a JWK (RSA, EC or OKP/Ed25519) with the algorithms it may verify.

    Raises ValueError for a key type, curve or algorithm that is not accepted
    (symmetric `oct` keys among them).
    """
    kty, crv, alg = jwk.get("kty"), jwk.get("crv"), jwk.get("alg")
    if kty == "RSA":
        algorithms: tuple[str, ...] = _RSA
    elif kty == "EC" and isinstance(crv, str) and crv in _EC:
        algorithms = _EC[crv]
    elif kty == "OKP" and isinstance(crv, str) and crv in _OKP:
        algorithms = _OKP[crv]
    else:
        raise ValueError(f"key {kid!r}: unsupported key type {kty!r} (curve {crv!r})")
    if alg is not None:
        if alg not in algorithms:
            raise ValueError(f"key {kid!r}: algorithm {alg!r} is not accepted for {kty} keys")
        algorithms = (str(alg),)
    public = {name: value for name, value in jwk.items() if name not in _PRIVATE_MEMBERS}
    try:
        loaded = jwt.PyJWK(public, algorithm=algorithms[0]).key
    except jwt.PyJWTError as exc:
        raise ValueError(f"key {kid!r}: {exc}") from None
    return SigningKey(kid, loaded, algorithms)


@dataclass
class OIDCVerifier:
    issuer: str
    audience: str
    jwks_file: str
    permissions_claim: str = "permissions"
    default_permissions: frozenset[str] = frozenset({"read"})
    _keys: dict[str, SigningKey] = field(default_factory=dict)
    _mtime: float = -1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> OIDCVerifier | None:
        if not settings.oidc_issuer:
            return None
        if not settings.oidc_audience or not settings.oidc_jwks_file:
            raise ConfigError("oidc_issuer needs oidc_audience and oidc_jwks_file too")
        verifier = cls(
            settings.oidc_issuer,
            settings.oidc_audience,
            str(settings.oidc_jwks_file),
            settings.oidc_permissions_claim or "permissions",
            frozenset(settings.oidc_default_permissions),
        )
        verifier._reload()
        return verifier

    def _reload(self) -> None:
        try:
            mtime = os.stat(self.jwks_file).st_mtime
        except OSError as exc:
            raise ConfigError(f"cannot read oidc_jwks_file {self.jwks_file}: {exc}") from None
        if mtime == self._mtime:
            return
        try:
            with open(self.jwks_file, "rb") as fh:
                document = json.load(fh)
            entries = document.get("keys", []) if isinstance(document, dict) else None
            if not isinstance(entries, list):
                raise ValueError("no 'keys' list")
            keys: dict[str, SigningKey] = {}
            for index, jwk in enumerate(entries):
                if not isinstance(jwk, dict):
                    raise ValueError(f"key #{index} is not an object")
                if jwk.get("use", "sig") == "sig":
                    kid = str(jwk.get("kid") or f"#{index}")
                    keys[kid] = load_signing_key(jwk, kid)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"oidc_jwks_file {self.jwks_file} is not a usable JWKS: {exc}"
            ) from None
        if not keys:
            raise ConfigError(f"oidc_jwks_file {self.jwks_file} holds no signing key")
        self._keys, self._mtime = keys, mtime

    def verify(self, token: str) -> Claims:
        """The claims of a valid token; raises JWTError otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise JWTError("not a JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise JWTError(f"algorithm {alg!r} is not accepted")
        try:
            self._reload()
        except ConfigError as exc:
            raise JWTError(f"issuer keys unavailable ({exc})") from None
        key = self._key(header.get("kid"))
        if alg not in key.algorithms:
            raise JWTError(f"algorithm {alg} does not fit key {key.kid!r}")
        try:
            claims: Claims = jwt.decode(
                token,
                key.key,
                algorithms=list(key.algorithms),
                issuer=self.issuer,
                audience=self.audience,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise JWTError(_reason(exc)) from None
        return claims

    def _key(self, kid: object) -> SigningKey:
        if kid is not None:
            if not isinstance(kid, str) or kid not in self._keys:
                raise JWTError(f"unknown key id {kid!r}")
            return self._keys[kid]
        if len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise JWTError("token names no key id and the issuer has several keys")

    def permissions(self, claims: Claims) -> frozenset[str]:
        """Permissions a token grants: the configured claim (a dotted path; a list or a
        space-separated string), or the default permissions when it is absent."""
        value: JSONValue = claims
        for part in self.permissions_claim.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return self.default_permissions
        items = (
            value.split() if isinstance(value, str) else value if isinstance(value, list) else []
        )
        return frozenset(str(item) for item in items)


def _reason(exc: jwt.PyJWTError) -> str:
    """A short message for a token PyJWT refused (shown to the caller in the 401)."""
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return {"exp": "no expiry", "iss": "wrong issuer", "aud": "wrong audience"}.get(
            exc.claim, f"no {exc.claim!r} claim"
        )
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "not valid yet"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad signature"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "algorithm is not accepted"
    if isinstance(exc, jwt.InvalidKeyError):
        return "algorithm does not fit the key"
    if isinstance(exc, jwt.DecodeError):
        return "not a JWT"
    return f"invalid token ({exc})"
