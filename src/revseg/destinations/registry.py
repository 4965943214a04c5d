"""The registry of destination types: built-ins listed here, third parties via entry points.

A third-party package registers ``my_api = "my_pkg.dest:MyDestination"`` in the
``revseg.destinations`` entry-point group. Nothing is imported until a type is asked for,
so ``revseg --help`` does not pay for every plugin's dependencies. A built-in name cannot
be taken over by a plugin; an unknown name fails with a "did you mean" suggestion.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points

from revseg.destinations.base import Destination
from revseg.errors import UsageError

ENTRY_POINT_GROUP = "revseg.destinations"

#: built-in types: name -> "module:attribute", imported on first use.
BUILTIN: dict[str, str] = {
    "file": "revseg.destinations.file:FileDestination",
    "webhook": "revseg.destinations.webhook:WebhookDestination",
    "meta": "revseg.destinations.meta:MetaDestination",
    "linkedin": "revseg.destinations.linkedin:LinkedInDestination",
    "google_ads": "revseg.destinations.google_ads:GoogleAdsDestination",
    "iterable": "revseg.destinations.iterable:IterableDestination",
    "mailchimp": "revseg.destinations.mailchimp:MailchimpDestination",
    "sendgrid": "revseg.destinations.sendgrid:SendgridDestination",
    "braze": "revseg.destinations.braze:BrazeDestination",
    "klaviyo": "revseg.destinations.klaviyo:KlaviyoDestination",
    "twilio": "revseg.destinations.twilio:TwilioDestination",
}

_loaded: dict[str, type[Destination]] = {}
_registered: dict[str, type[Destination]] = {}


class UnknownDestinationTypeError(UsageError, KeyError):
    """No destination type of that name is built in or installed."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"available: {', '.join(known)}"
        super().__init__(f"unknown destination type '{name}' ({hint})")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register_destination_type(name: str, cls: type[Destination]) -> None:
    """Register a type from code (tests, embedding); wins over entry points, not built-ins."""
    if name in BUILTIN:
        raise ValueError(f"destination type '{name}' is built in")
    _registered[name] = cls


def _entry_point_targets() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_types() -> list[str]:
    """Every destination type name, sorted: built-ins, registered and installed plugins."""
    return sorted(set(BUILTIN) | set(_registered) | set(_entry_point_targets()))


def get_destination_type(name: str) -> type[Destination]:
    """The Destination subclass registered as ``name``, imported on first use."""
    if name in _loaded:
        return _loaded[name]
    if name in BUILTIN:
        target = BUILTIN[name]
    elif name in _registered:
        return _registered[name]
    else:
        target = _entry_point_targets().get(name, "")
        if not target:
            raise UnknownDestinationTypeError(name, available_types())
    cls = _load(name, target)
    _loaded[name] = cls
    return cls


def _load(name: str, target: str) -> type[Destination]:
    module_name, _, attribute = target.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
        for part in filter(None, attribute.split(".")):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"destination type '{name}' ({target}) failed to load: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, Destination)):
        raise UsageError(f"destination type '{name}' ({target}) is not a Destination subclass")
    return obj
