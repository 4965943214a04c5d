"""Trigger messages' templates: Jinja in a sandbox, strict about undefined traits. Jinja is
imported by the first sync that has a template, not by every run."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2


def message_template(text: str) -> jinja2.Template:
    return _environment().from_string(text)


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2
    import jinja2.sandbox

    return jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
