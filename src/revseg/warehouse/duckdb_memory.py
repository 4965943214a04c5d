"""How far revseg raises DuckDB's ``memory_limit`` when a statement runs out of memory under it.

The DuckDB target's default limit is small (it bounds the buffer cache, so a long sync does
not hold most of the machine's memory), and DuckDB spills most work beyond it to its temp
directory; but not all: some statements (large hash joins and aggregations, in-memory
scratch tables) fail with an Out of Memory error. A run should not fail for a setting the
user never chose, so a failed statement that can be run again (outside a transaction) is,
under a limit four times higher, up to DuckDB's own default of 80% of physical memory.
"""

from __future__ import annotations

import os
import re

#: each retry multiplies the limit by this
STEP = 4
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int | None:
    """``192MB``, ``2 GiB``, ``512kb`` as bytes (DuckDB's units: KB = 1000, KiB = 1024)."""
    match = _SIZE.match(text)
    if match is None or match.group(2).lower() not in _UNITS:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def ceiling() -> int:
    """DuckDB's default limit: 80% of physical memory."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.8)
    except (ValueError, OSError, AttributeError):  # not POSIX: 4 GiB
        return 4 * 2**30


def raised(current: str) -> str | None:
    """The next limit after ``current`` (``None``: it is at the ceiling, or not understood)."""
    size = parse_size(current)
    top = ceiling()
    if size is None or size >= top:
        return None
    return f"{min(size * STEP, top) // 2**20}MiB"
