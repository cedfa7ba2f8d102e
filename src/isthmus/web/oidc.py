"""OpenID Connect access tokens: JWTs (RFC 7519) verified offline with the issuer's keys.

The issuer's public keys are read from a JWKS file (RFC 7517) named in the config
(`oidc_jwks_file`), re-read when it changes, so key rotation needs no restart and
Isthmus never calls the network to validate a request.  Checked: signature
(RS/PS/ES 256-512, EdDSA; never `none` or HMAC), `iss`, `aud`, `exp`, `nbf`.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from isthmus.config import ConfigError

LEEWAY_SECONDS = 60
_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
_ALGORITHMS = {f"{p}{n}" for p in ("RS", "PS", "ES") for n in _HASHES} | {"EdDSA"}


class JWTError(ValueError):
    """A token that does not verify; the message says why (safe to show the caller)."""


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise JWTError("malformed base64url") from None


def load_public_key(jwk: dict[str, Any]) -> Any:
    """A cryptography public key from a JWK (RSA, EC or OKP/Ed25519)."""
    kty = jwk.get("kty")
    if kty == "RSA":
        n = int.from_bytes(b64url_decode(jwk["n"]), "big")
        e = int.from_bytes(b64url_decode(jwk["e"]), "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    if kty == "EC":
        curve = _CURVES[jwk["crv"]]()
        x = int.from_bytes(b64url_decode(jwk["x"]), "big")
        y = int.from_bytes(b64url_decode(jwk["y"]), "big")
        return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    if kty == "OKP" and jwk.get("crv") == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
    raise ValueError(f"unsupported key type {kty!r}")


@dataclass
class OIDCVerifier:
    issuer: str
    audience: str
    jwks_file: str
    permissions_claim: str = "permissions"
    default_permissions: frozenset[str] = frozenset({"read"})
    _keys: dict[str, Any] = field(default_factory=dict)
    _mtime: float = -1.0

    @classmethod
    def from_settings(cls, settings: Any) -> OIDCVerifier | None:
        issuer = getattr(settings, "oidc_issuer", "") or ""
        if not issuer:
            return None
        audience = getattr(settings, "oidc_audience", "") or ""
        jwks = str(getattr(settings, "oidc_jwks_file", "") or "")
        if not audience or not jwks:
            raise ConfigError("oidc_issuer needs oidc_audience and oidc_jwks_file too")
        defaults = getattr(settings, "oidc_default_permissions", ("read",))
        if isinstance(defaults, str):
            defaults = [p.strip() for p in defaults.split(",") if p.strip()]
        verifier = cls(
            issuer,
            audience,
            jwks,
            getattr(settings, "oidc_permissions_claim", "permissions") or "permissions",
            frozenset(defaults),
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
            keys = {}
            for index, jwk in enumerate(document.get("keys", [])):
                if jwk.get("use", "sig") == "sig":
                    keys[jwk.get("kid") or f"#{index}"] = (jwk, load_public_key(jwk))
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"oidc_jwks_file {self.jwks_file} is not a usable JWKS: {exc}"
            ) from None
        if not keys:
            raise ConfigError(f"oidc_jwks_file {self.jwks_file} holds no signing key")
        self._keys, self._mtime = keys, mtime

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; raises JWTError otherwise."""
        try:
            head_b64, payload_b64, sig_b64 = token.split(".")
            header = json.loads(b64url_decode(head_b64))
            claims = json.loads(b64url_decode(payload_b64))
        except (ValueError, UnicodeDecodeError):
            raise JWTError("not a JWT") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise JWTError("not a JWT")
        alg = header.get("alg")
        if alg not in _ALGORITHMS:
            raise JWTError(f"algorithm {alg!r} is not accepted")
        try:
            self._reload()
        except ConfigError as exc:
            raise JWTError(f"issuer keys unavailable ({exc})") from None
        jwk, key = self._key(header.get("kid"))
        _check_signature(
            alg, jwk, key, f"{head_b64}.{payload_b64}".encode(), b64url_decode(sig_b64)
        )
        self._check_claims(claims)
        return claims

    def _key(self, kid: str | None) -> tuple[dict, Any]:
        if kid is not None:
            if kid not in self._keys:
                raise JWTError(f"unknown key id {kid!r}")
            return self._keys[kid]
        if len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise JWTError("token names no key id and the issuer has several keys")

    def _check_claims(self, claims: dict[str, Any]) -> None:
        now = time.time()
        if claims.get("iss") != self.issuer:
            raise JWTError("wrong issuer")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            raise JWTError("wrong audience")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)):
            raise JWTError("no expiry")
        if now > exp + LEEWAY_SECONDS:
            raise JWTError("expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and now < nbf - LEEWAY_SECONDS:
            raise JWTError("not valid yet")

    def permissions(self, claims: dict[str, Any]) -> frozenset[str]:
        """Permissions a token grants: the configured claim (a dotted path; a list or a
        space-separated string), or the default permissions when it is absent."""
        value: Any = claims
        for part in self.permissions_claim.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return self.default_permissions
        items = (
            value.split() if isinstance(value, str) else value if isinstance(value, list) else []
        )
        return frozenset(str(item) for item in items)


def _check_signature(alg: str, jwk: dict, key: Any, signed: bytes, signature: bytes) -> None:
    family, bits = alg[:2], alg[2:]
    try:
        if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signed)
        elif family == "RS" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), _HASHES[bits]())
        elif family == "PS" and isinstance(key, rsa.RSAPublicKey):
            key.verify(
                signature,
                signed,
                padding.PSS(padding.MGF1(_HASHES[bits]()), _HASHES[bits].digest_size),
                _HASHES[bits](),
            )
        elif family == "ES" and isinstance(key, ec.EllipticCurvePublicKey):
            half = len(signature) // 2
            der = encode_dss_signature(
                int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
            )
            key.verify(der, signed, ec.ECDSA(_HASHES[bits]()))
        else:
            raise JWTError(f"algorithm {alg} does not fit key type {jwk.get('kty')}")
    except InvalidSignature:
        raise JWTError("bad signature") from None
