"""multipart/related bodies (RFC 2387, PS3.18 8.6.1.2): written as a stream, parsed from a file.

Responses are produced part by part so that a study of any size never sits in
memory; requests (STOW-RS) are spooled to a file and their parts located by offset,
as the body arrives (`PartScanner`), so that each part can be handed on as a
zero-copy view before the rest has come.
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
    scanner = PartScanner(body, boundary)
    try:  # the scanner's view is released also when the body is refused
        return scanner.finish()
    finally:
        scanner.release()


class PartScanner:
    """Locates the parts of a multipart body while it is still arriving.

    `body` has its final size from the start (a spool file sized by the request's
    Content-Length and mapped whole); `feed(available)` returns the parts that lie
    wholly within its first `available` bytes and were not returned before, `finish()`
    the rest, raising MultipartError for a body that is malformed or truncated (only
    `finish` judges: what is not yet written may decide).  Each search resumes where
    the last one stopped, so the body is searched once.
    """

    def __init__(self, body: bytes | mmap.mmap, boundary: str) -> None:
        self.body = body
        self.delimiter = b"--" + boundary.encode("latin-1")
        self.haystack = Haystack(body)
        self.parts: list[Part] = []
        self._next: int | None = None  # where the next delimiter line starts, once found
        self._closed = False
        self._search: tuple[bytes, int] = (b"", 0)  # the last search that found nothing
        self._resume = 0

    def feed(self, available: int) -> list[Part]:
        return self._scan(min(available, len(self.body)), final=False)

    def finish(self) -> list[Part]:
        return self._scan(len(self.body), final=True)

    def release(self) -> None:
        self.haystack.release()

    def _scan(self, available: int, final: bool) -> list[Part]:
        found: list[Part] = []
        if self._next is None:
            self._next = self._first_delimiter(available, final)
        while self._next is not None and not self._closed:
            part = self._part_at(self._next, available, final)
            if part is None:
                break
            found.append(part)
        return found

    def _first_delimiter(self, available: int, final: bool) -> int | None:
        delimiter = self.delimiter
        if available < len(delimiter) and not final:
            return None
        if bytes(self.body[: len(delimiter)]) == delimiter:
            return 0
        found = self._find(CRLF + delimiter, 0, available)
        if found >= 0:
            return found + 2
        if final:
            raise MultipartError("the body holds no part delimited by the boundary")
        return None

    def _part_at(self, at: int, available: int, final: bool) -> Part | None:
        """The part whose delimiter line starts at `at`; None when more bytes are
        needed, or at the close delimiter (then `_closed`)."""
        body, number = self.body, len(self.parts) + 1
        pos = at + len(self.delimiter)
        if pos + 2 > available and not final:
            return None
        if bytes(body[pos : pos + 2]) == b"--":
            self._closed = True
            return None
        line_end = self._find(CRLF, pos, available)
        if line_end < 0 or bytes(body[pos:line_end]).strip(b" \t"):
            if not final:  # what follows decides: wait for the whole body
                return None
            if pos >= len(body) or not bytes(body[pos:]).strip():
                if not self.parts:
                    raise MultipartError("the body holds no part")
                self._closed = True  # the body ends after a part, without its close marker
                return None
            raise MultipartError(f"part {number}: malformed delimiter line")
        head_end = self._find(CRLF + CRLF, line_end, available)
        if head_end < 0:
            if not final:
                return None
            raise MultipartError(f"part {number} is truncated (its headers do not end)")
        start = head_end + 4
        end = self._find(CRLF + self.delimiter, start, available)
        if end < 0:
            if not final:
                return None
            raise MultipartError(f"the body is truncated: part {number} has no closing boundary")
        part = Part(_headers(bytes(body[line_end + 2 : head_end])), start, end, len(self.parts))
        self.parts.append(part)
        self._next = end + 2
        return part

    def _find(self, needle: bytes, start: int, available: int) -> int:
        """`needle` in body[start:available], resuming the same search where it stopped."""
        begin = max(start, self._resume) if self._search == (needle, start) else start
        hit = self.haystack.find(needle, begin, available)
        if hit < 0:
            self._search, self._resume = (needle, start), max(start, available - len(needle) + 1)
        return hit


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
