"""The cyclic garbage collector's settings for a long-running server process.

CPython collects its youngest generation after every 2,000 net new container objects
(dicts, lists…) and then looks at all of them.  A server's answers are built of such
objects and almost none of them is in a cycle: a QIDO-RS answer of 1,000 studies
allocates about 31,000 dicts and lists that all live until it is sent, and with the
defaults about one instruction in ten of that search went to collections that freed
nothing (callgrind, docs/performance.md).  `settle` is called once the process has
started: what start-up allocated (modules, the application) is frozen out of every
later collection (`gc.freeze`), and the youngest generation may grow to `YOUNG`
objects, so that a large answer meets one collection instead of fifteen.  Cyclic
garbage still goes, a little later: at most `YOUNG` objects' worth.
"""

from __future__ import annotations

import gc

YOUNG = 50_000


def settle() -> None:
    """Freeze what start-up made, and collect the youngest generation less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
