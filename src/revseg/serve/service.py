"""``revseg serve``: the scheduler of ``revseg run`` in a background thread, the HTTP API in the
calling (main) thread, and one way to stop both.

Start-up: the address is checked (no read token -> loopback only) and bound at once, so a
port in use fails fast; the scheduler then opens its session (validation, state schema,
locks) while ``/healthz`` answers 503 ``starting``. ``stop()`` (SIGTERM, SIGINT) closes the
listener, lets requests in progress finish, then stops the scheduler after its batch in
flight. If the scheduler dies, the server stops and :meth:`Service.run` raises its error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from revseg.errors import UsageError
from revseg.runner.reports import RunReport
from revseg.runner.runner import Runner
from revseg.runner.scheduler import Scheduler
from revseg.serve.app import App
from revseg.serve.auth import check_bind, is_loopback
from revseg.serve.http import HttpServer

Event = Callable[[str, dict[str, Any]], None]
DUCKDB_POLL_SECONDS = 1.0
RUN_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8470
    selectors: tuple[str, ...] = ()
    #: None: 1s on DuckDB, where ingest is the only writer and wakes continuous segments itself
    #: (the poll only catches window boundaries); 0.1s elsewhere, as ``revseg run``
    poll_interval: float | None = None


class Service:
    """One ``revseg serve`` process: build it, ``run()`` it (blocks), ``stop()`` it from anywhere."""

    def __init__(self, runner: Runner, options: ServeOptions, on_event: Event | None = None,
                 destination_extra: dict[str, Any] | None = None) -> None:
        self.options = options
        self.on_event = on_event or (lambda _kind, _data: None)
        project = runner.project
        check_bind(options.host, project.serve.get("api_token"))
        ingest_enabled = project.serve.get("write_key") is not None or is_loopback(options.host)
        poll = options.poll_interval
        if poll is None:
            poll = DUCKDB_POLL_SECONDS if project.target.get("type") == "duckdb" else RUN_POLL_SECONDS
        self.scheduler = Scheduler(runner, options.selectors, poll_interval=poll,
                                   on_report=self._report, destination_extra=destination_extra)
        self.app = App(project, self.scheduler, ingest_enabled=ingest_enabled)
        if not ingest_enabled:
            self.on_event("warning", {"message": "serve.write_key is not set: ingest is disabled off loopback"})
        try:
            self.http = HttpServer((options.host, options.port), self.app.dispatch, self.app.limit,
                                   self.app.body_error)
        except OSError as exc:
            raise UsageError(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._schedule, name="revseg-scheduler", daemon=True)
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        host = self.options.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.http.port}"

    def _report(self, report: RunReport) -> None:
        self.on_event("report", {"report": report})

    def _schedule(self) -> None:
        try:
            self.scheduler.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised by run() in the main thread
            self.app.error = exc
        finally:
            self.scheduler.ready.set()
            if not self.scheduler.stopping:  # it died on its own: take the server down with it
                self.stop()

    def run(self) -> None:
        """Serve until ``stop()``; raise the scheduler's error if it died."""
        self._thread.start()
        self.on_event("listening", {"url": self.url, "segments": list(self.scheduler.names)})
        try:
            self.http.serve_forever(poll_interval=0.1)
        finally:
            self.http.close_gracefully()  # requests in progress finish; idle connections end
            self.app.close()
            self.scheduler.stop()  # the batch in flight finishes
            self._thread.join()
        if self.app.error is not None:
            raise self.app.error

    def stop(self) -> None:
        """Idempotent and safe from a signal handler: the listener closes from another thread."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.on_event("stopping", {})
        threading.Thread(target=self.http.shutdown, name="revseg-http-shutdown", daemon=True).start()
