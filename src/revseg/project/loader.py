"""Load a project directory into a :class:`~revseg.spec.project.Project`, or raise ProjectError
with every located problem at once.

Columns are not checked here (that needs the warehouse): see :mod:`revseg.project.columns`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlglot
from pydantic import ValidationError

from revseg.errors import Position, Problem, ProjectError, UsageError, did_you_mean
from revseg.project.render import Renderer, VarsRenderer, render_tree
from revseg.project.segments import check_references, is_trigger_template, load_segments
from revseg.project.specs import DestinationSpec, ModelSpec, ProjectSpec, parse_rate
from revseg.project.sqltext import parse_query
from revseg.project.targets import DIALECTS, TARGET_TYPES, target_config
from revseg.project.validation import validate_spec
from revseg.project.yamlfile import YamlDoc, load_yaml
from revseg.secrets import Secrets
from revseg.spec.project import DestinationConfig, Model, Project, Segment

PROJECT_FILE = "revseg.yml"


def load_project(
    project_dir: Path | str,
    target: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Project:
    """Read, render and validate every file of the project; raise ProjectError on problems."""
    project, problems = read_project(project_dir, target, environ)
    if problems or project is None:
        raise ProjectError(problems)
    return project


def _no_project_file(directory: Path) -> str:
    """Where the project file was looked for, and the likeliest fix: a command run from a
    project's subfolder (`segments/`) is told where the project is."""
    if not directory.is_dir():
        return f"{directory} does not exist: pass --project-dir DIR, the directory holding {PROJECT_FILE}"
    above = next((d for d in directory.parents if (d / PROJECT_FILE).is_file()), None)
    if above is not None:
        return (f"no {PROJECT_FILE} in {directory}; the project is in {above}: run the command there "
                f"or pass --project-dir {os.path.relpath(above)}")
    below = sorted(d.name for d in directory.iterdir() if (d / PROJECT_FILE).is_file())
    if below:
        return (f"no {PROJECT_FILE} in {directory}; projects below it: {', '.join(below[:5])}: cd into one "
                f"or pass --project-dir {os.path.relpath(directory / below[0])}")
    return f"no {PROJECT_FILE} in {directory}: run `revseg init DIR` to scaffold one, or pass --project-dir DIR"


def read_project(
    project_dir: Path | str,
    target: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Project | None, list[Problem]]:
    """Like load_project, but return what loaded beside the problems, so a caller can go on
    to check the valid parts (columns) and report everything at once. Raises ProjectError
    only when nothing usable loaded."""
    directory = Path(project_dir).resolve()
    path = directory / PROJECT_FILE
    if not path.is_file():
        raise UsageError(_no_project_file(directory))
    problems: list[Problem] = []
    secrets = Secrets()
    doc, found = load_yaml(path, directory)
    problems.extend(found)
    if found:
        raise ProjectError(problems)
    if not isinstance(doc.data, dict):
        raise ProjectError([Problem(doc.pos(()), f"{PROJECT_FILE} must be a mapping of keys", "type")])

    renderer = _renderer(doc, secrets, environ, problems)
    raw_targets = doc.data.get("targets")
    targets: dict[str, Any] = raw_targets if isinstance(raw_targets, dict) else {}
    chosen = target or doc.data.get("target") or (next(iter(targets)) if len(targets) == 1 else None)
    # only the target in use is rendered: prod's env vars need not exist on a laptop
    problems.extend(render_tree(
        doc, renderer, skip=lambda p: p[:1] == ("vars",) or (p[:1] == ("targets",) and len(p) > 1 and p[1] != chosen)
    ))
    spec, found = validate_spec(ProjectSpec, doc, (), PROJECT_FILE)
    problems.extend(found)
    if spec is None:
        raise ProjectError(problems)

    target_name, target_cfg = _target(spec, doc, target, problems)
    default_type = spec.targets[spec.target].type if spec.target in spec.targets else "duckdb"
    dialect = spec.sql_dialect or DIALECTS[default_type]
    if spec.sql_dialect is not None and not _known_dialect(spec.sql_dialect):
        problems.append(Problem(doc.pos(("sql_dialect",)), f"unknown sql_dialect '{spec.sql_dialect}'", "dialect"))
        dialect = DIALECTS[default_type]
    models = _models(spec, doc, dialect, problems)
    entity = spec.entity
    if entity is not None and (entity not in models or models[entity].primary_key is None):
        hint = did_you_mean(entity, models)
        problems.append(Problem(doc.pos(("entity",)), f"entity '{entity}' is not a model with a primary_key{hint}", "entity"))
        entity = None
    if entity is None and spec.entity is None:
        keyed = [m.name for m in models.values() if m.primary_key]
        entity = keyed[0] if len(keyed) == 1 else None

    segments = _load_segments(directory, renderer, dialect, models, entity, spec, problems)
    destinations = _load_destinations(directory, renderer, problems)
    problems.extend(check_references(segments))
    problems.extend(_check_syncs(segments, destinations))
    problems = [Problem(p.position, secrets.redact(p.message), p.code) for p in problems]
    return Project(
        name=spec.name,
        directory=directory,
        target_name=target_name,
        target=target_cfg,
        state_schema=spec.state_schema,
        sql_dialect=dialect,
        entity=entity,
        models=models,
        segments=segments,
        destinations=destinations,
        variables=dict(renderer.variables),
        secrets=secrets,
        serve=spec.serve.model_dump() if spec.serve else {"api_token": None, "write_key": None},
        history_retention=spec.history_retention,
        refresh=spec.refresh,
    ), problems


def _renderer(doc: YamlDoc, secrets: Secrets, environ: Mapping[str, str] | None, problems: list[Problem]) -> Renderer:
    """vars may use env_var() but not var(): render them first, then everything else."""
    raw_vars = doc.data.get("vars") or {}
    if not isinstance(raw_vars, dict):
        return Renderer({}, secrets, environ)
    bootstrap = VarsRenderer(secrets, environ if environ is not None else os.environ)
    vars_doc = YamlDoc(doc.rel_path, raw_vars, {k[1:]: v for k, v in doc.values.items() if k[:1] == ("vars",)})
    problems.extend(render_tree(vars_doc, bootstrap))
    doc.data["vars"] = vars_doc.data
    return Renderer(vars_doc.data, secrets, environ)


def _known_dialect(name: str) -> bool:
    try:
        sqlglot.Dialect.get_or_raise(name)
    except ValueError:
        return False
    return True


def _target(spec: ProjectSpec, doc: YamlDoc, override: str | None, problems: list[Problem]) -> tuple[str, dict[str, Any]]:
    name = override or spec.target
    if name is None:
        if len(spec.targets) == 1:
            name = next(iter(spec.targets))
        else:
            problems.append(Problem(doc.pos(()), "no target: set target: in revseg.yml or pass --target", "target"))
            return "", {}
    if name not in spec.targets:
        available = ", ".join(sorted(spec.targets))
        if override:
            raise UsageError(f"unknown target '{name}'{did_you_mean(name, spec.targets)} (available: {available})")
        problems.append(Problem(doc.pos(("target",)), f"unknown target '{name}'{did_you_mean(name, spec.targets)} "
                                f"(available: {available})", "target"))
        return name, {}
    raw = doc.data["targets"][name]
    kind = spec.targets[name].type
    try:
        model = TARGET_TYPES[kind].model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            loc = ("targets", name, *error["loc"])
            if error["type"] == "extra_forbidden":
                allowed = sorted(f.alias or n for n, f in TARGET_TYPES[kind].model_fields.items())
                key = str(error["loc"][-1])
                hint = did_you_mean(key, allowed) or f" (allowed: {', '.join(allowed)})"
                problems.append(Problem(doc.pos(loc, key=True), f"unknown key '{key}' in {kind} target{hint}", "unknown-key"))
            else:
                field = ".".join(str(p) for p in error["loc"])
                problems.append(Problem(doc.pos(loc), f"target {name}: {field}: {error['msg']}", "type"))
        return name, {}
    return name, target_config(model)


def _models(spec: ProjectSpec, doc: YamlDoc, dialect: str, problems: list[Problem]) -> dict[str, Model]:
    models: dict[str, Model] = {}
    for name, raw in spec.models.items():
        path = ("models", name)
        model = _model(name, raw, doc, path, dialect, problems)
        if model is not None:
            models[name] = model
    return models


def _model(name: str, raw: ModelSpec, doc: YamlDoc, path: tuple[str, ...], dialect: str,
           problems: list[Problem]) -> Model | None:
    if (raw.table is None) == (raw.sql is None):
        problems.append(Problem(doc.pos(path), f"model '{name}' needs exactly one of table: or sql:", "model"))
        return None
    table = query = None
    if raw.table is not None:
        try:
            table = sqlglot.exp.to_table(raw.table, dialect=dialect)
        except sqlglot.errors.ParseError as exc:
            problems.append(Problem(doc.pos((*path, "table")), f"bad table name {raw.table!r}: {exc}", "model"))
            return None
    else:
        query, found = parse_query(raw.sql or "", dialect, doc, (*path, "sql"), f"model '{name}' sql:")
        problems.extend(found)
        if query is None:
            return None
    if raw.name is not None and (raw.timestamp is None or raw.entity_key is None):
        problems.append(Problem(doc.pos(path), f"event model '{name}' (it has name:) also needs entity_key: and timestamp:", "model"))
    keys = ("table", "sql", "primary_key", "entity_key", "timestamp", "name", "updated_at", "loaded_at")
    return Model(
        name=name,
        table=table,
        query=query,
        primary_key=raw.primary_key,
        entity_key=raw.entity_key,
        timestamp=raw.timestamp,
        event_name=raw.name,
        updated_at=raw.updated_at,
        loaded_at=raw.loaded_at,
        lookback=raw.lookback,
        position=doc.pos(path, key=True),
        key_positions={k: doc.pos((*path, k)) for k in keys if getattr(raw, k) is not None},
    )


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())


def _load_file(path: Path, directory: Path, holds: str) -> tuple[YamlDoc, list[Problem]]:
    """A file of segments/ or destinations/; one that is empty (or only comments) is an
    error, not silently nothing: it is most likely a definition that was never saved."""
    doc, problems = load_yaml(path, directory)
    if not problems and doc.data is None:
        problems = [Problem(doc.pos(()), f"the file is empty: it should hold {holds}", "empty")]
    return doc, problems


def _load_segments(directory: Path, renderer: Renderer, dialect: str, models: dict[str, Model],
                   entity: str | None, spec: ProjectSpec, problems: list[Problem]) -> dict[str, Segment]:
    segments: dict[str, Segment] = {}
    for path in _yaml_files(directory / "segments"):
        doc, found = _load_file(path, directory, "a segment (a mapping) or a list of them")
        problems.extend(found)
        if found:
            continue
        problems.extend(render_tree(doc, renderer, skip=is_trigger_template))
        loaded, found = load_segments(doc, dialect=dialect, models=models, default_entity=entity,
                                      refresh=spec.refresh, full_refresh_every=spec.full_refresh_every,
                                      entity_reported=spec.entity is not None and entity is None)
        problems.extend(found)
        for segment in loaded:
            if segment.name in segments:
                first = segments[segment.name].position
                problems.append(Problem(segment.position, f"segment '{segment.name}' is defined twice (first at {first})", "duplicate"))
            else:
                segments[segment.name] = segment
    return segments


def _load_destinations(directory: Path, renderer: Renderer, problems: list[Problem]) -> dict[str, DestinationConfig]:
    from revseg.destinations.registry import UnknownDestinationTypeError, get_destination_type

    destinations: dict[str, DestinationConfig] = {}
    for path in _yaml_files(directory / "destinations"):
        doc, found = _load_file(path, directory, "one destination (a mapping)")
        problems.extend(found)
        if found:
            continue
        problems.extend(render_tree(doc, renderer))
        spec, found = validate_spec(DestinationSpec, doc, (), "destination")
        problems.extend(found)
        if spec is None:
            continue
        try:
            kind = get_destination_type(spec.type)
        except UnknownDestinationTypeError as exc:
            problems.append(Problem(doc.pos(("type",)), str(exc), "unknown-destination-type"))
            continue
        doc.data.setdefault("options", {})
        options, found = validate_spec(kind.Options, doc, ("options",), f"{spec.type} options")
        problems.extend(found)
        if options is None:
            continue
        if spec.name in destinations:
            first = destinations[spec.name].position
            problems.append(Problem(doc.pos(("name",)), f"destination '{spec.name}' is defined twice (first at {first})", "duplicate"))
            continue
        destinations[spec.name] = DestinationConfig(
            name=spec.name,
            type=spec.type,
            options=options,
            batch_size=spec.batch_size,
            rate_limit_per_s=parse_rate(spec.rate_limit) if spec.rate_limit else None,
            max_retries=spec.max_retries,
            position=doc.pos(("name",)),
            options_position=doc.pos(("options",)),
        )
    return destinations


def _check_syncs(segments: dict[str, Segment], destinations: dict[str, DestinationConfig]) -> list[Problem]:
    from revseg.destinations.registry import get_destination_type

    problems: list[Problem] = []
    for segment in segments.values():
        for sync in segment.syncs:
            config = destinations.get(sync.destination)
            if config is None:
                hint = did_you_mean(sync.destination, destinations)
                problems.append(Problem(sync.position, f"unknown destination '{sync.destination}'{hint}", "unknown-destination"))
                continue
            caps = get_destination_type(config.type).capabilities
            if sync.mode not in caps.modes:
                problems.append(Problem(sync.position, f"destination type '{config.type}' does not support mode "
                                        f"'{sync.mode}' (it supports: {', '.join(sorted(caps.modes))})", "mode"))
            if caps.identifier_kinds is not None:
                for kind in sync.identifiers:
                    if kind not in caps.identifier_kinds:
                        problems.append(Problem(sync.position, f"'{config.type}' has no identifier kind '{kind}' "
                                                f"(it knows: {', '.join(sorted(caps.identifier_kinds))})", "identifier"))
            if caps.requires_identifier and not sync.identifiers:
                problems.append(Problem(sync.position, f"'{config.type}' needs identifiers: (e.g. email: email)", "identifier"))
    return problems


__all__ = ["load_project", "PROJECT_FILE", "Position"]
