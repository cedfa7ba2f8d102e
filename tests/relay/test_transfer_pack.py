"""relay/transfer_pack: parts waiting for a PUT in flight share the next object; the
receiving side fetches such an object once for all its parts."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from isthmus.relay.crypto import Opened
from isthmus.relay.transfer_pack import Packer, Part, SharedObjects, unpack
from isthmus.relay.transfer_wire import TransferError


class _Store:
    """What `Packer` puts, with the first PUT held until `release` (so that parts
    queue behind it, as they do behind a PUT to a busy object store)."""

    def __init__(self, fail: bool = False) -> None:
        self.objects: dict[str, tuple[list[dict[str, Any]], bytes]] = {}
        self.first_put = threading.Event()
        self.release = threading.Event()
        self.fail = fail

    def put(self, name: str, contents: list[dict[str, Any]], body: bytes) -> None:
        if not self.first_put.is_set():
            self.first_put.set()
            assert self.release.wait(10)
        if self.fail:
            raise ConnectionError("object store down")
        self.objects[name] = (contents, body)


def _part(seq: int, size: int = 1000) -> Part:
    return Part(seq, 0, size, False, bytes([seq % 256]) * size)


def _store_from_threads(packer: Packer, store: _Store, seqs: range) -> dict[int, Any]:
    results: dict[int, Any] = {}

    def one(seq: int) -> None:
        try:
            results[seq] = packer.store(_part(seq))
        except Exception as exc:
            results[seq] = exc

    first = threading.Thread(target=one, args=(seqs[0],))
    first.start()
    assert store.first_put.wait(10)  # the first part's PUT is in flight…
    rest = [threading.Thread(target=one, args=(s,)) for s in seqs[1:]]
    for t in rest:
        t.start()
    _until_queued(packer, len(rest))  # …while the others queue behind it
    store.release.set()
    for t in [first, *rest]:
        t.join(10)
    return results


def _until_queued(packer: Packer, count: int) -> None:
    for _ in range(1000):
        with packer._cond:
            if len(packer._waiting) >= count:
                return
        threading.Event().wait(0.01)
    raise AssertionError("the parts did not queue")


def test_parts_waiting_behind_a_put_go_together_and_each_is_found_again() -> None:
    store = _Store()
    packer = Packer(store.put, max_parts=4)
    results = _store_from_threads(packer, store, range(9))
    assert results[0] == "0.0" and len(store.objects) == 1 + 2  # 1 alone, then 4 + 4
    assert sorted(results.values()) == sorted(
        name for name, (contents, _) in store.objects.items() for _ in contents
    )
    for seq, name in results.items():
        contents, body = store.objects[name]
        entry, data = unpack(contents, body, seq, 0)
        assert data == _part(seq).body and entry["size"] == 1000
        assert name == f"{contents[0]['seq']}.0"  # named after its first part's position


def test_a_lone_part_is_stored_at_once_and_alone() -> None:
    store = _Store()
    store.first_put.set()
    packer = Packer(store.put)
    assert packer.store(_part(7)) == "7.0"
    assert [len(c) for c, _ in store.objects.values()] == [1]


def test_an_object_is_bounded_in_bytes() -> None:
    store = _Store()
    packer = Packer(store.put, max_bytes=2500)
    _store_from_threads(packer, store, range(7))
    assert max(len(body) for _, body in store.objects.values()) <= 2500


def test_a_failed_put_fails_every_part_of_that_object() -> None:
    store = _Store(fail=True)
    packer = Packer(store.put)
    results = _store_from_threads(packer, store, range(5))
    assert all(isinstance(r, ConnectionError) for r in results.values())


def test_contents_that_do_not_add_up_or_lack_the_part_are_refused() -> None:
    contents = [_part(1).content(), _part(2).content()]
    body = _part(1).body + _part(2).body
    with pytest.raises(TransferError, match="does not hold part 0 of instance 3"):
        unpack(contents, body, 3, 0)
    with pytest.raises(TransferError, match="contents say"):
        unpack(contents, body[:-1], 1, 0)
    with pytest.raises(TransferError, match="without contents"):
        unpack(None, body, 1, 0)


def test_an_object_of_several_parts_is_fetched_once_and_dropped_when_all_are_taken() -> None:
    contents = [_part(1).content(), _part(2).content()]
    loads: list[str] = []

    def load(transfer: str, name: str) -> Opened:
        loads.append(name)
        return Opened({"contents": contents}, _part(1).body + _part(2).body)

    shared = SharedObjects(load)
    assert shared.part("t", "1.0", 2, 0)[2] == _part(2).body
    assert shared.part("t", "1.0", 1, 0)[2] == _part(1).body
    assert loads == ["1.0"]
    shared.part("t", "1.0", 1, 0)  # every part was taken: asked again, fetched again
    assert loads == ["1.0", "1.0"]


def test_a_failed_fetch_is_not_kept() -> None:
    calls = []

    def load(transfer: str, name: str) -> Opened:
        calls.append(name)
        if len(calls) == 1:
            raise ConnectionError("object store down")
        return Opened({"contents": [_part(1).content()]}, _part(1).body)

    shared = SharedObjects(load)
    with pytest.raises(ConnectionError):
        shared.part("t", "1.0", 1, 0)
    assert shared.part("t", "1.0", 1, 0)[2] == _part(1).body
