"""The destination registry: built-ins, entry points, and "did you mean"."""

from __future__ import annotations

import pytest

from revseg.destinations import registry
from revseg.destinations.base import Batch, BatchResult, Destination
from revseg.destinations.file import FileDestination
from revseg.destinations.webhook import WebhookDestination
from revseg.errors import UsageError


def test_builtins() -> None:
    assert registry.get_destination_type("webhook") is WebhookDestination
    assert registry.get_destination_type("file") is FileDestination
    assert {"file", "webhook"} <= set(registry.available_types())


def test_unknown_type_suggests_the_closest() -> None:
    with pytest.raises(KeyError) as info:
        registry.get_destination_type("webhok")
    assert str(info.value) == "unknown destination type 'webhok' (did you mean 'webhook'?)"
    assert isinstance(info.value, UsageError)
    with pytest.raises(KeyError, match=r"available: .*file.*webhook"):
        registry.get_destination_type("zzzzzz")


def test_registered_types_and_builtin_names_are_protected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Custom(Destination):
        def send(self, batch: Batch) -> BatchResult:
            return BatchResult()

    monkeypatch.setattr(registry, "_registered", {})
    registry.register_destination_type("custom", Custom)
    assert registry.get_destination_type("custom") is Custom
    assert "custom" in registry.available_types()
    with pytest.raises(ValueError, match="built in"):
        registry.register_destination_type("webhook", Custom)


def test_broken_entry_point_fails_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        registry,
        "_entry_point_targets",
        lambda: {"broken": "no_such_module_xyz:Dest", "notdest": "json:dumps"},
    )
    with pytest.raises(UsageError, match="'broken'.*failed to load"):
        registry.get_destination_type("broken")
    with pytest.raises(UsageError, match="not a Destination subclass"):
        registry.get_destination_type("notdest")
