"""``runner/operations.py``: the fast Operation constructor is the dataclass's own."""

from __future__ import annotations

import dataclasses

import pytest

from revseg.destinations.base import Operation
from revseg.runner.operations import _operation


def test_fast_operation_equals_the_dataclass() -> None:
    fast = _operation("add", "7", {"email": "a@b.co"}, {"email": "a@b.co"}, None)
    slow = Operation("add", "7", {"email": "a@b.co"}, {"email": "a@b.co"}, None)
    assert fast == slow and repr(fast) == repr(slow)
    assert vars(fast) == {f.name: getattr(slow, f.name) for f in dataclasses.fields(Operation)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.op = "remove"  # type: ignore[misc]
