"""Signatures between a site and its bridge (docs/relay.md, "Bridge API", "Directory").

Directory entries are signed by the bridge's own Ed25519 key (`sign_entry`): whoever
else can write to the KV bucket cannot make a router believe a site or an export the
bridge did not publish.  The bridge's public key reaches a site in its enrolment file,
the channel that already carries the one-time secret.

A site proves who it is in a request with its Ed25519 key (the one in the directory), not with a
password: three headers, `X-Isthmus-Site`, `X-Isthmus-Time` (Unix seconds) and
`X-Isthmus-Signature`, the hex signature (`SiteIdentity.sign`, so with the relay's
signature context) over ``METHOD\\nPATH\\nTIME\\nsha256hex(body)``.  The bridge refuses a
bad signature and a time more than MAX_SKEW seconds away from its own clock.  The
signed bytes begin with an HTTP method, an envelope's with a length below 2**24, so
neither can pass for the other.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from isthmus.relay.crypto import SIGNATURE_CONTEXT, SiteIdentity, SiteKeys

SITE_HEADER = "X-Isthmus-Site"
TIME_HEADER = "X-Isthmus-Time"
SIGNATURE_HEADER = "X-Isthmus-Signature"
MAX_SKEW = 300.0


def request_message(method: str, path: str, when: str, body: bytes) -> bytes:
    """The bytes a request's signature covers."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{method.upper()}\n{path}\n{when}\n{digest}".encode()


def sign_request(identity: SiteIdentity, method: str, path: str, body: bytes) -> dict[str, str]:
    """The three headers that sign this request as `identity`'s site, now."""
    when = str(int(time.time()))
    signature = identity.sign(request_message(method, path, when, body))
    return {SITE_HEADER: identity.name, TIME_HEADER: when, SIGNATURE_HEADER: signature.hex()}


def verify_signature(keys: SiteKeys, message: bytes, signature_hex: str) -> bool:
    """Whether `signature_hex` is the site's Ed25519 signature of `message`."""
    try:
        signature = bytes.fromhex(signature_hex)
        Ed25519PublicKey.from_public_bytes(keys.sig).verify(signature, SIGNATURE_CONTEXT + message)
    except (InvalidSignature, ValueError):
        return False
    return True


def fresh(when: str, now: float | None = None) -> bool:
    """Whether a request's time is within MAX_SKEW seconds of ours (replays, bad clocks)."""
    try:
        stamp = float(when)
    except ValueError:
        return False
    return abs((time.time() if now is None else now) - stamp) <= MAX_SKEW


# ------------------------------------------------------------ directory entries
DIRECTORY_CONTEXT = b"isthmus-relay-directory-v1\x00"


def _entry_bytes(doc: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in doc.items() if k != "signature"}
    return DIRECTORY_CONTEXT + json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()


def sign_entry(key: Ed25519PrivateKey, doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` (a `SiteEntry.to_json()`) with the bridge's signature over the rest of it."""
    return dict(doc, signature=key.sign(_entry_bytes(doc)).hex())


def entry_signed_by(doc: dict[str, Any], public: bytes) -> bool:
    """Whether the directory entry `doc` carries the bridge's (`public`) signature."""
    try:
        signature = bytes.fromhex(str(doc.get("signature", "")))
        Ed25519PublicKey.from_public_bytes(public).verify(signature, _entry_bytes(doc))
    except (InvalidSignature, ValueError):
        return False
    return True


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
