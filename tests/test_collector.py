"""The garbage collector's settings of a server process (isthmus.collector)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from isthmus import collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_settle_freezes_what_start_up_made_and_collects_the_young_less_often() -> None:
    before = gc.get_threshold()
    made_at_start_up = [{"vr": "CS"} for _ in range(10)]
    collector.settle()
    assert gc.get_freeze_count() > len(made_at_start_up)
    assert gc.get_threshold() == (collector.YOUNG, before[1], before[2])


@pytest.mark.usefixtures("restored_collector")
def test_cyclic_garbage_made_after_settling_goes_without_an_explicit_collection() -> None:
    collector.settle()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    kept = [[] for _ in range(2 * collector.YOUNG)]  # young containers: a collection
    assert gone() is None
    assert len(kept) == 2 * collector.YOUNG
