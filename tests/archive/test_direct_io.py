"""Files written around the page cache: whole, at their true length, whatever the chunks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isthmus.archive import direct_io
from isthmus.archive.direct_io import ALIGN, STAGING


def written(path: Path, chunks: list[bytes], direct: bool = True) -> direct_io.DirectFile:
    file = direct_io.create(path, direct=direct)
    try:
        assert file.write_all(chunks) == sum(len(c) for c in chunks)
    finally:
        os.close(file.fd)
    return file


@pytest.mark.parametrize(
    "size", [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, STAGING - 1, STAGING, STAGING + 1, 3 * STAGING + 5]
)
def test_a_file_holds_exactly_its_bytes_at_every_size_around_the_alignment(
    tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    written(tmp_path / "f", [data])
    assert (tmp_path / "f").read_bytes() == data


def test_many_small_unaligned_chunks_are_written_in_order(tmp_path: Path) -> None:
    chunks = [os.urandom(n) for n in (132, 7, 4096, 1, 65_537, 300_001, 13)] * 5
    written(tmp_path / "f", chunks)
    assert (tmp_path / "f").read_bytes() == b"".join(chunks)


def test_the_padding_of_an_earlier_longer_file_never_leaks_into_a_shorter_one(
    tmp_path: Path,
) -> None:
    written(tmp_path / "long", [b"\xff" * (2 * ALIGN + 100)])
    written(tmp_path / "short", [b"ab"])
    assert (tmp_path / "short").read_bytes() == b"ab"


def test_an_unaligned_block_is_still_written_whole(tmp_path: Path) -> None:
    """A block the device cannot take directly (here an unaligned length, which Linux
    refuses with EINVAL on most file systems) is finished with ordinary writes."""
    file = direct_io.create(tmp_path / "f", direct=True)
    try:
        file._write(memoryview(b"0123456789" * 100))
    finally:
        os.close(file.fd)
    assert (tmp_path / "f").read_bytes() == b"0123456789" * 100


def test_ordinary_writes_when_direct_io_is_not_asked_for(tmp_path: Path) -> None:
    file = written(tmp_path / "f", [b"meta", b"dataset"], direct=False)
    assert not file.direct
    assert (tmp_path / "f").read_bytes() == b"metadataset"
