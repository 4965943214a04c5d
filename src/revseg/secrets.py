"""Values that came from ``env_var``: never printed, logged, stored or shown in errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: secrets at least this long are blanked wherever they occur, even inside a longer word
LONG = 8


@dataclass
class Secrets:
    """The secret values of a loaded project; ``redact`` blanks them in any text."""

    values: set[str] = field(default_factory=set)
    _short: dict[str, re.Pattern[str]] = field(default_factory=dict, repr=False)

    def add(self, value: str) -> None:
        if len(value) >= 3:  # shorter strings would redact ordinary words
            self.values.add(value)
            if len(value) < LONG:
                self._short[value] = re.compile(rf"(?<!\w){re.escape(value)}(?!\w)")

    def redact(self, text: str) -> str:
        """``text`` with every secret blanked. A short one (a port, a threshold, a target name
        from ``env_var``) only where it stands alone: blanking ``120`` inside ``1200`` or
        ``dev`` inside ``device`` would garble the output without hiding anything."""
        for value in sorted(self.values, key=len, reverse=True):
            pattern = self._short.get(value)
            text = pattern.sub("***", text) if pattern is not None else text.replace(value, "***")
        return text

    def redact_data(self, value: Any) -> Any:
        """JSON-like ``value`` with every string (keys included) redacted; numbers and other
        values are the run's own counts and data, left as they are so the JSON stays valid
        (``"exited": 120`` with a secret ``120`` must not become ``"exited": ***``)."""
        if not self.values:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact(k) if isinstance(k, str) else k: self.redact_data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.redact_data(item) for item in value]
        return value
