"""``revseg run``: one process that refreshes each segment on its own ``refresh`` cadence.

- ``continuous``: checked every ``poll_interval`` (and at once when ingest nudges); a check
  that finds no new data and nothing due is one query for all segments (see
  :mod:`revseg.runner.probe`) and writes nothing;
- a duration (``5m``): run when that long has passed since its last run;
- a cron expression: run at each matching minute (UTC), the first after start-up included;
- ``manual``: never run here (use ``revseg sync``).

The scheduler holds the locks of its segments for its whole life (renewing the lease), so a
``revseg sync`` elsewhere waits for it. ``stop()`` (SIGTERM) lets the batch in flight finish
and returns.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from revseg.cron import Cron
from revseg.destinations.http import EXTRA_TRANSPORT
from revseg.durations import parse_duration
from revseg.runner.reports import RunReport
from revseg.runner.runner import Runner, Session, utc_now
from revseg.runner.sync import SyncOptions, new_run_id
from revseg.state.lock import SegmentLock


class Scheduler:
    def __init__(self, runner: Runner, selectors: tuple[str, ...] = (), *, poll_interval: float = 0.1,
                 on_report: Callable[[RunReport], None] | None = None,
                 destination_extra: dict[str, Any] | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.runner = runner
        self.names = [n for n in runner.segment_names(selectors) if runner.project.segments[n].refresh != "manual"]
        self.poll_interval = poll_interval
        self.on_report = on_report or (lambda _report: None)
        self.extra = destination_extra
        self.clock = clock
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._next: dict[str, datetime] = {}
        self.session: Session | None = None
        self.ready = threading.Event()
        #: the last instant each segment was checked (freshness for the serve API)
        self.checked_at: dict[str, datetime] = {}
        self.runs = 0
        self._transport: _KeepAlive | None = None

    # -- control --------------------------------------------------------------------
    def nudge(self) -> None:
        """New rows landed (ingest): check continuous segments now."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- the loop -------------------------------------------------------------------
    def _due(self, now: datetime) -> list[str]:
        due = []
        for name in self.names:
            refresh = self.runner.project.segments[name].refresh
            if refresh == "continuous" or self._next.get(name, now) <= now:
                due.append(name)
        return due

    def _first(self, name: str, now: datetime) -> None:
        """When a segment first runs in this process: a duration at once, a cron expression at
        its next matching minute, never at start-up (its times are the user's: a trigger sync
        on ``0 9 * * 1`` must not send on a Wednesday because the process restarted)."""
        refresh = self.runner.project.segments[name].refresh
        if refresh == "continuous":
            return
        try:
            parse_duration(refresh)
        except ValueError:
            self._next[name] = Cron(refresh).next_after(now)
        else:
            self._next[name] = now

    def _schedule(self, name: str, now: datetime) -> None:
        refresh = self.runner.project.segments[name].refresh
        if refresh == "continuous":
            return
        try:
            self._next[name] = now + parse_duration(refresh)
        except ValueError:
            self._next[name] = Cron(refresh).next_after(now)

    def _sleep_seconds(self, now: datetime) -> float:
        if any(self.runner.project.segments[n].refresh == "continuous" for n in self.names):
            return self.poll_interval
        upcoming = [t for t in self._next.values()]
        if not upcoming:
            return 3600.0
        return max(0.0, min((t - now).total_seconds() for t in upcoming))

    def _destination_extra(self) -> dict[str, Any] | None:
        """One keep-alive transport for the destinations of every run (unless one is injected)."""
        if self.extra is not None and EXTRA_TRANSPORT in self.extra:
            return self.extra
        if self._transport is None:
            self._transport = _KeepAlive.create()
        if self._transport is None:
            return self.extra
        return {**(self.extra or {}), EXTRA_TRANSPORT: self._transport}

    def run(self) -> None:
        """Run until ``stop()``. Raises what a session raises (invalid project, warehouse)."""
        try:
            self._run()
        finally:
            if self._transport is not None:
                self._transport.shutdown()
                self._transport = None

    def _run(self) -> None:
        extra = self._destination_extra()
        with self.runner.session() as session:
            self.session = session
            lock = SegmentLock(session.store, new_run_id(self.clock()), self.clock)
            lock.acquire(self.names, wait_seconds=30.0)
            start = self.clock()
            for name in self.names:
                self._first(name, start)
            self.ready.set()
            try:
                while not self.stopping:
                    now = self.clock()
                    due = self._due(now)
                    if due:
                        report = session.sync(due, None, SyncOptions(now), None, extra, lock,
                                              should_stop=lambda: self.stopping)
                        self.runs += 1
                        for name in due:
                            self.checked_at[name] = now
                            self._schedule(name, now)
                        if any(s.mode != "skipped" for s in report.segments):
                            self.on_report(report)
                    lock.renew()
                    self._wake.wait(self._sleep_seconds(self.clock()))
                    self._wake.clear()
            finally:
                lock.release()
                self.session = None


class _KeepAlive(httpx.BaseTransport):
    """An httpx transport shared by every run's destinations, which close it after each run.

    Without it each sync of each run builds an ``httpx.Client``, whose SSL context alone (the
    CA bundle) costs ~50 ms, and reconnects to the API: for ``continuous`` segments that is
    most of the time between an event and its delivery. Its connection pool is thread-safe.
    """

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    @classmethod
    def create(cls) -> _KeepAlive | None:
        """None when proxies are configured: httpx applies them only to transports it builds."""
        if urllib.request.getproxies():
            return None
        return cls(httpx.HTTPTransport())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)

    def close(self) -> None:
        """A client's close at the end of a run: keep the pool for the next run."""

    def shutdown(self) -> None:
        self._inner.close()


def run_forever(scheduler: Scheduler) -> None:
    """Block in the scheduler; convenience for threads."""
    try:
        scheduler.run()
    finally:
        scheduler.ready.set()


__all__ = ["Scheduler", "run_forever", "time"]
