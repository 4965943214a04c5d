"""Values that came from ``env_var``: never printed, logged, stored or shown in errors."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Secrets:
    """The secret values of a loaded project; ``redact`` blanks them in any text."""

    values: set[str] = field(default_factory=set)

    def add(self, value: str) -> None:
        if len(value) >= 3:  # shorter strings would redact ordinary words
            self.values.add(value)

    def redact(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, "***")
        return text
