"""multipart/related framing: what the writer produces, the parser reads back."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.web.multipart import (
    MultipartError,
    MultipartWriter,
    Part,
    PartScanner,
    boundary_of,
    parse_parts,
)


def written(parts: list[bytes]) -> tuple[bytes, str]:
    writer = MultipartWriter()
    body = b"".join(writer.part("application/octet-stream") + p for p in parts) + writer.close()
    return body, writer.boundary


def test_round_trip_keeps_contents_exactly():
    contents = [b"", b"\r\n--not-the-boundary\r\n", bytes(range(256)) * 10]
    body, boundary = written(contents)
    parts = parse_parts(body, boundary)
    assert [body[p.start : p.end] for p in parts] == contents
    assert parts[0].headers["content-type"] == "application/octet-stream"


def test_preamble_and_quoted_boundary_as_dicomweb_client_sends():
    body = b"\r\n--xyz\r\nContent-Type: application/dicom\r\n\r\nDATA\r\n--xyz--"
    boundary, params = boundary_of('multipart/related; type="application/dicom"; boundary="xyz"')
    assert boundary == "xyz" and params["type"] == "application/dicom"
    [part] = parse_parts(body, boundary)
    assert body[part.start : part.end] == b"DATA"


def test_truncated_body_is_an_error():
    body, boundary = written([b"a" * 100, b"b" * 100])
    with pytest.raises(MultipartError, match="truncated"):
        parse_parts(body[:-60], boundary)


def test_body_without_boundary_is_an_error():
    with pytest.raises(MultipartError):
        parse_parts(b"just some bytes", "xyz")


def test_content_type_without_boundary_is_an_error():
    with pytest.raises(MultipartError):
        boundary_of('multipart/related; type="application/dicom"')
    with pytest.raises(MultipartError):
        boundary_of("application/dicom")


def _outcome(run: Callable[[], list[Part]]) -> object:
    try:
        return [(p.start, p.end, p.index, p.headers) for p in run()]
    except MultipartError as exc:
        return str(exc)


BODIES = st.builds(
    lambda contents, cut, junk: (contents, cut, junk),
    st.lists(st.binary(max_size=300), max_size=4),
    st.one_of(st.none(), st.integers(1, 200)),
    st.sampled_from([b"", b"preamble\r\n", b"  \r\n", b"\r\n--x"]),
)


@settings(max_examples=max(300, settings.default.max_examples))
@given(body=BODIES, splits=st.lists(st.integers(0, 2000), max_size=8))
def test_parts_found_while_the_body_arrives_are_those_of_the_whole_body(body, splits):
    """A body fed in pieces (the bytes not yet arrived are zeros, as in a spool file
    sized by its Content-Length) gives the same parts, or the same error, as whole."""
    contents, cut, junk = body
    whole, boundary = written(contents)
    whole = junk + whole
    if cut is not None:
        whole = whole[: max(0, len(whole) - cut)]
    expected = _outcome(lambda: parse_parts(whole, boundary))
    arriving = bytearray(len(whole))
    scanner = PartScanner(arriving, boundary)

    def fed() -> list[Part]:
        found, done = [], 0
        for at in sorted(min(s, len(whole)) for s in splits):
            arriving[done:at] = whole[done:at]
            done = max(done, at)
            found += scanner.feed(done)
        arriving[done:] = whole[done:]
        return found + scanner.finish()

    try:
        assert _outcome(fed) == expected
    finally:
        scanner.release()
