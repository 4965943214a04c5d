"""Parse the SQL a project writes (``sql:`` leaves and segments, traits, ``sql:`` models).

Each fragment is parsed once, at load, in the project's ``sql_dialect``; the tree is kept
and transpiled to the target by the warehouse adapter. A fragment must be exactly one
expression (or one query where a query is expected), never a statement; errors point at
the line and column inside the YAML scalar.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp

from revseg.errors import Position, Problem
from revseg.project.yamlfile import PathKey, YamlDoc

_OTHER_STATEMENTS = (exp.Command, exp.Cache, exp.Grant, exp.Analyze)


def is_statement(node: exp.Expr) -> bool:
    """True for DDL, DML and commands: anything that is not a value or a query."""
    module = type(node).__module__
    return module.endswith((".ddl", ".dml")) or isinstance(node, _OTHER_STATEMENTS)


def _inner_position(doc: YamlDoc, path: PathKey, line: int, col: int) -> Position:
    """Map (line, col) inside a scalar's text onto the file."""
    base = doc.pos(path)
    style = doc.styles.get(path)
    if style in ("|", ">"):
        return Position(base.path, base.line + line, max(col, 1) + base.col + 1)
    quote = 1 if style in ('"', "'") else 0
    if line <= 1:
        return Position(base.path, base.line, base.col + quote + max(col - 1, 0))
    return Position(base.path, base.line + line - 1, max(col, 1))


def _parse(text: str, dialect: str, doc: YamlDoc, path: PathKey) -> tuple[list[exp.Expr], list[Problem]]:
    try:
        trees = [tree for tree in sqlglot.parse(text, read=dialect) if tree is not None]
    except sqlglot.errors.ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = _inner_position(doc, path, int(first.get("line") or 1), int(first.get("col") or 1))
        reason = re.sub(r" for <class '[\w.]+'>", "", str(first.get("description") or exc))
        near = f" near '{first['highlight']}'" if first.get("highlight") else ""
        return [], [Problem(where, f"SQL does not parse ({dialect}){near}: {reason}", "sql-parse")]
    except sqlglot.errors.TokenError as exc:
        return [], [Problem(doc.pos(path), f"SQL does not parse ({dialect}): {exc}", "sql-parse")]
    if not trees:
        return [], [Problem(doc.pos(path), "SQL is empty", "sql-parse")]
    if len(trees) > 1:
        return [], [Problem(doc.pos(path), f"SQL must be one expression, found {len(trees)} statements", "sql-statement")]
    return trees, []


def parse_expression(
    text: str, dialect: str, doc: YamlDoc, path: PathKey, what: str
) -> tuple[exp.Expr | None, list[Problem]]:
    """Parse one scalar SQL expression (a predicate or a trait); no statements, no subqueries."""
    trees, problems = _parse(text, dialect, doc, path)
    if problems:
        return None, problems
    tree = trees[0]
    if is_statement(tree) or isinstance(tree, exp.Query):
        kind = type(tree).__name__.upper()
        return None, [Problem(doc.pos(path), f"{what} must be one SQL expression, not a {kind} statement", "sql-statement")]
    for node in tree.walk():
        if isinstance(node, exp.Query) or is_statement(node):
            return None, [Problem(doc.pos(path), f"{what} may not contain a subquery or statement; "
                                  "express it with event/aggregate conditions or a sql: model", "sql-statement")]
    return tree, []


def parse_query(
    text: str, dialect: str, doc: YamlDoc, path: PathKey, what: str
) -> tuple[exp.Query | None, list[Problem]]:
    """Parse one SELECT (or set operation); anything else is an error."""
    trees, problems = _parse(text, dialect, doc, path)
    if problems:
        return None, problems
    tree = trees[0]
    if not isinstance(tree, exp.Query):
        kind = type(tree).__name__.upper()
        return None, [Problem(doc.pos(path), f"{what} must be one SELECT query, not {kind}", "sql-statement")]
    for node in tree.walk():
        if is_statement(node):
            return None, [Problem(doc.pos(path), f"{what} may only read: found {type(node).__name__.upper()}", "sql-statement")]
    return tree, []
