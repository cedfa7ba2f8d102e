"""web.haystack.Haystack: `find` answers as `bytes.find` does, over bytes and mmap."""

from __future__ import annotations

import mmap
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from isthmus.web.haystack import Haystack


@given(
    st.binary(max_size=300),
    st.binary(min_size=0, max_size=6),
    st.integers(min_value=-5, max_value=310),
)
def test_find_answers_as_bytes_find(body: bytes, needle: bytes, start: int) -> None:
    body = body + needle + body[:7]  # often present, sometimes more than once
    assert Haystack(body).find(needle, start) == body.find(needle, start)


def test_find_over_a_mapped_file_and_the_mapping_closes_after(tmp_path: Path) -> None:
    data = b"x" * 100_000 + b"\r\n--boundary" + b"y" * 10
    (tmp_path / "body").write_bytes(data)
    with open(tmp_path / "body", "rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        haystack = Haystack(mapped)
        assert haystack.find(b"\r\n--boundary") == 100_000
        assert haystack.find(b"\r\n--boundary", 100_001) == -1
        del haystack
        mapped.close()


def test_an_empty_body_holds_nothing_but_the_empty_needle() -> None:
    assert Haystack(b"").find(b"--") == -1
    assert Haystack(b"").find(b"") == 0
