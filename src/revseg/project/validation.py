"""Run a pydantic spec over a located YAML value and turn its errors into located Problems."""

from __future__ import annotations

import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from revseg.errors import Problem, did_you_mean
from revseg.project.yamlfile import PathKey, YamlDoc

M = TypeVar("M", bound=BaseModel)


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the last element of ``loc`` (for 'did you mean')."""
    current: Any = root
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            if part not in current.model_fields:
                return current
            current = current.model_fields[part].annotation
        else:
            current = _inner_model(current)
            if current is None:
                return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        if isinstance(arg, types.UnionType) or typing.get_origin(arg) is not None:
            inner = _inner_model(arg)
            if inner is not None:
                return inner
    return None


def _context(loc: tuple[Any, ...]) -> str:
    names = [str(part) for part in loc if isinstance(part, str)]
    return names[-1] if names else ""


def validate_spec(
    model: type[M], doc: YamlDoc, path: PathKey, what: str
) -> tuple[M | None, list[Problem]]:
    """Validate ``doc.data`` at ``path`` against ``model``; locate every error."""
    data: Any = doc.data
    for part in path:
        data = data[part]
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "nothing"
        return None, [Problem(doc.pos(path), f"{what} must be a mapping of keys, got {kind}", "type")]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        errors = exc.errors()
    problems = [_problem(model, doc, path, error, what) for error in errors]
    # keep going without the offending keys, so the rest of the node is checked too
    bad = {error["loc"][0] for error in errors if error["loc"]}
    try:
        return model.model_validate({k: v for k, v in data.items() if k not in bad}), problems
    except ValidationError:
        return None, problems


def _problem(
    model: type[BaseModel], doc: YamlDoc, path: PathKey, error: Any, what: str
) -> Problem:
    loc = tuple(error["loc"])
    full = (*path, *loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        owner = _model_at(model, loc[:-1])
        # a field spelled differently in YAML (``from`` for ``from_``) is shown by its alias
        allowed = sorted(f.alias or n for n, f in owner.model_fields.items()) if owner else []
        hint = did_you_mean(key, allowed) or (
            f" (allowed: {', '.join(allowed)})" if allowed else ""
        )
        where = _context(loc[:-1]) or what
        return Problem(doc.pos(full, key=True), f"unknown key '{key}' in {where}{hint}", "unknown-key")
    if kind == "missing":
        where = _context(loc[:-1]) or what
        return Problem(doc.pos(full[:-1]), f"missing required key '{loc[-1]}' in {where}", "missing-key")
    message = str(error["msg"]).removeprefix("Value error, ")
    field = ".".join(str(p) for p in loc)
    return Problem(doc.pos(full), f"{field}: {message}" if field else message, "type")
