"""Parse a segment's ``where:`` into the located condition tree of :mod:`revseg.spec.conditions`.

Every mistake is collected as a Problem at the YAML node that holds it; parsing goes on
past errors so one run reports them all. Column names are checked later, against the
warehouse's columns, by :mod:`revseg.project.columns`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from revseg.durations import parse_duration
from revseg.errors import Problem, did_you_mean
from revseg.project.sqltext import parse_expression
from revseg.project.yamlfile import PathKey, YamlDoc
from revseg.spec.conditions import (
    AGGREGATE_FNS,
    AGGREGATE_OPS,
    COMPARISONS,
    LIST_OPS,
    NULL_OPS,
    OPERATORS,
    STRING_OPS,
    AggregateCondition,
    Ago,
    All,
    AnyOf,
    ColumnCondition,
    Comparison,
    Condition,
    EventCondition,
    Follow,
    Not,
    SegmentRef,
    SqlPredicate,
    Value,
)
from revseg.spec.project import Model

FORMS = ("all", "any", "not", "column", "event", "aggregate", "segment", "sql")
_KEYS = {
    "all": {"all"},
    "any": {"any"},
    "not": {"not"},
    "column": {"column", "op", "value"},
    "event": {"event", "model", "within", "older_than", "where", "count", "followed_by", "not_followed_by"},
    "aggregate": {"aggregate", "model", "column", "within", "older_than", "where", "op", "value"},
    "segment": {"segment"},
    "sql": {"sql"},
}
# the form a mapping is, when its keys name several (an aggregate also has 'column')
_PRIORITY = ("all", "any", "not", "event", "aggregate", "segment", "sql", "column")
_FOLLOW_KEYS = {"event", "model", "within", "where"}
# operators as other languages spell them; string similarity alone suggests '>' for '=>'
_OPERATOR_SPELLINGS = {
    "=>": ">=", "=<": "<=", "==": "=", "<>": "!=", "not in": "not_in", "is null": "is_null",
    "is not null": "is_not_null", "startswith": "starts_with", "endswith": "ends_with",
}


@dataclass
class ConditionParser:
    """Parses conditions of one file; ``problems`` collects every error found."""

    doc: YamlDoc
    dialect: str
    models: dict[str, Model]
    problems: list[Problem] = field(default_factory=list)

    # -- entry points ---------------------------------------------------------------
    def parse(self, path: PathKey) -> Condition | None:
        """Parse the condition at ``path``; a list there means ``all`` of its items."""
        node = self._at(path)
        if isinstance(node, list):
            items = self._items(path)
            return All(tuple(items), self.doc.pos(path)) if items else None
        return self._condition(path, filters_of=None)

    # -- helpers --------------------------------------------------------------------
    def _at(self, path: PathKey) -> Any:
        node: Any = self.doc.data
        for part in path:
            node = node[part]
        return node

    def _error(self, path: PathKey, message: str, code: str = "invalid", key: bool = False) -> None:
        self.problems.append(Problem(self.doc.pos(path, key=key), message, code))

    def _items(self, path: PathKey, filters_of: Model | None = None) -> list[Condition]:
        node = self._at(path)
        if not isinstance(node, list) or not node:
            self._error(path, "expected a non-empty list of conditions", "type")
            return []
        parsed = [self._condition((*path, i), filters_of) for i in range(len(node))]
        return [item for item in parsed if item is not None]

    def _duration(self, path: PathKey) -> timedelta | None:
        try:
            return parse_duration(self._at(path))
        except ValueError as exc:
            self._error(path, str(exc), "duration")
            return None

    def _string(self, node: dict[str, Any], path: PathKey, key: str) -> str | None:
        value = node.get(key)
        if not isinstance(value, str) or not value:
            self._error((*path, key), f"'{key}' must be a non-empty string", "type")
            return None
        return value

    # -- the forms ------------------------------------------------------------------
    def _condition(self, path: PathKey, filters_of: Model | None) -> Condition | None:
        """Parse one condition. Inside an event/aggregate ``where``, ``filters_of`` is that
        model and only column conditions (and all/any/not of them) are allowed."""
        node = self._at(path)
        pos = self.doc.pos(path)
        if not isinstance(node, dict):
            self._error(path, f"a condition must be a mapping with one of: {', '.join(FORMS)}", "type")
            return None
        forms = [form for form in _PRIORITY if form in node]
        if not forms:
            unknown = next(iter(node), "")
            hint = did_you_mean(str(unknown), FORMS)
            self._error(path, f"a condition needs one of: {', '.join(FORMS)}; found '{unknown}'{hint}", "unknown-condition")
            return None
        if not set(forms) <= _KEYS[forms[0]]:
            self._error(path, f"a condition has exactly one form; found {' and '.join(forms)}: "
                        "wrap them in all: [...]", "ambiguous-condition")
            return None
        form = forms[0]
        for key in node:
            if key not in _KEYS[form]:
                hint = did_you_mean(key, _KEYS[form])
                self._error((*path, key), f"unknown key '{key}' in {form} condition{hint}", "unknown-key", key=True)
        if filters_of is not None and form not in ("all", "any", "not", "column"):
            self._error(path, f"an event or aggregate 'where' holds column conditions only, not '{form}'", "invalid-filter")
            return None
        if form in ("all", "any"):
            items = self._items((*path, form), filters_of)
            return (All if form == "all" else AnyOf)(tuple(items), pos)
        if form == "not":
            inner = self._condition((*path, "not"), filters_of)
            return Not(inner, pos) if inner is not None else None
        if form == "column":
            return self._column(node, path)
        if form == "event":
            return self._event(node, path)
        if form == "aggregate":
            return self._aggregate(node, path)
        if form == "segment":
            name = self._string(node, path, "segment")
            return SegmentRef(name, pos) if name else None
        return self._sql(node, path)

    def _column(self, node: dict[str, Any], path: PathKey) -> ColumnCondition | None:
        column = self._string(node, path, "column")
        comparison = self._comparison(node, path, OPERATORS, "column condition")
        if column is None or comparison is None:
            return None
        return ColumnCondition(column, comparison, self.doc.pos(path), self.doc.pos((*path, "column")))

    def _comparison(
        self, node: dict[str, Any], path: PathKey, allowed: tuple[str, ...], what: str
    ) -> Comparison | None:
        if "op" not in node:
            self._error(path, f"missing required key 'op' in {what}", "missing-key")
            return None
        op = node["op"]
        op_path = (*path, "op")
        if not isinstance(op, str) or op not in allowed:
            meant = _OPERATOR_SPELLINGS.get(str(op).strip().lower())
            hint = f" (did you mean '{meant}'?)" if meant in allowed else did_you_mean(str(op), allowed)
            self._error(op_path, f"bad operator {op!r} for {what}{hint}; allowed: {', '.join(allowed)}", "operator")
            return None
        value_path = (*path, "value")
        if op in NULL_OPS:
            if "value" in node:
                self._error(value_path, f"'{op}' takes no value", "value")
                return None
            return Comparison(op, None, self.doc.pos(op_path))
        if "value" not in node:
            self._error(path, f"missing required key 'value' for operator '{op}'", "missing-key")
            return None
        value = self._value(node["value"], value_path, op)
        return Comparison(op, value, self.doc.pos(op_path)) if value is not None else None

    def _value(self, raw: Any, path: PathKey, op: str) -> Value | None:
        pos = self.doc.pos(path)
        if op in LIST_OPS or op == "between":
            if not isinstance(raw, list) or not raw:
                self._error(path, f"'{op}' needs a non-empty list value", "value")
                return None
            if op == "between" and len(raw) != 2:
                self._error(path, "'between' needs a list of two values [lo, hi]", "value")
                return None
            items = [self._scalar(item, (*path, i), op) for i, item in enumerate(raw)]
            if any(item is None for item in items):
                return None
            return Value(items, pos)
        scalar = self._scalar(raw, path, op)
        return Value(scalar, pos) if scalar is not None else None

    def _scalar(self, raw: Any, path: PathKey, op: str) -> Any:
        if raw is None:
            self._error(path, "null is not a value: use op: is_null (or is_not_null)", "value")
            return None
        if isinstance(raw, dict):
            if set(raw) != {"ago"}:
                self._error(path, "a mapping value must be {ago: DURATION}", "value")
                return None
            delta = self._duration((*path, "ago"))
            return Ago(delta) if delta is not None else None
        if isinstance(raw, list):
            self._error(path, f"'{op}' takes a single value, not a list", "value")
            return None
        if op in STRING_OPS and not isinstance(raw, str):
            return str(raw)
        return raw

    def _model(self, node: dict[str, Any], path: PathKey, *, event: bool) -> Model | None:
        name = node.get("model")
        if name is None and event:
            named = [m for m in self.models.values() if m.is_event_model]
            if "events" in self.models:
                name = "events"
            elif len(named) == 1:
                name = named[0].name
            else:
                self._error(path, "which event model? more than one model has name: (or none does): "
                            "add model: M", "event-model")
                return None
        if name is None:
            self._error(path, "missing required key 'model' in aggregate condition", "missing-key")
            return None
        model = self.models.get(name) if isinstance(name, str) else None
        if model is None:
            hint = did_you_mean(str(name), self.models)
            self._error((*path, "model") if "model" in node else path, f"unknown model '{name}'{hint}", "unknown-model")
            return None
        if model.entity_key is None:
            self._error((*path, "model") if "model" in node else path,
                        f"model '{model.name}' has no entity_key, so it cannot be related to entities", "model")
            return None
        if event and (model.event_name is None or model.timestamp is None):
            self._error((*path, "model") if "model" in node else path,
                        f"model '{model.name}' is not an event model: it needs name: and timestamp:", "model")
            return None
        return model

    def _window(self, node: dict[str, Any], path: PathKey, model: Model | None) -> tuple[timedelta | None, timedelta | None]:
        within = self._duration((*path, "within")) if "within" in node else None
        older = self._duration((*path, "older_than")) if "older_than" in node else None
        if model is not None and model.timestamp is None and ("within" in node or "older_than" in node):
            key = "within" if "within" in node else "older_than"
            self._error((*path, key), f"model '{model.name}' has no timestamp:, so '{key}' cannot apply", "model")
        if within is not None and older is not None and older >= within:
            self._error((*path, "older_than"), "older_than must be shorter than within, "
                        "or the window is empty", "window")
        return within, older

    def _filters(self, node: dict[str, Any], path: PathKey, model: Model | None) -> tuple[Condition, ...]:
        if "where" not in node or model is None:
            return ()
        where_path = (*path, "where")
        raw = node["where"]
        if isinstance(raw, dict):
            item = self._condition(where_path, model)
            return (item,) if item is not None else ()
        return tuple(self._items(where_path, model))

    def _event(self, node: dict[str, Any], path: PathKey) -> EventCondition | None:
        name = self._string(node, path, "event")
        model = self._model(node, path, event=True)
        within, older = self._window(node, path, model)
        where = self._filters(node, path, model)
        count = None
        if "count" in node:
            count_node = node["count"]
            count_path = (*path, "count")
            if not isinstance(count_node, dict):
                self._error(count_path, "count must be {op: OP, value: N}", "type")
            else:
                for key in count_node:
                    if key not in ("op", "value"):
                        self._error((*count_path, key), f"unknown key '{key}' in count (allowed: op, value)", "unknown-key", key=True)
                count = self._comparison(count_node, count_path, AGGREGATE_OPS, "count")
        follow = None
        keys = [key for key in ("followed_by", "not_followed_by") if key in node]
        if len(keys) == 2:
            self._error((*path, "not_followed_by"), "use followed_by or not_followed_by, not both", "ambiguous-condition", key=True)
        elif keys and model is not None:
            follow = self._follow(keys[0], (*path, keys[0]), model)
        if name is None or model is None:
            return None
        return EventCondition(name, model.name, within, older, where, count, follow, self.doc.pos(path))

    def _follow(self, key: str, path: PathKey, first: Model) -> Follow | None:
        node = self._at(path)
        if not isinstance(node, dict):
            self._error(path, f"{key} must be a mapping: {{event: NAME, within: D, where: [...]}}", "type")
            return None
        for k in node:
            if k not in _FOLLOW_KEYS:
                self._error((*path, k), f"unknown key '{k}' in {key}{did_you_mean(k, _FOLLOW_KEYS)}", "unknown-key", key=True)
        name = self._string(node, path, "event")
        model = self._model(node, path, event=True) if "model" in node else first
        within = self._duration((*path, "within")) if "within" in node else None
        where = self._filters(node, path, model)
        if name is None or model is None:
            return None
        return Follow(key == "not_followed_by", name, model.name, within, where, self.doc.pos(path))

    def _aggregate(self, node: dict[str, Any], path: PathKey) -> AggregateCondition | None:
        fn = node.get("aggregate")
        if fn not in AGGREGATE_FNS:
            self._error((*path, "aggregate"), f"bad aggregate {fn!r}{did_you_mean(str(fn), AGGREGATE_FNS)}; "
                        f"allowed: {', '.join(AGGREGATE_FNS)}", "aggregate")
            fn = None
        model = self._model(node, path, event=False)
        column = node.get("column")
        if column is not None and not isinstance(column, str):
            self._error((*path, "column"), "'column' must be a string", "type")
            column = None
        if column is None and fn not in (None, "count"):
            self._error(path, f"aggregate '{fn}' needs a column", "missing-key")
            fn = None
        within, older = self._window(node, path, model)
        where = self._filters(node, path, model)
        comparison = self._comparison(node, path, AGGREGATE_OPS, "aggregate")
        if fn is None or model is None or comparison is None:
            return None
        column_pos = self.doc.pos((*path, "column")) if column else self.doc.pos(path)
        return AggregateCondition(fn, model.name, column, within, older, where, comparison,
                                  self.doc.pos(path), column_pos)

    def _sql(self, node: dict[str, Any], path: PathKey) -> SqlPredicate | None:
        text = self._string(node, path, "sql")
        if text is None:
            return None
        tree, problems = parse_expression(text, self.dialect, self.doc, (*path, "sql"), "a sql: condition")
        self.problems.extend(problems)
        return SqlPredicate(tree, text, self.doc.pos((*path, "sql"))) if tree is not None else None


__all__ = ["ConditionParser", "COMPARISONS"]
