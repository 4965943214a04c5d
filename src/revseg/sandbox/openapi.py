"""Request validation against the vendors' own OpenAPI schemas, for the emulators.

An emulator is only as useful as it is strict: a client that sends ``listId`` as a string
must fail here as it would against the real API, not pass and fail in production. The
schemas are the vendors' published documents (``schemas/``, Swagger 2.0 and OpenAPI 3.x),
so the emulators check exactly what the vendors declare: types, ``required``, ``enum``,
lengths and item counts, ``format`` (``uuid``, ``int32``/``int64``), ``$ref`` resolved
against the document. OpenAPI 3.0's ``nullable: true`` is folded in (``null`` is allowed).

A small validator rather than a JSON Schema library: it has to name each problem by the
path the vendors use in their own error messages (``contacts[1].email``), and the sandbox
should not add a dependency to revseg.

>>> spec = {"definitions": {"R": {"type": "object", "required": ["n"],
...         "properties": {"n": {"type": "integer", "format": "int64"}}}}}
>>> validate({"n": "7"}, {"$ref": "#/definitions/R"}, spec)
[('n', 'expected integer, got string')]
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

Problems = list[tuple[str, str]]

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "integer": (int,),
    "number": (int, float),
    "null": (type(None),),
}


@cache
def load_spec(name: str) -> dict[str, Any]:
    """A vendored document by name (``iterable``, ``sendgrid``)."""
    text = resources.files("revseg.sandbox").joinpath("schemas", f"{name}.json").read_text("utf-8")
    spec: dict[str, Any] = json.loads(text)
    return spec


def request_schema(
    spec: dict[str, Any], path: str, method: str, media_type: str = "application/json"
) -> dict[str, Any]:
    """The body schema of an operation (Swagger 2.0 ``in: body`` or OAS 3 requestBody);
    ``media_type`` picks an OAS 3 body other than JSON (Twilio's form-encoded ones)."""
    operation = spec["paths"][path][method.lower()]
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "body":
            schema: dict[str, Any] = parameter["schema"]
            return schema
    body: dict[str, Any] = operation["requestBody"]["content"][media_type]["schema"]
    return body


_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _typed(text: str, schema: dict[str, Any]) -> Any:
    """One form value as the schema's scalar type; left a string when it does not convert
    (so validation reports it as the wrong type)."""
    kind = schema.get("type")
    if kind == "integer" and _INTEGER.fullmatch(text):
        return int(text)
    if kind == "number" and _NUMBER.fullmatch(text):
        return float(text)
    if kind == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def form_values(
    fields: dict[str, list[str]], schema: dict[str, Any], spec: dict[str, Any]
) -> dict[str, Any]:
    """A form-encoded body (name -> every value sent) typed by its object schema.

    Form fields are strings on the wire: an ``array`` property collects its repeated keys,
    a scalar takes the last value, converted to the declared type. Names the schema does
    not declare are kept as strings.

    >>> schema = {"properties": {"N": {"type": "integer"}, "U": {"type": "array",
    ...           "items": {"type": "string"}}, "B": {"type": "boolean"}}}
    >>> form_values({"N": ["7"], "U": ["a", "b"], "B": ["True"], "X": ["x"]}, schema, {})
    {'N': 7, 'U': ['a', 'b'], 'B': True, 'X': 'x'}
    """
    properties: dict[str, Any] = _resolve(schema, spec).get("properties", {})
    typed: dict[str, Any] = {}
    for name, values in fields.items():
        declared = _resolve(properties.get(name, {}), spec)
        if declared.get("type") == "array":
            items = _resolve(declared.get("items", {}), spec)
            typed[name] = [_typed(v, items) for v in values]
        else:
            typed[name] = _typed(values[-1], declared)
    return typed


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    for name in ("integer", "number", "string", "array", "object"):
        if isinstance(value, _JSON_TYPES[name]):
            return name
    return type(value).__name__


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    return isinstance(value, _JSON_TYPES.get(kind, (object,)))


def _join(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def validate(value: Any, schema: dict[str, Any], spec: dict[str, Any], where: str = "") -> Problems:
    """Every problem of ``value`` against ``schema``, as ``(path, message)`` pairs."""
    schema = _resolve(schema, spec)
    declared = schema.get("type")
    kinds = declared if isinstance(declared, list) else [declared] if declared else []
    if value is None and (schema.get("nullable") or "null" in kinds or not kinds):
        return []
    if kinds and not any(_is(value, k) for k in kinds):
        return [
            (
                where,
                f"expected {' or '.join(k for k in kinds if k != 'null')}, got {_type_name(value)}",
            )
        ]
    problems: Problems = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append((where, f"must be one of {', '.join(map(str, schema['enum']))}"))
    if isinstance(value, str):
        problems += _string(value, schema, where)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        low, high = _INT_RANGES.get(schema.get("format", ""), (None, None))
        if low is not None and high is not None and not low <= value <= high:
            problems.append((where, f"out of range for {schema['format']}"))
    elif isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append((where, f"must have at least {schema['minItems']} items"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append((where, f"must have at most {schema['maxItems']} items"))
        if "items" in schema:
            for index, item in enumerate(value):
                problems += validate(item, schema["items"], spec, _join(where, index))
    elif isinstance(value, dict):
        problems += _object(value, schema, spec, where)
    return problems


def _string(value: str, schema: dict[str, Any], where: str) -> Problems:
    problems: Problems = []
    if "minLength" in schema and len(value) < schema["minLength"]:
        problems.append((where, f"must be at least {schema['minLength']} characters"))
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append((where, f"must be at most {schema['maxLength']} characters"))
    if schema.get("format") == "uuid" and not _UUID.fullmatch(value):
        problems.append((where, "must be a UUID"))
    if "pattern" in schema and not re.search(schema["pattern"], value):
        problems.append((where, f"must match {schema['pattern']}"))
    return problems


def _object(
    value: dict[str, Any], schema: dict[str, Any], spec: dict[str, Any], where: str
) -> Problems:
    problems: Problems = []
    properties: dict[str, Any] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            problems.append((_join(where, name), "is required"))
    for name, item in value.items():
        if name in properties:
            problems += validate(item, properties[name], spec, _join(where, name))
            continue
        matched = False
        for pattern, sub in schema.get("patternProperties", {}).items():
            if re.search(pattern, name):
                matched = True
                problems += validate(item, sub, spec, _join(where, name))
        if not matched and schema.get("additionalProperties") is False:
            problems.append((_join(where, name), "is not an allowed property"))
        elif not matched and isinstance(schema.get("additionalProperties"), dict):
            problems += validate(item, schema["additionalProperties"], spec, _join(where, name))
    return problems
