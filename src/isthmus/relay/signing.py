"""Signed HTTP requests from a site to the bridge (docs/relay.md, "Bridge API").

A site proves who it is with its Ed25519 key (the one in the directory), not with a
password: three headers, `X-Isthmus-Site`, `X-Isthmus-Time` (Unix seconds) and
`X-Isthmus-Signature`, the hex signature (`SiteIdentity.sign`, so with the relay's
signature context) over ``METHOD\\nPATH\\nTIME\\nsha256hex(body)``.  The bridge refuses a
bad signature and a time more than MAX_SKEW seconds away from its own clock.  The
signed bytes begin with an HTTP method, an envelope's with a length below 2**24, so
neither can pass for the other.
"""

from __future__ import annotations

import hashlib
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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
