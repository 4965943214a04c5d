"""The facade every command calls: load and validate a project, compile, preview, plan, sync.

The runner never prints; the CLI renders what it returns. It is also the Python API:

    >>> from revseg.runner import Runner                       # doctest: +SKIP
    >>> Runner("path/to/project").preview("vip").members[:3]   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from revseg.compile.catalog import Catalog
from revseg.compile.membership import ID, membership_query
from revseg.errors import Position, Problem, ProjectError, UsageError, did_you_mean
from revseg.project.loader import load_project
from revseg.runner.catalog import check_segments, read_catalog
from revseg.runner.reports import RunReport
from revseg.spec.project import Project
from revseg.warehouse.base import Warehouse
from revseg.warehouse.registry import warehouse_for

if TYPE_CHECKING:  # the sync path pulls in pyarrow: validate and preview do without it
    from revseg.runner.sync import Progress, SyncOptions
    from revseg.state.lock import SegmentLock
    from revseg.state.store import StateStore


def utc_now() -> datetime:
    """Now, as naive UTC (membership never depends on the machine's time zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


def normalize_as_of(as_of: datetime | None) -> datetime:
    if as_of is None:
        return utc_now()
    if as_of.tzinfo is not None:
        return as_of.astimezone(UTC).replace(tzinfo=None)
    return as_of


@dataclass(frozen=True)
class Member:
    id: str
    traits: dict[str, Any]


@dataclass
class PreviewResult:
    segment: str
    as_of: datetime
    members: list[Member] = field(default_factory=list)
    total: int = 0


@dataclass
class Session:
    """One open connection to the warehouse with the project validated against it."""

    project: Project
    warehouse: Warehouse
    catalog: Catalog
    store: StateStore
    #: each segment's last run as recorded through this session (see SyncRun.known)
    known: dict[str, Any] = field(default_factory=dict)

    def sync(self, names: list[str], only: set[str] | None, options: SyncOptions,
             progress: Progress | None = None, destination_extra: dict[str, Any] | None = None,
             lock: SegmentLock | None = None, should_stop: Callable[[], bool] | None = None) -> RunReport:
        from revseg.runner.sync import SyncRun

        run = SyncRun(self.project, self.catalog, self.store, options, utc_now, progress, destination_extra,
                      self.known)
        if should_stop is not None:
            run.should_stop = should_stop
        return run.run(names, only, lock)


class Runner:
    """One project on one target. Cheap to build; the project loads on first use."""

    def __init__(self, project_dir: Path | str = ".", target: str | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.project_dir = Path(project_dir)
        self.target = target
        self.environ = environ
        self._project: Project | None = None

    @property
    def project(self) -> Project:
        """The loaded project (structural validation only; raises ProjectError)."""
        if self._project is None:
            self._project = load_project(self.project_dir, self.target, self.environ)
        return self._project

    # -- connections and validation -------------------------------------------------
    @contextmanager
    def warehouse(self) -> Iterator[Warehouse]:
        with warehouse_for(self.project.target, self.project.directory) as warehouse:
            yield warehouse

    def checked(self, warehouse: Warehouse, as_of: datetime | None = None) -> Catalog:
        """Validate the whole project against the warehouse's columns; return the catalog."""
        catalog, problems = read_catalog(self.project, warehouse)
        if not problems:
            problems = check_segments(self.project, catalog, warehouse, normalize_as_of(as_of))
        if problems:
            raise ProjectError(self._redacted(problems))
        return catalog

    def _redacted(self, problems: list[Problem]) -> list[Problem]:
        secrets = self.project.secrets
        return [Problem(p.position, secrets.redact(p.message), p.code) for p in problems]

    def validate(self) -> Project:
        """Every check, the warehouse's columns included; raise ProjectError with all problems.

        Column checks run on whatever loaded even when files have other problems, so one run
        reports everything; if the warehouse is unreachable then, the file problems win.
        """
        from revseg.errors import WarehouseError
        from revseg.project.loader import read_project

        project, problems = read_project(self.project_dir, self.target, self.environ)
        if not problems:
            assert project is not None
            self._project = project
            with self.warehouse() as warehouse:
                self.checked(warehouse)
            return project
        if project is not None and project.target:
            try:
                with warehouse_for(project.target, project.directory) as warehouse:
                    catalog, found = read_catalog(project, warehouse)
                    problems += found + check_segments(project, catalog, warehouse, utc_now())
            except WarehouseError:
                pass
            problems = [Problem(p.position, project.secrets.redact(p.message), p.code) for p in problems]
        raise ProjectError(problems)

    def segment_names(self, selectors: list[str] | tuple[str, ...] = ()) -> list[str]:
        """Segments matching ``--select`` (name, ``tag:T``, ``destination:D``), in dependency order."""
        from revseg.project.segments import dependency_order

        order = dependency_order(self.project.segments)
        if not selectors:
            return order
        chosen: set[str] = set()
        for selector in selectors:
            matched = self._select(selector)
            if not matched:
                raise UsageError(f"--select {selector!r} matches no segment"
                                 f"{did_you_mean(selector, self._selectors(order))}")
            chosen |= matched
        return [name for name in order if name in chosen]

    def _selectors(self, order: list[str]) -> list[str]:
        """Every selector that matches something: names, then ``tag:T``, then ``destination:D``."""
        segments = self.project.segments.values()
        tags = sorted({tag for s in segments for tag in s.tags})
        destinations = sorted({y.destination for s in segments for y in s.syncs})
        return [*order, *(f"tag:{t}" for t in tags), *(f"destination:{d}" for d in destinations)]

    def _select(self, selector: str) -> set[str]:
        segments = self.project.segments
        if selector.startswith("tag:"):
            tag = selector[4:]
            return {s.name for s in segments.values() if tag in s.tags}
        if selector.startswith("destination:"):
            dest = selector[len("destination:"):]
            return {s.name for s in segments.values() if any(y.destination == dest for y in s.syncs)}
        return {selector} if selector in segments else set()

    def _segment(self, name: str) -> None:
        if name not in self.project.segments:
            known = sorted(self.project.segments)
            raise UsageError(f"unknown segment '{name}'{did_you_mean(name, known)} (segments: {', '.join(known) or 'none'})")

    # -- compile and preview --------------------------------------------------------
    def compile(self, segment: str, dialect: str | None = None, as_of: datetime | None = None,
                incremental: bool = False) -> str:
        """The membership SQL of a segment, in ``dialect`` (default: the target's).

        ``incremental``: the two statements of an incremental run instead: the candidates
        since the previous run (from state; else as_of itself) and the membership of only
        those candidates.
        """
        self._segment(segment)
        moment = normalize_as_of(as_of)
        with self.warehouse() as warehouse:
            catalog = self.checked(warehouse, moment)
            out = dialect or warehouse.dialect
            if not incremental:
                return membership_query(self.project, catalog, segment, moment).sql(dialect=out, pretty=True)
            return self._compile_incremental(warehouse, catalog, segment, moment, out)

    def _compile_incremental(self, warehouse: Warehouse, catalog: Catalog, segment: str, moment: datetime,
                             dialect: str) -> str:
        from revseg.compile.candidates import NotIncremental, candidates_query, plan_incremental
        from revseg.state.store import StateStore
        from revseg.state.watermarks import last_run

        try:
            plan = plan_incremental(self.project, self.project.segments[segment])
        except NotIncremental as exc:
            raise UsageError(f"segment '{segment}' is always evaluated in full: {exc}") from None
        store = StateStore(warehouse, self.project.state_schema)
        previous = last_run(store, segment) if store.exists("segment_state") else None
        since = previous.as_of if previous is not None else moment
        candidates = exp.table_("candidates", quoted=True)
        keys = candidates_query(self.project, catalog, plan, since, moment)
        members = membership_query(self.project, catalog, segment, moment, candidates=candidates)
        create = exp.Create(this=candidates.copy(), kind="TABLE", expression=keys,
                            properties=exp.Properties(expressions=[exp.TemporaryProperty()]))
        return (f"-- 1. candidates: entities that can have changed since {since.isoformat()}Z\n"
                f"{create.sql(dialect=dialect, pretty=True)};\n\n"
                f"-- 2. their membership at {moment.isoformat()}Z\n"
                f"{members.sql(dialect=dialect, pretty=True)};")

    def preview(self, segment: str, as_of: datetime | None = None, limit: int | None = None) -> PreviewResult:
        """Compute membership without writing anything. ``limit=None`` returns every member."""
        self._segment(segment)
        moment = normalize_as_of(as_of)
        with self.warehouse() as warehouse:
            catalog = self.checked(warehouse, moment)
            query = membership_query(self.project, catalog, segment, moment)
            members_q = exp.select("*").from_(query.subquery("m")).order_by(exp.column(ID, quoted=True))
            if limit is not None:
                members_q = members_q.limit(limit)
            count_q = exp.select(exp.Count(this=exp.Star())).from_(query.subquery("m"))
            rows = warehouse.fetchall(members_q)
            total = int(warehouse.fetchall(count_q)[0][0])
            columns = query.named_selects
            result = PreviewResult(segment, moment, total=total)
            for row in rows:
                record = dict(zip(columns, row, strict=False))
                result.members.append(Member(str(record.pop(ID)), record))
            return result


    # -- plan and sync --------------------------------------------------------------
    def sync(self, selectors: list[str] | tuple[str, ...] = (), as_of: datetime | None = None,
             full_refresh: bool = False, max_remove_pct: float | None = None,
             progress: Progress | None = None, lock_wait_seconds: float = 30.0,
             destination_extra: dict[str, Any] | None = None) -> RunReport:
        """Compute, diff, deliver and commit the selected segments' syncs."""
        from revseg.runner.sync import SyncOptions

        options = SyncOptions(normalize_as_of(as_of), full_refresh=full_refresh, max_remove_pct=max_remove_pct,
                              lock_wait_seconds=lock_wait_seconds)
        return self._run(selectors, options, progress, destination_extra)

    def plan(self, selectors: list[str] | tuple[str, ...] = (), as_of: datetime | None = None) -> RunReport:
        """What the next sync would add, remove, update and trigger, per sync; sends nothing."""
        from revseg.runner.sync import SyncOptions

        return self._run(selectors, SyncOptions(normalize_as_of(as_of), dry_run=True), None, None)

    def _run(self, selectors: list[str] | tuple[str, ...], options: SyncOptions, progress: Progress | None,
             destination_extra: dict[str, Any] | None) -> RunReport:
        names = self.segment_names(selectors)
        only = self._sync_filter(selectors)
        with self.session(options.as_of) as session:
            return session.sync(names, only, options, progress, destination_extra)

    @contextmanager
    def session(self, as_of: datetime | None = None) -> Iterator[Session]:
        """A connected, validated project for many runs (``revseg run`` and ``serve``)."""
        from revseg.state.store import StateStore

        with self.warehouse() as warehouse:
            catalog = self.checked(warehouse, as_of)
            store = StateStore(warehouse, self.project.state_schema)
            store.ensure()
            yield Session(self.project, warehouse, catalog, store)

    def status(self) -> dict[str, Any]:
        """Per segment and sync: members, last run, freshness lag, outcomes, open rejections."""
        from revseg.runner.status import project_status
        from revseg.state.store import StateStore

        with self.warehouse() as warehouse:
            return project_status(self.project, StateStore(warehouse, self.project.state_schema), utc_now())

    def history(self, segment: str) -> list[dict[str, Any]]:
        """Past runs of a segment, oldest first, with its membership size at each."""
        from revseg.runner.status import segment_history
        from revseg.state.store import StateStore

        self._segment(segment)
        with self.warehouse() as warehouse:
            return segment_history(StateStore(warehouse, self.project.state_schema), segment)

    def _sync_filter(self, selectors: list[str] | tuple[str, ...]) -> set[str] | None:
        """``destination:D`` selects only that destination's syncs of the chosen segments."""
        dests = {s[len("destination:"):] for s in selectors if s.startswith("destination:")}
        if not dests or len(dests) != len(selectors):
            return None
        return {y.name for seg in self.project.segments.values() for y in seg.syncs if y.destination in dests}


__all__ = ["Runner", "Member", "PreviewResult", "Position", "utc_now"]
