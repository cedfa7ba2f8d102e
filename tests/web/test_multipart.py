"""multipart/related framing: what the writer produces, the parser reads back."""

from __future__ import annotations

import pytest

from isthmus.web.multipart import MultipartError, MultipartWriter, boundary_of, parse_parts


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
