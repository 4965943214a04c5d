"""Resolve segment files into :class:`~revseg.spec.project.Segment` objects."""

from __future__ import annotations

import json
from datetime import time, timedelta
from typing import Any

from revseg.errors import Problem, did_you_mean
from revseg.project.conditions import ConditionParser
from revseg.project.specs import SegmentSpec
from revseg.project.sqltext import parse_expression, parse_query
from revseg.project.validation import validate_spec
from revseg.project.yamlfile import PathKey, YamlDoc
from revseg.spec.conditions import SegmentRef, walk
from revseg.spec.project import Model, QuietHours, Segment, Sync, Trait

#: output columns of membership and delta queries that a trait may not shadow
RESERVED_TRAITS = frozenset({"id", "rn", "op", "hash", "held_payload", "revseg_hash"})


def is_trigger_template(path: PathKey) -> bool:
    """``syncs[i].template`` is rendered per entity at send time, not at load."""
    return len(path) >= 2 and path[-1] == "template" and "syncs" in path


def load_segments(
    doc: YamlDoc,
    *,
    dialect: str,
    models: dict[str, Model],
    default_entity: str | None,
    refresh: str,
    full_refresh_every: timedelta,
    entity_reported: bool = False,
) -> tuple[list[Segment], list[Problem]]:
    """A segment file holds one segment (a mapping) or several (a list). ``entity_reported``:
    revseg.yml names an entity that is not one, already reported (segments relying on it say
    nothing more)."""
    if isinstance(doc.data, list):
        paths: list[PathKey] = [(i,) for i in range(len(doc.data))]
    elif isinstance(doc.data, dict):
        paths = [()]
    else:
        return [], [Problem(doc.pos(()), "a segment file holds a segment (a mapping) or a list of them", "type")]
    segments: list[Segment] = []
    problems: list[Problem] = []
    for path in paths:
        segment, found = _segment(doc, path, dialect, models, default_entity, refresh, full_refresh_every,
                                  entity_reported)
        problems.extend(found)
        if segment is not None:
            segments.append(segment)
    return segments, problems


def _segment(
    doc: YamlDoc,
    path: PathKey,
    dialect: str,
    models: dict[str, Model],
    default_entity: str | None,
    refresh: str,
    full_refresh_every: timedelta,
    entity_reported: bool,
) -> tuple[Segment | None, list[Problem]]:
    spec, problems = validate_spec(SegmentSpec, doc, path, "segment")
    if spec is None:
        return None, problems
    entity = spec.entity or default_entity
    entity_path = (*path, "entity") if spec.entity else path
    if entity is None:
        if not entity_reported:
            problems.append(Problem(doc.pos(path), "no entity: set entity: here or in revseg.yml", "entity"))
    elif entity not in models or models[entity].primary_key is None:
        hint = did_you_mean(entity, [m for m in models if models[m].primary_key])
        problems.append(Problem(doc.pos(entity_path), f"entity '{entity}' is not a model with a primary_key{hint}", "entity"))
        entity = None
    if (spec.where is None) == (spec.sql is None):
        problems.append(Problem(doc.pos(path), f"segment '{spec.name}' needs exactly one of where: or sql:", "segment"))
    where = None
    if spec.where is not None:
        parser = ConditionParser(doc, dialect, models)
        where = parser.parse((*path, "where"))
        problems.extend(parser.problems)
    query = None
    if spec.sql is not None:
        query, found = parse_query(spec.sql, dialect, doc, (*path, "sql"), "a segment's sql:")
        problems.extend(found)
    traits = []
    for name in spec.traits:
        if name.lower() in RESERVED_TRAITS:
            problems.append(Problem(doc.pos((*path, "traits", name), key=True),
                                    f"trait name '{name}' is reserved (used by revseg's own columns: "
                                    f"{', '.join(sorted(RESERVED_TRAITS))}); rename it", "reserved"))
    for name, text in spec.traits.items():
        tree, found = parse_expression(text, dialect, doc, (*path, "traits", name), f"trait '{name}'")
        problems.extend(found)
        if tree is not None:
            traits.append(Trait(name, tree, doc.pos((*path, "traits", name))))
    syncs = [_sync(spec, doc, (*path, "syncs", i), problems) for i in range(len(spec.syncs))]
    first: dict[str, Sync] = {}
    for sync in syncs:  # a sync's state is keyed by segment.destination
        if sync.destination in first:
            problems.append(Problem(sync.position, f"segment '{spec.name}' syncs to destination '{sync.destination}' "
                                    f"twice (first at {first[sync.destination].position}); state is kept per "
                                    "segment and destination, so give the second its own destination file",
                                    "duplicate"))
        first.setdefault(sync.destination, sync)
    if entity is None:
        return None, problems
    definition = json.dumps(_data_at(doc, path), sort_keys=True, default=str)
    segment = Segment(
        name=spec.name,
        description=spec.description,
        tags=tuple(spec.tags),
        entity=entity,
        refresh=spec.refresh or refresh,
        where=where,
        query=query,
        traits=tuple(traits),
        syncs=tuple(syncs),
        full_refresh_every=spec.full_refresh_every or full_refresh_every,
        position=doc.pos((*path, "name")),
        definition=definition,
        sql_position=doc.pos((*path, "sql")) if spec.sql is not None else None,
    )
    return segment, problems


def _data_at(doc: YamlDoc, path: PathKey) -> Any:
    data: Any = doc.data
    for part in path:
        data = data[part]
    return data


def _sync(spec: SegmentSpec, doc: YamlDoc, path: PathKey, problems: list[Problem]) -> Sync:
    raw = spec.syncs[int(path[-1])]
    trait_names = set(spec.traits)
    for kind, trait in raw.identifiers.items():
        if trait not in trait_names:
            hint = did_you_mean(trait, trait_names)
            problems.append(Problem(doc.pos((*path, "identifiers", kind)),
                                    f"identifier '{kind}' names trait '{trait}', which the segment does not define{hint}",
                                    "unknown-trait"))
    if raw.mode == "trigger":
        if raw.template is None:
            problems.append(Problem(doc.pos(path), "a trigger sync needs a template:", "missing-key"))
        else:
            error = template_error(raw.template, trait_names)
            if error is not None:
                problems.append(Problem(doc.pos((*path, "template")), error, "template"))
    elif raw.template is not None or raw.cooldown is not None or raw.quiet_hours is not None:
        key = next(k for k in ("template", "cooldown", "quiet_hours") if getattr(raw, k) is not None)
        problems.append(Problem(doc.pos((*path, key), key=True), f"'{key}' applies only to mode: trigger", "sync"))
    quiet = None
    if raw.quiet_hours is not None:
        q = raw.quiet_hours
        if q.timezone_trait is not None and q.timezone_trait not in trait_names:
            problems.append(Problem(doc.pos((*path, "quiet_hours", "timezone_trait")),
                                    f"timezone_trait names trait '{q.timezone_trait}', which the segment does not "
                                    f"define{did_you_mean(q.timezone_trait, trait_names)}", "unknown-trait"))
        quiet = QuietHours(time.fromisoformat(q.start), time.fromisoformat(q.end), q.timezone, q.timezone_trait)
    return Sync(
        segment=spec.name,
        destination=raw.destination,
        mode=raw.mode,
        identifiers=dict(raw.identifiers),
        on=raw.on,
        template=raw.template,
        cooldown=raw.cooldown,
        backfill=raw.backfill,
        max_removes=raw.max_removes,
        max_remove_pct=raw.max_remove_pct,
        max_attempts=raw.max_attempts,
        batch_size=raw.batch_size,
        position=doc.pos(path),
        quiet_hours=quiet,
    )


def check_references(segments: dict[str, Segment]) -> list[Problem]:
    """Every ``segment:`` names a segment over the same entity; no cycles."""
    problems: list[Problem] = []
    edges: dict[str, list[SegmentRef]] = {}
    for segment in segments.values():
        refs = [node for node in walk(segment.where) if isinstance(node, SegmentRef)] if segment.where else []
        edges[segment.name] = []
        for ref in refs:
            target = segments.get(ref.segment)
            if target is None:
                hint = did_you_mean(ref.segment, segments)
                problems.append(Problem(ref.position, f"unknown segment '{ref.segment}'{hint}", "unknown-segment"))
            elif target.entity != segment.entity:
                problems.append(Problem(ref.position, f"segment '{ref.segment}' is over entity '{target.entity}', "
                                        f"not '{segment.entity}'", "entity"))
            else:
                edges[segment.name].append(ref)
    problems.extend(_cycles(edges))
    return problems


def _cycles(edges: dict[str, list[SegmentRef]]) -> list[Problem]:
    problems: list[Problem] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for ref in edges.get(name, []):
            if state.get(ref.segment) == 1:
                cycle = stack[stack.index(ref.segment):] + [ref.segment]
                problems.append(Problem(ref.position, f"segment references form a cycle: {' -> '.join(cycle)}", "cycle"))
            elif ref.segment not in state:
                visit(ref.segment)
        stack.pop()
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name)
    return problems


def dependency_order(segments: dict[str, Segment]) -> list[str]:
    """Segment names with every referenced segment before its referrers."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        where = segments[name].where
        for node in walk(where) if where else []:
            if isinstance(node, SegmentRef) and node.segment in segments:
                visit(node.segment)
        order.append(name)

    for name in sorted(segments):
        visit(name)
    return order


def template_error(text: str, traits: set[str]) -> str | None:
    """What is wrong with a trigger message's template, if anything: a syntax error, or a
    name that is neither a trait nor ``id`` (it would fail to render for every member).
    Jinja is imported only for projects that have a template."""
    import jinja2
    import jinja2.meta
    import jinja2.sandbox

    env = jinja2.sandbox.SandboxedEnvironment()
    try:
        tree = env.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        return f"template syntax error: {exc.message}"
    known = {*traits, "id"}
    unknown = sorted(jinja2.meta.find_undeclared_variables(tree) - known - set(env.globals))
    if unknown:
        return (f"template uses '{unknown[0]}', which is not a trait of the segment"
                f"{did_you_mean(unknown[0], known)} (it can use: {', '.join(sorted(known))})")
    return None
