"""The few metrics ``revseg serve`` exposes at ``GET /metrics``, in Prometheus text format 0.0.4.

No client library: three counters keyed by label values, and one histogram, each guarded by
a lock (HTTP threads update them concurrently). Gauges that describe state (segment sizes,
freshness) are read from the state tables when scraped, so they are never stale.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: seconds: ingest-to-commit latency is a few ms on DuckDB; the tail shows contention
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Counter:
    """A monotonically increasing count per combination of label values."""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.labels = name, help_text, labels
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *values: str, by: float = 1.0) -> None:
        with self._lock:
            self._values[values] = self._values.get(values, 0.0) + by

    def value(self, *values: str) -> float:
        with self._lock:
            return self._values.get(values, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        lines += [f"{self.name}{_labels(self.labels, k)} {_number(v)}" for k, v in items]
        return lines


class Histogram:
    """Cumulative buckets, sum and count (no labels: one distribution)."""

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name, self.help, self.buckets = name, help_text, buckets
        self._counts = [0] * (len(buckets) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.buckets, seconds)] += 1
            self._sum += seconds

    def render(self) -> list[str]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
            running += count
            lines.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {running}')
        lines += [f"{self.name}_sum {_number(total)}", f"{self.name}_count {running}"]
        return lines


def gauge(name: str, help_text: str, labels: tuple[str, ...],
          samples: Iterable[tuple[tuple[str, ...], float]]) -> list[str]:
    """A gauge's lines from samples read at scrape time."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    lines += [f"{name}{_labels(labels, k)} {_number(v)}" for k, v in samples]
    return lines


class Metrics:
    """Everything serve counts; ``render`` adds the state-derived gauges."""

    def __init__(self) -> None:
        self.requests = Counter("revseg_http_requests_total", "HTTP requests answered, by route and status.",
                                ("method", "route", "status"))
        self.ingested = Counter("revseg_ingested_events_total", "Ingested calls durably written, by type.",
                                ("type",))
        self.commit_latency = Histogram("revseg_ingest_commit_seconds",
                                        "From an ingest request's receipt to the commit of its rows.")

    def render(self, members: Mapping[str, int], freshness: Mapping[str, float | None], runs: int,
               ready: bool) -> str:
        lines = gauge("revseg_segment_members", "Members of each segment's committed snapshot.", ("segment",),
                      (((name,), float(count)) for name, count in sorted(members.items())))
        lines += gauge("revseg_segment_freshness_seconds", "Seconds since each segment was last checked or run.",
                       ("segment",), (((n,), v) for n, v in sorted(freshness.items()) if v is not None))
        lines += [
            "# HELP revseg_scheduler_runs_total Scheduler passes that checked or ran due segments.",
            "# TYPE revseg_scheduler_runs_total counter",
            f"revseg_scheduler_runs_total {runs}",
        ]
        lines += gauge("revseg_scheduler_ready", "1 once the scheduler holds its session.", (),
                       [((), 1.0 if ready else 0.0)])
        lines += self.ingested.render() + self.requests.render() + self.commit_latency.render()
        return "\n".join(lines) + "\n"
