"""Read a YAML file into plain Python values plus the position of every node.

PyYAML's composed nodes carry marks; we keep them in a map keyed by the path of each value
(``("where", "all", 0, "value")``), so any later check, pydantic's included, can point at
``path:line:col``. Keys have their own map, for errors about the key itself (unknown key).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from revseg.errors import Position, Problem

PathKey = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader with YAML 1.2 booleans: only true/false. YAML 1.1 also reads yes, no, on
    and off as booleans, which turns ``on: enter`` into ``True: enter`` and a country code
    ``NO`` into false."""


class _FastLoader(getattr(yaml, "CSafeLoader", _Loader)):  # type: ignore[misc]
    """The same, parsed by libyaml where PyYAML was built with it: the same nodes and marks,
    six times faster (10 ms of the demo project's 10 segment files); on an error the pure
    Python parser runs again for its message, which names the offending character or alias."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_FastLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers


@dataclass
class YamlDoc:
    """A parsed file: its data, and where each value and each mapping key stands."""

    rel_path: str
    data: Any
    values: dict[PathKey, Position] = field(default_factory=dict)
    keys: dict[PathKey, Position] = field(default_factory=dict)
    #: scalar style per path (None plain, '"' or "'" quoted, '|' or '>' block): maps SQL
    #: error columns inside the scalar back onto the file
    styles: dict[PathKey, str | None] = field(default_factory=dict)

    def pos(self, path: PathKey, *, key: bool = False) -> Position:
        """Position of the value (or the key) at ``path``, else of its nearest ancestor."""
        table = self.keys if key else self.values
        probe = tuple(path)
        if key and probe not in table:
            table = self.values
        while probe:
            if probe in table:
                return table[probe]
            probe = probe[:-1]
        return self.values.get((), Position(self.rel_path, 1, 1))


def _position(rel_path: str, node: yaml.Node) -> Position:
    return Position(rel_path, node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Turn a composed node tree into Python data, recording positions as it goes."""

    def __init__(self, doc: YamlDoc) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self._scalars = _Loader("")

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.doc.values[path] = _position(self.doc.rel_path, node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        self.doc.styles[path] = getattr(node, "style", None) or None  # libyaml says '' for plain
        return self._scalars.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problems.append(
                    Problem(_position(self.doc.rel_path, key_node), "YAML merge keys (<<) are not supported", "yaml")
                )
                continue
            # keys are names as written: `on:` is the key "on", `5:` the key "5"
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(
                self._scalars.construct_object(key_node, deep=True))
            child = (*path, key)
            if key in result:
                self.problems.append(
                    Problem(_position(self.doc.rel_path, key_node), f"duplicate key '{key}'", "duplicate-key")
                )
                continue
            self.doc.keys[child] = _position(self.doc.rel_path, key_node)
            result[key] = self.build(value_node, child)
        return result


def load_yaml(path: Path, project_dir: Path) -> tuple[YamlDoc, list[Problem]]:
    """Parse one file. Syntax errors come back as located problems, never as exceptions."""
    rel = path.relative_to(project_dir).as_posix() if path.is_relative_to(project_dir) else str(path)
    doc = YamlDoc(rel, None)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return doc, [Problem(Position(rel, 1, 1), f"cannot read file: {exc}", "io")]
    try:
        try:
            node = yaml.compose(text, Loader=_FastLoader)
        except yaml.YAMLError:
            node = yaml.compose(text, Loader=_Loader)  # for its message; raises the same error
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Position(rel, mark.line + 1, mark.column + 1) if mark else Position(rel, 1, 1)
        return doc, [Problem(where, f"invalid YAML: {exc.problem or exc}", "yaml")]
    except yaml.YAMLError as exc:
        return doc, [Problem(Position(rel, 1, 1), f"invalid YAML: {exc}", "yaml")]
    if node is None:
        doc.values[()] = Position(rel, 1, 1)
        return doc, []
    builder = _Builder(doc)
    try:
        doc.data = builder.build(node, ())
    except yaml.YAMLError as exc:
        return doc, [Problem(Position(rel, 1, 1), f"invalid YAML value: {exc}", "yaml")]
    return doc, builder.problems
