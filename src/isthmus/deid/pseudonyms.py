"""Pseudonyms: the same input gives the same output within a project, and nothing else.

Every replacement value that must stay consistent (UIDs, patient and accession
identifiers, AE titles, the date shift of a patient) is an HMAC-SHA256 (RFC 2104,
Python's `hmac`) of the original under the project's secret key, which the archive
keeps in its index (archive/projects.py).  So two runs in one project agree without a
mapping table, two projects never share a pseudonym, and without the key nobody can
go back from pseudonym to original (nor test a guess).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_UUID_VERSION_8 = 0x8 << 76  # RFC 9562 5.8: custom (here: keyed-hash) UUID
_UUID_VARIANT = 0b10 << 62


class Pseudonyms:
    """Keyed-hash pseudonyms of one project."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a pseudonym key needs at least 128 bits")
        self._key = key

    def digest(self, purpose: str, *parts: str) -> bytes:
        """HMAC-SHA256 of the parts, separated by NUL so that ("a","bc") ≠ ("ab","c")."""
        message = "\0".join((purpose, *parts)).encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """A UID derived from a UUID (PS3.5 B.2: "2.25." and the UUID as an integer),
        the UUID being 122 bits of the keyed hash with RFC 9562's version 8 bits."""
        value = int.from_bytes(self.digest("uid", original)[:16], "big")
        value &= ~(0xF << 76) & ~(0b11 << 62)
        value |= _UUID_VERSION_8 | _UUID_VARIANT
        return f"2.25.{value}"

    def identifier(self, purpose: str, *parts: str, prefix: str = "", length: int = 16) -> str:
        """A short code (upper-case base32 of the hash), `prefix` + characters, at most
        `length` long: fits SH (16) and the Patient ID (LO, 64)."""
        text = base64.b32encode(self.digest(purpose, *parts)).decode("ascii").rstrip("=")
        return prefix + text[: length - len(prefix)]

    def days(self, purpose: str, *parts: str, span: int = 3652) -> int:
        """A number of days in 1..span (about ten years), fixed per input."""
        return 1 + int.from_bytes(self.digest(purpose, *parts)[:8], "big") % span
