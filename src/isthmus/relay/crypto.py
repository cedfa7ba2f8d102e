"""End-to-end encryption between relay routers (docs/relay.md, "Envelopes").

Every payload that leaves a site - DIMSE commands, identifiers, datasets, manifests,
chunks of instances - is an *envelope*: a clear header (routing metadata only: the two
site names, the kind of message, ids, sizes), the body encrypted to the recipient
site with HPKE (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305,
base mode; the header is the HPKE `info`, so it cannot be changed or moved to another
message), and an Ed25519 signature by the sending site over header and ciphertext.
HPKE's base mode does not authenticate the sender; the signature does.  Both come
from `cryptography` (OpenSSL); nothing here is home-made beyond framing bytes.

A site's keys are generated at the site (`SiteIdentity.create`) and never leave it:
the bridge, NATS and the object store see public keys and ciphertext only.  The
fingerprint of a site's public keys is what administrators compare out of band.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from zstandard import ZstdCompressor, ZstdDecompressor, ZstdError

MAGIC = b"IRE2"  # Isthmus relay envelope, version 2 (the signature over a digest)
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
SIGNATURE_CONTEXT = b"isthmus-relay-envelope-v1\x00"  # bridge requests (relay/signing.py)
ENVELOPE_CONTEXT = b"isthmus-relay-envelope-v2\x00"
FINGERPRINT_CONTEXT = b"isthmus-relay-site-v1\x00"
# Control messages older than this are refused (replays); chunks in the object store
# are checked against their manifest instead, so they carry no deadline.
MAX_AGE = 300.0


class EnvelopeError(ValueError):
    """An envelope that is malformed, not for us, not signed by its sender, or stale."""


@dataclass(frozen=True)
class SiteKeys:
    """A site's public keys: `kem` (X25519, encryption to it) and `sig` (Ed25519)."""

    kem: bytes
    sig: bytes

    @property
    def fingerprint(self) -> str:
        """SHA-256 of both keys, as 16 groups of 4 hex digits (what people compare)."""
        digest = hashlib.sha256(FINGERPRINT_CONTEXT + self.kem + self.sig).hexdigest()
        return ":".join(digest[i : i + 4] for i in range(0, 64, 4))

    def to_json(self) -> dict[str, str]:
        return {"kem": self.kem.hex(), "sig": self.sig.hex()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SiteKeys:
        try:
            kem, sig = bytes.fromhex(doc["kem"]), bytes.fromhex(doc["sig"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EnvelopeError(f"bad site keys: {exc}") from None
        if len(kem) != 32 or len(sig) != 32:
            raise EnvelopeError("bad site keys: X25519 and Ed25519 keys are 32 bytes")
        return cls(kem, sig)


class SiteIdentity:
    """The site's private keys, kept in one file (mode 0600) in the site's data folder."""

    def __init__(self, name: str, kem: X25519PrivateKey, sig: Ed25519PrivateKey) -> None:
        self.name = name
        self._kem = kem
        self._sig = sig
        self.keys = SiteKeys(_raw_public(kem.public_key()), _raw_public(sig.public_key()))

    @classmethod
    def create(cls, name: str) -> SiteIdentity:
        return cls(name, X25519PrivateKey.generate(), Ed25519PrivateKey.generate())

    def save(self, path: Path) -> None:
        """Write both private keys; the file is created 0600 and replaced atomically."""
        doc = {"site": self.name, "kem": _raw_private(self._kem), "sig": _raw_private(self._sig)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(doc, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> SiteIdentity:
        doc = json.loads(path.read_text())
        return cls(
            doc["site"],
            X25519PrivateKey.from_private_bytes(bytes.fromhex(doc["kem"])),
            Ed25519PrivateKey.from_private_bytes(bytes.fromhex(doc["sig"])),
        )

    def sign(self, data: bytes) -> bytes:
        return self._sig.sign(SIGNATURE_CONTEXT + data)

    def seal(self, recipient: str, keys: SiteKeys, header: dict[str, Any], body: bytes) -> bytes:
        """One envelope from this site to `recipient` (whose public keys are `keys`).

        `header` is sent in the clear: routing metadata only, never patient data."""
        head = dict(header, **{"from": self.name, "to": recipient, "ts": round(time.time(), 3)})
        head_bytes = json.dumps(head, sort_keys=True, separators=(",", ":")).encode()
        public = X25519PublicKey.from_public_bytes(keys.kem)
        ciphertext = SUITE.encrypt(body, public, info=head_bytes)
        signed = struct.pack(">I", len(head_bytes)) + head_bytes + ciphertext
        return MAGIC + self._sig.sign(_envelope_digest(signed)) + signed

    def open(self, data: bytes, sender_keys: Any, *, max_age: float | None = MAX_AGE) -> Opened:
        """Check and decrypt an envelope addressed to this site.

        `sender_keys(name)` gives the claimed sender's `SiteKeys` (from the directory,
        pinned) or None for a site we do not know.  Raises EnvelopeError."""
        header = peek_header(data)
        if header.get("to") != self.name:
            raise EnvelopeError(f"envelope for {header.get('to')!r}, not for {self.name!r}")
        keys = sender_keys(str(header.get("from")))
        if keys is None:
            raise EnvelopeError(f"envelope from unknown or revoked site {header.get('from')!r}")
        signature, signed = data[4:68], memoryview(data)[68:]
        try:
            Ed25519PublicKey.from_public_bytes(keys.sig).verify(signature, _envelope_digest(signed))
        except InvalidSignature:
            raise EnvelopeError(f"envelope not signed by {header['from']!r}") from None
        if max_age is not None and abs(time.time() - float(header.get("ts", 0))) > max_age:
            raise EnvelopeError("stale envelope (replayed, or the clocks disagree)")
        (size,) = struct.unpack_from(">I", signed)
        try:
            body = SUITE.decrypt(
                bytes(signed[4 + size :]), self._kem, info=bytes(signed[4 : 4 + size])
            )
        except (InvalidTag, ValueError):
            raise EnvelopeError("envelope does not decrypt") from None
        return Opened(header, body)


@dataclass(frozen=True)
class Opened:
    header: dict[str, Any]
    body: bytes


def _envelope_digest(signed: bytes | memoryview) -> bytes:
    """What an envelope's Ed25519 signature covers: the context and the SHA-256 of the
    signed part.  Ed25519 hashes its message twice with SHA-512, holding the GIL; a
    chunk of half a megabyte is hashed once here, by hashlib, without it."""
    return ENVELOPE_CONTEXT + hashlib.sha256(signed).digest()


def peek_header(data: bytes | memoryview) -> dict[str, Any]:
    """The clear header of an envelope, unchecked (for routing before `open`)."""
    data = bytes(data[: 4 + 64 + 4 + 65536]) if len(data) > 72 else bytes(data)
    if len(data) < 72 or data[:4] != MAGIC:
        raise EnvelopeError("not a relay envelope")
    (size,) = struct.unpack_from(">I", data, 68)
    try:
        header = json.loads(data[72 : 72 + size])
    except ValueError:
        raise EnvelopeError("envelope header is not JSON") from None
    if not isinstance(header, dict):
        raise EnvelopeError("envelope header is not an object")
    return header


ZSTD_LEVEL = 1  # the link, not the CPU, is the bottleneck: the fastest level that pays
WORTH = 0.9  # compressed bytes are kept only below this ratio


def compress(data: bytes) -> bytes:
    """Chunk bodies are compressed with Zstandard (RFC 8878) before they are sealed:
    level 1, about twice as fast as zlib's level 1 for a similar ratio on images, and
    three times faster to decompress.  One frame, its content size in the header."""
    return ZstdCompressor(level=ZSTD_LEVEL).compress(data)


def compress_if_worth(data: bytes) -> tuple[bytes, bool]:
    """(`data` compressed, True) when that shrinks it below WORTH, else (`data`,
    False): pixel data of noise does not shrink.  Compressing first and judging after
    costs less than judging a sample first: Zstandard passes over what does not
    shrink at several times its usual speed, and what shrinks is compressed once."""
    body = compress(data)
    if len(body) < WORTH * len(data):
        return body, True
    return data, False


def decompress(data: bytes, limit: int) -> bytes:
    """Decompress at most `limit` bytes (a chunk's or a manifest's declared size),
    refusing a decompression bomb or a frame that is not Zstandard (EnvelopeError)."""
    try:
        with ZstdDecompressor().stream_reader(data) as reader:
            out = reader.read(limit + 1)
    except ZstdError as exc:
        raise EnvelopeError(f"chunk does not decompress: {exc}") from None
    if len(out) > limit:
        raise EnvelopeError("chunk decompresses past its declared size")
    return bytes(out)


def _raw_public(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _raw_private(key: X25519PrivateKey | Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    ).hex()
