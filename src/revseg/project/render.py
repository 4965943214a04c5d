"""Jinja rendering of every string value at load: ``var()`` and ``env_var()``.

Anything produced by a template that read an environment variable is a secret: the
rendered text is recorded in :class:`Secrets`, which every output path uses to redact.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

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
        self._env: Any = None  # jinja2's sandbox, imported on the first template it is needed for
        self._env_values: list[str] = []  # what env_var() returned during the current render

    def _var(self, name: str, default: Any = _MISSING) -> Any:
        if name in self.variables:
            return self.variables[name]
        if default is not _MISSING:
            return default
        raise TemplateFailure(f"var '{name}' is not defined: add it under vars: in revseg.yml")

    def _env_var(self, name: str, default: Any = _MISSING) -> Any:
        if name in self.environ or default is not _MISSING:
            value = self.environ[name] if name in self.environ else default
            self._env_values.append(str(value))
            return value
        raise TemplateFailure(
            f"environment variable '{name}' is not set and env_var() was given no default: "
            f"export {name}, or write env_var('{name}', 'default')"
        )

    def render(self, text: str) -> str:
        """Render one string; raise TemplateFailure with a user-facing message."""
        if "{" not in text:
            return text
        self._env_values = []
        result = self._render_calls(text)
        if result is None:
            self._env_values = []
            result = self._render_jinja(text)
        # each value itself, not only the string it lands in: a check may quote just that
        # part (``sql: "{{ env_var('X') }} = 1"`` -> unknown column '<the value>')
        if self._env_values:
            for value in (*self._env_values, result):
                self.secrets.add(value)
        return result

    def _render_calls(self, text: str) -> str | None:
        """The common case without Jinja (importing it is a tenth of a run's startup): text
        whose only template parts are ``{{ var('x') }}`` / ``{{ env_var('X', 'default') }}``,
        rendered exactly as Jinja renders them (``str()`` of the value; one trailing newline
        dropped). None for anything else."""
        if "{%" in text or "{#" in text or "\r" in text:
            return None
        parts: list[str] = []
        end = 0
        for match in _EXPRESSION.finditer(text):
            call = _CALL.fullmatch(match.group(1))
            if call is None:
                return None
            parts.append(text[end:match.start()])
            function = self._var if call.group(1) == "var" else self._env_var
            default = call.group(3)
            value = function(call.group(2)) if default is None else function(call.group(2), default[1:-1])
            parts.append(str(value))
            end = match.end()
        rest = text[end:]
        if "{{" in rest:  # an unclosed expression: Jinja's error says where
            return None
        parts.append(rest[:-1] if rest.endswith("\n") else rest)
        return "".join(parts)

    def _render_jinja(self, text: str) -> str:
        import jinja2
        import jinja2.sandbox

        if self._env is None:
            self._env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
        globals_: dict[str, Callable[..., Any]] = {"var": self._var, "env_var": self._env_var}
        try:
            return str(self._env.from_string(text, globals=globals_).render())
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


class VarsRenderer(Renderer):
    """Renders ``vars:`` themselves, before anything else: env_var() only."""

    def __init__(self, secrets: Secrets, environ: Mapping[str, str] | None = None) -> None:
        super().__init__({}, secrets, environ)

    def _var(self, name: str, default: Any = _MISSING) -> Any:
        raise TemplateFailure(f"vars: may use env_var() but not var() (here var('{name}')): "
                              "write the value itself")


#: ``{{ ... }}`` and, inside it, a call of var() or env_var() with a name and an optional
#: default, each a quoted string without quotes or backslashes in it
_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_CALL = re.compile(r"""\s*(var|env_var)\(\s*'([A-Za-z_][A-Za-z0-9_]*)'\s*(?:,\s*('[^'\\]*'|"[^"\\]*")\s*)?\)\s*""")


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
