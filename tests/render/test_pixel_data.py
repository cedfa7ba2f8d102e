"""render.pixel_data.HeaderCache: a header parsed once per blob key, read through the caller's reader."""

from __future__ import annotations

import numpy as np
from tests.render.conftest import make_image, part10
from tests.render.test_frames import _archive_pixel_offset

from isthmus.render.pixel_data import HeaderCache, memory_reader, open_at


def _instance(seed: int) -> tuple[bytes, int]:
    values = np.random.default_rng(seed).integers(0, 4000, size=(64, 64), dtype=np.uint16)
    data = part10(make_image(values, signed=False))
    return data, _archive_pixel_offset(data)


def _logged(data: bytes, reads: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
    inner = memory_reader(data)

    def read(position: int, length: int) -> bytes:
        reads.append((position, length))
        return inner(position, length)

    return read


def test_a_second_opening_reads_no_header_and_reads_frames_through_the_new_reader() -> None:
    data, offset = _instance(1)
    cache = HeaderCache()
    first: list[tuple[int, int]] = []
    cache.open_at("ab/one", _logged(data, first), offset)
    assert first == [(0, offset)]
    second: list[tuple[int, int]] = []
    pixels = cache.open_at("ab/one", _logged(data, second), offset)
    assert second == []
    pixels.read(offset, 16)
    assert second == [(offset, 16)]


def test_the_cached_description_is_the_one_parsed_afresh() -> None:
    data, offset = _instance(2)
    cache = HeaderCache()
    cache.open_at("ab/one", memory_reader(data), offset)
    cached = cache.open_at("ab/one", memory_reader(data), offset)
    fresh = open_at(memory_reader(data), offset)
    assert (cached.rows, cached.columns, cached.offset, cached.length) == (
        fresh.rows,
        fresh.columns,
        fresh.offset,
        fresh.length,
    )
    assert cached.dataset == fresh.dataset


def test_other_keys_are_parsed_for_themselves_and_the_oldest_is_forgotten() -> None:
    data, offset = _instance(3)
    cache = HeaderCache(max_bytes=4 * offset)  # four headers of this size
    for name in ("one", "two", "three", "four"):
        cache.open_at(f"ab/{name}", memory_reader(data), offset)
    reads: list[tuple[int, int]] = []
    cache.open_at("ab/two", _logged(data, reads), offset)
    assert reads == []  # still there
    cache.open_at("ab/five", _logged(data, reads), offset)
    assert reads == [(0, offset)]
    reads.clear()
    cache.open_at("ab/one", _logged(data, reads), offset)
    assert reads == [(0, offset)]  # the oldest, forgotten: parsed again


def test_a_header_larger_than_a_quarter_of_the_cache_is_not_kept() -> None:
    data, offset = _instance(5)
    cache = HeaderCache(max_bytes=4 * offset - 4)
    reads: list[tuple[int, int]] = []
    cache.open_at("ab/big", _logged(data, reads), offset)
    cache.open_at("ab/big", _logged(data, reads), offset)
    assert reads == [(0, offset), (0, offset)]
