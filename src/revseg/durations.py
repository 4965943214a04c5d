"""Durations as every revseg file writes them: an integer and a unit (``90s``, ``30m``, ``7d``).

One parser for the whole project, so ``within:``, ``refresh:``, ``cooldown:`` and a
webhook's ``timeout:`` accept exactly the same syntax (SPEC 2.1) and fail with the same
message. Usable directly as a pydantic ``BeforeValidator``: every bad input, whatever its
type, raises ``ValueError``.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS: dict[str, timedelta] = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_DURATION = re.compile(r"(\d+)([smhdw])")
_EXPECTED = "expected an integer and a unit s, m, h, d or w (90s, 30m, 24h, 7d, 2w)"


def parse_duration(text: object) -> timedelta:
    """Parse ``"<integer><unit>"`` into a timedelta; a timedelta passes through unchanged.

    >>> parse_duration("90s")
    datetime.timedelta(seconds=90)
    >>> parse_duration("2w").days
    14
    """
    if isinstance(text, timedelta):
        return text
    if not isinstance(text, str):
        # ValueError, not TypeError: pydantic turns only ValueError into a located problem.
        raise ValueError(  # noqa: TRY004
            f"bad duration {text!r}: {_EXPECTED}"
        )
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"bad duration {text!r}: {_EXPECTED}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(delta: timedelta) -> str:
    """The shortest exact spelling of ``delta`` in the same syntax (``timedelta(hours=2)`` -> ``2h``).

    Sub-second parts cannot be written in the syntax and are rounded down.

    >>> format_duration(timedelta(minutes=90))
    '90m'
    """
    seconds = int(delta.total_seconds())
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
