"""Jinja rendering of every string value at load: ``var()`` and ``env_var()``.

Anything produced by a template that read an environment variable is a secret: the
rendered text is recorded in :class:`Secrets`, which every output path uses to redact.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
import jinja2.sandbox

from revseg.errors import Problem
from revseg.project.yamlfile import PathKey, YamlDoc
from revseg.secrets import Secrets

_MISSING = object()


class TemplateFailure(Exception):
    """A template could not render; the message names what is missing and how to fix it."""


class Renderer:
    """Renders strings with the project's vars and the process environment."""

    def __init__(
        self,
        variables: Mapping[str, Any],
        secrets: Secrets,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.variables = dict(variables)
        self.secrets = secrets
        self.environ = os.environ if environ is None else environ
        self._env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
        self._used_env = False

    def _var(self, name: str, default: Any = _MISSING) -> Any:
        if name in self.variables:
            return self.variables[name]
        if default is not _MISSING:
            return default
        raise TemplateFailure(f"var '{name}' is not defined: add it under vars: in revseg.yml")

    def _env_var(self, name: str, default: Any = _MISSING) -> Any:
        self._used_env = True
        if name in self.environ:
            return self.environ[name]
        if default is not _MISSING:
            return default
        raise TemplateFailure(
            f"environment variable '{name}' is not set and env_var() was given no default: "
            f"export {name}, or write env_var('{name}', 'default')"
        )

    def render(self, text: str) -> str:
        """Render one string; raise TemplateFailure with a user-facing message."""
        if "{" not in text:
            return text
        self._used_env = False
        globals_: dict[str, Callable[..., Any]] = {"var": self._var, "env_var": self._env_var}
        try:
            result = self._env.from_string(text, globals=globals_).render()
        except TemplateFailure:
            raise
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateFailure(f"template syntax error: {exc.message}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateFailure(
                f"template error: {exc.message}; only var() and env_var() are available here"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any template failure is a user error
            raise TemplateFailure(f"template failed to render: {exc}") from None
        if self._used_env:
            self.secrets.add(result)
        return result


def render_tree(
    doc: YamlDoc,
    renderer: Renderer,
    skip: Callable[[PathKey], bool] = lambda _path: False,
) -> list[Problem]:
    """Render every string in ``doc.data`` in place; return located problems."""
    problems: list[Problem] = []

    def walk(value: Any, path: PathKey) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and not skip(path):
            try:
                return renderer.render(value)
            except TemplateFailure as exc:
                problems.append(Problem(doc.pos(path), str(exc), "template"))
        return value

    doc.data = walk(doc.data, ())
    return problems
