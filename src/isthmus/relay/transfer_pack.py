"""Packing the parts of a transfer into fewer objects: a group commit of PUTs.

A source sends instances from several C-GET associations at once, and each waits for
its object to be stored before its announcement and its C-STORE response.  Every PUT
costs the object store a request (SeaweedFS spends about 3 ms of CPU per PUT and GET of
a 200 KB object here, as much again as for the bytes; AWS S3 bills and throttles per
request), so while one PUT is in flight the parts that become ready wait for it and
then go together, in one object, sealed once.  A part that finds no PUT in flight goes
at once, alone: packing never delays an instance for another.

An object holds one or more parts (docs/relay.md "On the wire"): its clear header lists
them as `contents`, each `{"seq", "part", "size" (before compression), "zstd",
"length" (bytes in the body)}`, in the order their bytes follow each other in the sealed
body.  It is named after its first part's position (`<seq>.<part>`), so that names stay
unique and the positional URLs both ends ask for ahead of time cover it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from isthmus.relay.crypto import Opened
from isthmus.relay.transfer_wire import TransferError, part_name

PACK_BYTES = 4 * 1024 * 1024  # at most this many body bytes in one object (or one part)
PACK_PARTS = 16  # at most this many parts in one object


@dataclass(frozen=True)
class Part:
    """Part `part` of instance `seq`, its bytes as they go in the object."""

    seq: int
    part: int
    size: int  # before compression
    zstd: bool
    body: bytes

    def content(self) -> dict[str, Any]:
        """This part's entry in its object's `contents`."""
        return {
            "seq": self.seq,
            "part": self.part,
            "size": self.size,
            "zstd": self.zstd,
            "length": len(self.body),
        }


@dataclass
class _Ticket:
    part: Part
    done: bool = False
    name: str = ""
    error: BaseException | None = None


class Packer:
    """Stores parts through `put(name, contents, body)`, several in one call when
    several wait; `store` returns the name of the object that holds the part once it
    is stored, or raises what `put` raised (every part of that object fails)."""

    def __init__(
        self,
        put: Callable[[str, list[dict[str, Any]], bytes], None],
        *,
        max_bytes: int = PACK_BYTES,
        max_parts: int = PACK_PARTS,
    ) -> None:
        self._put, self.max_bytes, self.max_parts = put, max_bytes, max_parts
        self._cond = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._busy = False

    def store(self, part: Part) -> str:
        ticket = _Ticket(part)
        with self._cond:
            self._waiting.append(ticket)
            while not ticket.done:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True  # this thread stores the next object, then looks again
                pack = self._take()
                self._cond.release()
                try:
                    name, error = self._store(pack)
                finally:
                    self._cond.acquire()
                for each in pack:
                    each.done, each.name, each.error = True, name, error
                self._busy = False
                self._cond.notify_all()
        if ticket.error is not None:
            raise ticket.error
        return ticket.name

    def _take(self) -> list[_Ticket]:
        """The longest run of waiting parts, oldest first, within the bounds."""
        pack, size = [self._waiting[0]], len(self._waiting[0].part.body)
        for ticket in self._waiting[1:]:
            size += len(ticket.part.body)
            if size > self.max_bytes or len(pack) >= self.max_parts:
                break
            pack.append(ticket)
        del self._waiting[: len(pack)]
        return pack

    def _store(self, pack: list[_Ticket]) -> tuple[str, BaseException | None]:
        first = pack[0].part
        name = part_name(first.seq, first.part)
        try:
            self._put(name, [t.part.content() for t in pack], b"".join(t.part.body for t in pack))
        except Exception as exc:  # every part of the object failed alike
            return name, exc
        return name, None


def unpack(contents: Any, body: bytes, seq: int, part: int) -> tuple[dict[str, Any], bytes]:
    """The entry and the bytes of part `part` of instance `seq` in an object whose
    clear header lists `contents`; TransferError when it is not there or the lengths
    do not add up to the body."""
    if not isinstance(contents, list):
        raise TransferError("an instance object without contents")
    offset, found = 0, None
    for entry in contents:
        if not isinstance(entry, dict) or not isinstance(entry.get("length"), int):
            raise TransferError("a malformed contents entry")
        if entry.get("seq") == seq and entry.get("part") == part:
            found = (entry, body[offset : offset + entry["length"]])
        offset += entry["length"]
    if offset != len(body):
        raise TransferError(f"contents say {offset} bytes, the object holds {len(body)}")
    if found is None:
        raise TransferError(f"the object does not hold part {part} of instance {seq}")
    return found


@dataclass
class _Entry:
    future: Future[Opened]
    size: int = 0
    taken: int = 0


class SharedObjects:
    """The receiving side: an object that holds several parts is fetched and opened
    (`load`) once for all of them, by whichever fetch asks first, the others waiting
    for it.  An entry goes when every part it lists was taken, or oldest first past
    `max_bytes`; `forget` drops one whose part failed verification, so that the next
    attempt fetches it again."""

    def __init__(self, load: Callable[[str, str], Opened], max_bytes: int = 64 << 20) -> None:
        self._load, self.max_bytes = load, max_bytes
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}

    def part(
        self, transfer: str, name: str, seq: int, part: int
    ) -> tuple[Opened, dict[str, Any], bytes]:
        """The opened object `name`, and the entry and bytes of the part in it."""
        key = (transfer, name)
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if entry is None:
                entry = self._entries[key] = _Entry(Future())
        if owner:
            self._fill(key, entry)
        opened = entry.future.result()  # what `load` raised, to every part of the object
        try:
            content, body = unpack(opened.header.get("contents"), opened.body, seq, part)
        except TransferError:
            self.forget(transfer, name)
            raise
        with self._lock:
            entry.taken += 1
            if entry.taken >= len(opened.header["contents"]):
                self._drop(key, entry)
        return opened, content, body

    def forget(self, transfer: str, name: str) -> None:
        with self._lock:
            entry = self._entries.get((transfer, name))
            if entry is not None:
                self._drop((transfer, name), entry)

    def _fill(self, key: tuple[str, str], entry: _Entry) -> None:
        try:
            opened = self._load(*key)
        except BaseException as exc:
            entry.future.set_exception(exc)
            with self._lock:
                self._drop(key, entry)
            return
        entry.size = len(opened.body)
        entry.future.set_result(opened)
        with self._lock:
            total = sum(e.size for e in self._entries.values())
            for old_key, old in list(self._entries.items()):
                if total <= self.max_bytes or old is entry:
                    break
                total -= old.size
                self._drop(old_key, old)

    def _drop(self, key: tuple[str, str], entry: _Entry) -> None:
        """Remove `entry` if it is still the one under `key` (the lock held)."""
        if self._entries.get(key) is entry:
            del self._entries[key]
