"""A brake on guessing at ``POST /api/p2p/{id}/offer``: wrong proofs are counted in token
buckets, one per link id and one per client address (docs/p2p.md, "Threat model").

Each bucket holds `capacity` tokens and gets one back every `refill` seconds; a wrong
proof takes one.  An offer whose link or address bucket is empty is answered 429 with
Retry-After (RFC 6585 §4) *before* its proof is checked, so a guesser learns nothing
more; right proofs take no token, so a link's owner is only held up while someone is
hammering that same link.  Buckets live in memory (per process) and the table is
bounded: full buckets are dropped when it grows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

MAX_BUCKETS = 10_000


class Bucket:
    """Tokens at `stamp`; refilled lazily, one per `refill` seconds up to `capacity`."""

    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens, self.stamp = tokens, stamp


class OfferLimiter:
    """Wrong-proof buckets keyed by ("link", id) and ("client", address)."""

    def __init__(
        self,
        capacity: int = 5,
        refill: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity, self.refill, self.clock = capacity, refill, clock
        self._buckets: dict[tuple[str, str], Bucket] = {}

    def _bucket(self, key: tuple[str, str], now: float) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._forget_full(now)
            bucket = self._buckets[key] = Bucket(float(self.capacity), now)
        else:
            gained = (now - bucket.stamp) / self.refill
            bucket.tokens, bucket.stamp = min(self.capacity, bucket.tokens + gained), now
        return bucket

    def _forget_full(self, now: float) -> None:
        for key in list(self._buckets):
            if self._bucket(key, now).tokens >= self.capacity:
                del self._buckets[key]
        if len(self._buckets) >= MAX_BUCKETS:  # all busy: forget the oldest half
            for key in list(self._buckets)[: MAX_BUCKETS // 2]:
                del self._buckets[key]

    def retry_after(self, link_id: str, client: str) -> int:
        """0 when an offer may be checked; else whole seconds until it may."""
        now = self.clock()
        wait = 0.0
        for key in (("link", link_id), ("client", client)):
            bucket = self._bucket(key, now)
            if bucket.tokens < 1:
                wait = max(wait, (1 - bucket.tokens) * self.refill)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, link_id: str, client: str) -> None:
        """A wrong proof for `link_id` from `client`: one token from each bucket."""
        now = self.clock()
        for key in (("link", link_id), ("client", client)):
            bucket = self._bucket(key, now)
            bucket.tokens = max(0.0, bucket.tokens - 1)
