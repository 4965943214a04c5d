"""Routes of ``revseg serve``: what each one checks, reads or writes, and answers.

=======  ==================================  ======  ==========================================
method   route                               auth    answers
=======  ==================================  ======  ==========================================
GET      /healthz                            -       200 once the scheduler is ready, else 503
GET      /metrics                            -       Prometheus text format 0.0.4
GET      /v1/segments                        bearer  every segment: members, as_of, freshness
GET      /v1/segments/{name}/members         bearer  a page of member ids (limit, cursor)
GET      /v1/profiles/{id}/segments          bearer  the segments an entity is in
POST     /v1/track, /v1/identify, /v1/batch  basic   Segment's tracking API (DuckDB, Postgres)
=======  ==================================  ======  ==========================================

Errors are JSON: ``{"error": "..."}`` on the read API, ``{"success": false, "error": "..."}``
on ingest (Segment's shape). Requests count in ``revseg_http_requests_total`` by route
template, never by raw path, so ids do not explode the metric's cardinality.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from revseg.errors import RevsegError, did_you_mean
from revseg.runner.scheduler import Scheduler
from revseg.serve import reads
from revseg.serve.auth import basic_ok, bearer_ok
from revseg.serve.http import BodyError, Request, Response, json_response
from revseg.serve.ingest import MAX_BATCH_BYTES, MAX_CALL_BYTES, BadCall, Ingest, Unavailable
from revseg.serve.metrics import CONTENT_TYPE, Metrics
from revseg.spec.project import Project
from revseg.state.store import StateStore
from revseg.warehouse.base import Warehouse

Handler = Callable[[Request, dict[str, str]], Response]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: str | None  # None | "bearer" | "basic"


class NotReady(Exception):
    """The scheduler has not opened its session yet, or has stopped (503)."""


class Pool:
    """Connections for HTTP threads, cloned from the scheduler's session (one process owns a
    DuckDB file). The scheduler's connection is touched once, to clone a root; every other
    connection is cloned from that root, under a lock."""

    def __init__(self, source: Warehouse, size: int = 8) -> None:
        self._root = source.clone()
        self._idle: list[Warehouse] = []
        self._all: list[Warehouse] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def connection(self) -> Iterator[Warehouse]:
        with self._slots:
            with self._lock:
                warehouse = self._idle.pop() if self._idle else None
                if warehouse is None:
                    warehouse = self._root.clone()
                    self._all.append(warehouse)
            try:
                yield warehouse
            finally:
                with self._lock:
                    self._idle.append(warehouse)

    def close(self) -> None:
        with self._lock:
            for warehouse in [*self._all, self._root]:
                try:
                    warehouse.close()
                except Exception:  # noqa: BLE001 - closing on the way out; the session closes the rest
                    pass
            self._all, self._idle = [], []


class App:
    """Answers requests for one project, next to the scheduler that keeps it fresh."""

    def __init__(self, project: Project, scheduler: Scheduler, *, ingest_enabled: bool = True,
                 metrics: Metrics | None = None) -> None:
        self.project = project
        self.scheduler = scheduler
        self.metrics = metrics or Metrics()
        self.api_token = project.serve.get("api_token")
        self.write_key = project.serve.get("write_key")
        self.ingest_enabled = ingest_enabled
        self.error: BaseException | None = None  # the scheduler's, once it died
        self._pool: Pool | None = None
        self._ingest: Ingest | None = None
        self._setup = threading.Lock()
        #: one writer at a time: DuckDB would otherwise abort conflicting upserts
        self._write = threading.Lock()
        self.routes = [
            self._route("GET", "/healthz", self.healthz, None),
            self._route("GET", "/metrics", self.prometheus, None),
            self._route("GET", "/v1/segments", self.list_segments, "bearer"),
            self._route("GET", "/v1/segments/{name}/members", self.segment_members, "bearer"),
            self._route("GET", "/v1/profiles/{id}/segments", self.profile_segments, "bearer"),
            self._route("POST", "/v1/track", self.ingest, "basic"),
            self._route("POST", "/v1/identify", self.ingest, "basic"),
            self._route("POST", "/v1/batch", self.ingest, "basic"),
        ]

    @staticmethod
    def _route(method: str, template: str, handler: Handler, auth: str | None) -> Route:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        return Route(method, template, re.compile(f"^{regex}/?$"), handler, auth)

    # -- dispatch ---------------------------------------------------------------------
    def limit(self, method: str, path: str) -> tuple[int, str]:
        """Segment's size limits: 500 KB per batch request, 32 KB per single call."""
        if path.rstrip("/") == "/v1/batch":
            return MAX_BATCH_BYTES, "per batch"
        return MAX_CALL_BYTES, "per call"

    def body_error(self, method: str, path: str, error: BodyError) -> Response:
        """A body that could not be read (too large, bad encoding): 400, in the route's shape."""
        route = next((r for r in self.routes if r.pattern.match(path)), None)
        ingest = route is not None and route.auth == "basic"
        body = {"success": False, "error": str(error)} if ingest else {"error": str(error)}
        self.metrics.requests.inc(method, route.template if route else "(unknown)", "400")
        return json_response(400, body)

    def dispatch(self, request: Request) -> Response:
        template = "(unknown)"
        try:
            response, template = self._dispatch(request)
        except Exception as exc:  # noqa: BLE001 - a handler bug must answer 500, not drop the connection
            response = json_response(500, {"error": f"internal error: {type(exc).__name__}: {self._redact(exc)}"})
        self.metrics.requests.inc(request.method, template, str(response.status))
        return response

    def _dispatch(self, request: Request) -> tuple[Response, str]:
        allowed = []
        for route in self.routes:
            match = route.pattern.match(request.path)
            if match is None:
                continue
            if route.method != request.method and not (route.method == "GET" and request.method == "HEAD"):
                allowed.append(route.method)
                continue
            denied = self._authenticate(route, request)
            if denied is not None:
                return denied, route.template
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            return route.handler(request, params), route.template
        if allowed:
            return json_response(405, {"error": f"use {' or '.join(sorted(set(allowed)))} on {request.path}"},
                                 {"Allow": ", ".join(sorted(set(allowed)))}), "(method)"
        return json_response(404, {"error": f"no route {request.method} {request.path}"}), "(unknown)"

    def _authenticate(self, route: Route, request: Request) -> Response | None:
        header = request.headers.get("authorization")
        if route.auth == "bearer" and not bearer_ok(header, self.api_token):
            return json_response(401, {"error": "missing or wrong API token: send Authorization: Bearer <serve.api_token>"},
                                 {"WWW-Authenticate": 'Bearer realm="revseg"'})
        if route.auth == "basic":
            if not self.ingest_enabled:
                return json_response(403, {"success": False, "error": "ingest is disabled: serve.write_key is not set "
                                           "and the server listens beyond loopback"})
            if not basic_ok(header, self.write_key):
                return json_response(401, {"success": False, "error": "missing or wrong write key: use basic auth "
                                           "with the write key as the user and an empty password"},
                                     {"WWW-Authenticate": 'Basic realm="revseg"'})
        return None

    def _redact(self, exc: BaseException) -> str:
        return self.project.secrets.redact(str(exc))

    # -- state ------------------------------------------------------------------------
    def _ready(self) -> tuple[Pool, Ingest]:
        """The pool and ingest, built on first use once the scheduler holds its session."""
        if self._pool is not None and self._ingest is not None and self.scheduler.session is not None:
            return self._pool, self._ingest
        with self._setup:
            session = self.scheduler.session
            if session is None or self.scheduler.stopping:
                raise NotReady("stopping" if self.scheduler.stopping or self.error else "starting")
            if self._pool is None:
                self._pool = Pool(session.warehouse)
                self._ingest = Ingest(self.project, session.catalog, session.warehouse.type_name,
                                      writable=session.warehouse.accepts_ingest)
            assert self._ingest is not None
            return self._pool, self._ingest

    def close(self) -> None:
        with self._setup:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    @staticmethod
    def _not_ready(reason: NotReady, ingest: bool = False) -> Response:
        message = f"revseg serve is {reason}: the scheduler is not serving its session (retry shortly)"
        body: dict[str, Any] = {"success": False, "error": message} if ingest else {"error": message}
        return json_response(503, body, {"Retry-After": "1"})

    # -- health and metrics -----------------------------------------------------------
    def healthz(self, request: Request, params: dict[str, str]) -> Response:
        if self.error is not None:
            return json_response(503, {"status": "failed", "error": self._redact(self.error)})
        if self.scheduler.session is None or not self.scheduler.ready.is_set():
            return json_response(503, {"status": "stopping" if self.scheduler.stopping else "starting"})
        return json_response(200, {"status": "ok"})

    def prometheus(self, request: Request, params: dict[str, str]) -> Response:
        members: dict[str, int] = {}
        freshness: dict[str, float | None] = {}
        try:
            pool, _ = self._ready()
            with pool.connection() as warehouse:
                state = reads.segments(self.project, StateStore(warehouse, self.project.state_schema),
                                       dict(self.scheduler.checked_at), _now())
            for segment in state["segments"]:
                members[segment["name"]] = segment["members"]
                freshness[segment["name"]] = segment["freshness_seconds"]
        except NotReady:
            pass
        text = self.metrics.render(members, freshness, self.scheduler.runs, self.scheduler.session is not None)
        return Response(200, text.encode(), CONTENT_TYPE)

    # -- read API ---------------------------------------------------------------------
    def _read(self, fn: Callable[[StateStore], dict[str, Any]]) -> Response:
        try:
            pool, _ = self._ready()
        except NotReady as exc:
            return self._not_ready(exc)
        try:
            with pool.connection() as warehouse:
                return json_response(200, fn(StateStore(warehouse, self.project.state_schema)))
        except reads.BadQuery as exc:
            return json_response(400, {"error": str(exc)})
        except RevsegError as exc:
            return json_response(503, {"error": self._redact(exc)})

    def list_segments(self, request: Request, params: dict[str, str]) -> Response:
        return self._read(lambda store: reads.segments(self.project, store, dict(self.scheduler.checked_at), _now()))

    def segment_members(self, request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        if name not in self.project.segments:
            known = sorted(self.project.segments)
            return json_response(404, {"error": f"unknown segment '{name}'{did_you_mean(name, known)}"})
        try:
            limit = reads.parse_limit(request.param("limit"))
        except reads.BadQuery as exc:
            return json_response(400, {"error": str(exc)})
        cursor = request.param("cursor")
        return self._read(lambda store: reads.members(store, name, limit, cursor))

    def profile_segments(self, request: Request, params: dict[str, str]) -> Response:
        return self._read(lambda store: reads.profile(self.project, store, params["id"]))

    # -- ingest -----------------------------------------------------------------------
    def ingest(self, request: Request, params: dict[str, str]) -> Response:
        kind = request.path.rstrip("/").rsplit("/", 1)[-1]
        try:
            pool, ingest = self._ready()
        except NotReady as exc:
            return self._not_ready(exc, ingest=True)
        try:
            calls = ingest.parse(kind, request.body, request.received)
        except BadCall as exc:
            return json_response(400, {"success": False, "error": str(exc)})
        except Unavailable as exc:
            return json_response(501, {"success": False, "error": str(exc)})
        try:
            with pool.connection() as warehouse, self._write:
                ingest.write(warehouse, calls)
        except RevsegError as exc:
            return json_response(500, {"success": False, "error": f"nothing was written: {self._redact(exc)}"})
        self.metrics.commit_latency.observe(time.perf_counter() - request.started)
        for call in calls:
            self.metrics.ingested.inc(type(call).__name__.lower())
        if calls:
            self.scheduler.nudge()
        return json_response(200, {"success": True})


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
