"""multipart/related bodies (RFC 2387, PS3.18 8.6.1.2): written as a stream, parsed from a file.

Responses are produced part by part so that a study of any size never sits in
memory; requests (STOW-RS) are first spooled to a file and their parts located by
offset, so that each part can be handed on as a zero-copy view.
"""

from __future__ import annotations

import mmap
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from isthmus.web.haystack import Haystack
from isthmus.web.negotiation import parse_media_type

CRLF = b"\r\n"


def new_boundary() -> str:
    """A boundary that cannot occur in DICOM content by chance (128 random bits)."""
    return "isthmus-" + secrets.token_hex(16)


class MultipartWriter:
    """Produces the framing bytes of a multipart/related body, part by part."""

    def __init__(self, boundary: str | None = None) -> None:
        self.boundary = boundary or new_boundary()
        self._first = True

    def part(self, content_type: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
        """Bytes that open a part: delimiter and part headers (RFC 2046 5.1.1)."""
        lines = [f"Content-Type: {content_type}"]
        lines += [f"{name}: {value}" for name, value in headers]
        prefix = b"" if self._first else CRLF
        self._first = False
        return (
            prefix + f"--{self.boundary}\r\n".encode() + "\r\n".join(lines).encode() + CRLF + CRLF
        )

    def close(self) -> bytes:
        """The close delimiter."""
        if self._first:  # no part at all: an empty multipart still needs a delimiter
            return f"--{self.boundary}--\r\n".encode()
        return f"\r\n--{self.boundary}--\r\n".encode()


class MultipartError(ValueError):
    """A request body that is not the multipart/related it claims to be."""


@dataclass
class Part:
    """One body part: its headers (lower-case names) and where its content lies."""

    headers: dict[str, str]
    start: int
    end: int
    index: int = 0
    params: dict[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        media_type, self.params = parse_media_type(self.headers.get("content-type", ""))
        return media_type

    @property
    def size(self) -> int:
        return self.end - self.start


def boundary_of(content_type: str) -> tuple[str, dict[str, str]]:
    """The boundary and parameters of a `multipart/related` Content-Type."""
    media_type, params = parse_media_type(content_type)
    if media_type != "multipart/related":
        raise MultipartError(f"expected multipart/related, got {media_type or 'nothing'}")
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise MultipartError("the multipart/related Content-Type has no usable boundary")
    return boundary, params


def parse_parts(body: bytes | mmap.mmap, boundary: str) -> list[Part]:
    """Locate every part of a multipart body (RFC 2046 5.1.1); raises MultipartError.

    A body that ends before its close delimiter is truncated: that is an error for
    the whole request, so that nothing is half-accepted.
    """
    delimiter = b"--" + boundary.encode("latin-1")
    with Haystack(body) as haystack:  # released also when the body is refused
        return _parts(body, haystack, delimiter)


def _parts(body: bytes | mmap.mmap, haystack: Haystack, delimiter: bytes) -> list[Part]:
    if bytes(body[: len(delimiter)]) == delimiter:
        pos = 0
    else:
        found = haystack.find(CRLF + delimiter)
        if found < 0:
            raise MultipartError("the body holds no part delimited by the boundary")
        pos = found + 2
    parts: list[Part] = []
    size = len(body)
    while True:
        pos += len(delimiter)
        if bytes(body[pos : pos + 2]) == b"--":
            return parts
        line_end = haystack.find(CRLF, pos)
        if line_end < 0 or bytes(body[pos:line_end]).strip(b" \t"):
            if pos >= size or not bytes(body[pos:]).strip():
                return _closed_without_marker(parts)
            raise MultipartError(f"part {len(parts) + 1}: malformed delimiter line")
        head_end = haystack.find(CRLF + CRLF, line_end)
        if head_end < 0:
            raise MultipartError(f"part {len(parts) + 1} is truncated (its headers do not end)")
        headers = _headers(bytes(body[line_end + 2 : head_end]))
        start = head_end + 4
        end = haystack.find(CRLF + delimiter, start)
        if end < 0:
            raise MultipartError(
                f"the body is truncated: part {len(parts) + 1} has no closing boundary"
            )
        parts.append(Part(headers, start, end, len(parts)))
        pos = end + 2


def _closed_without_marker(parts: list[Part]) -> list[Part]:
    if not parts:
        raise MultipartError("the body holds no part")
    return parts


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    if block.startswith(CRLF):
        block = block[2:]
    for line in block.split(CRLF):
        if not line.strip():
            continue
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise MultipartError(f"malformed part header {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers
