"""``runner/garbage.py``: the collector's settings come back after a delivery, nested or not."""

from __future__ import annotations

import gc

from revseg.runner.garbage import YOUNG_THRESHOLD, fewer_collections


def test_thresholds_and_frozen_objects_are_restored() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold()[0] >= YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
        with fewer_collections():  # a second delivery (another thread) inside the first
            pass
        assert gc.get_threshold()[0] >= YOUNG_THRESHOLD
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cycles_are_still_collected() -> None:
    class Node:
        other: object = None

    with fewer_collections():
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2
