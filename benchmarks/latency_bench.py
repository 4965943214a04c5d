"""Event-to-destination latency of ``revseg serve``: from a track call to the webhook add.

    python benchmarks/latency_bench.py                  # 1M customers, 10M events, 200 events
    python benchmarks/latency_bench.py --small          # 50k / 500k, a quick check
    python benchmarks/latency_bench.py --py-spy out.txt # also sample the serve process (py-spy)

What it does:

1. generates ``customers`` and ``events`` (30 days of history ending now, stored in time order
   as an appended event table is; ``--shuffled`` for random order) in a DuckDB file with
   DuckDB SQL only (``range()`` and ``hash()``);
2. writes a project: a ``continuous`` segment, ``added_to_cart`` within 10m and not followed
   by ``order_completed``, mirrored to a webhook destination whose receiver runs in this
   process and timestamps each add as it arrives;
3. starts ``revseg serve`` as a subprocess and waits until its first (full) run is delivered;
4. POSTs ``--count`` qualifying track calls one at a time with httpx (``--spacing`` apart),
   each for a customer not in the segment, and records, per call, the time from the POST's
   start to its answer (committed) and to the receiver's add for that id;
5. then sends ``--client-count`` events through the official client ``segment.analytics``,
   first with its default settings (a background thread uploads every ``upload_interval``,
   0.5 s, or every 100 calls), then with ``sync_mode=True`` (each call posts at once):
   the difference is the delay the client's own batching adds;
6. prints a table of p50 / p90 / p99 / max per measure; targets: p50 < 100 ms, p99 < 250 ms
   from POST to destination. Exit 1 if they are missed (``--no-check`` to always exit 0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from revseg.sandbox.webhook import Delivery, WebhookReceiver

SEGMENT = "cart_abandoners"
TARGET_P50, TARGET_P99 = 0.100, 0.250
WRITE_KEY, API_TOKEN = "bench-write-key", "bench-api-token"


# -- data ------------------------------------------------------------------------------
def generate(db: Path, customers: int, events: int, now: datetime, shuffled: bool = False) -> None:
    """Events are stored in time order, as an event table that is appended to as events happen
    is (DuckDB's min/max per row group then skips old rows); ``shuffled`` stores them in random
    order instead, the worst case for every time-window scan."""
    import duckdb

    at = f"TIMESTAMP '{now:%Y-%m-%d %H:%M:%S}'"
    con = duckdb.connect(str(db))
    try:
        con.execute(f"""
            CREATE TABLE customers AS
            SELECT i::BIGINT AS customer_id, 'user' || i || '@example.com' AS email,
                   (['US','GB','DE','FR','CA'])[1 + (hash(i, 'country') % 5)::INT] AS country,
                   {at} - to_seconds((hash(i, 'upd') % (365 * 86400))::BIGINT) AS updated_at
            FROM range(1, {customers} + 1) t(i)""")
        con.execute(f"""
            CREATE TABLE events AS
            SELECT (1 + hash(k, 'ec') % {customers})::BIGINT AS customer_id,
                   (['product_viewed','product_viewed','product_viewed','product_viewed','page_viewed',
                     'page_viewed','added_to_cart','order_completed','search','search'])
                     [1 + (hash(k, 'en') % 10)::INT] AS event_name,
                   {at} - to_seconds((hash(k, 'ets') % (30 * 86400))::BIGINT) AS ts,
                   (['shoes','shirts','bags','hats','toys'])[1 + (hash(k, 'cat') % 5)::INT] AS category
            FROM range({events}) t(k)
            ORDER BY {"hash(k, 'shuffle')" if shuffled else "ts"}""")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def write_project(project: Path, receiver_url: str) -> None:
    (project / "segments").mkdir(parents=True, exist_ok=True)
    (project / "destinations").mkdir(parents=True, exist_ok=True)
    (project / "revseg.yml").write_text(f"""\
name: latency_bench
target: dev
targets:
  dev:
    type: duckdb
    path: warehouse.duckdb
entity: customers
models:
  customers:
    table: customers
    primary_key: customer_id
    updated_at: updated_at
  events:
    table: events
    entity_key: customer_id
    timestamp: ts
    name: event_name
serve:
  api_token: {API_TOKEN}
  write_key: {WRITE_KEY}
""")
    (project / "segments" / f"{SEGMENT}.yml").write_text(f"""\
name: {SEGMENT}
refresh: continuous
where:
  event: added_to_cart
  within: 10m
  not_followed_by:
    event: order_completed
traits:
  email: email
syncs:
  - destination: hooks
""")
    (project / "destinations" / "hooks.yml").write_text(f"""\
name: hooks
type: webhook
options:
  url: {receiver_url}
""")


# -- the receiver ----------------------------------------------------------------------
class Arrivals:
    """perf_counter() of the first add of each id, and an event per id to wait on."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self._waiters: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def expect(self, record_id: str) -> threading.Event:
        with self._lock:
            event = self._waiters.setdefault(record_id, threading.Event())
            if record_id in self.at:
                event.set()
            return event

    def __call__(self, delivery: Delivery) -> None:
        now = time.perf_counter()
        if delivery.status != 200:
            return
        for op in delivery.json()["operations"]:
            if op["op"] != "add":
                continue
            with self._lock:
                self.at.setdefault(op["id"], now)
                waiter = self._waiters.get(op["id"])
            if waiter is not None:
                waiter.set()


# -- measuring ---------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    sys.exit(f"timed out after {timeout:.0f}s waiting for {what}")


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def send_httpx(base: str, ids: list[str], spacing: float, arrivals: Arrivals,
               timeout: float) -> tuple[list[float], list[float], int]:
    """One track call at a time; returns (answer latencies, destination latencies, misses)."""
    answered, delivered, missed = [], [], 0
    with httpx.Client(base_url=base, auth=(WRITE_KEY, ""), timeout=10) as client:
        client.get("/healthz")  # open the keep-alive connection first
        for record_id in ids:
            waiter = arrivals.expect(record_id)
            started = time.perf_counter()
            response = client.post("/v1/track", json={"userId": record_id, "event": "added_to_cart",
                                                      "timestamp": iso_now(), "properties": {"category": "bench"}})
            answered.append(time.perf_counter() - started)
            if response.status_code != 200:
                sys.exit(f"track answered {response.status_code}: {response.text}")
            if waiter.wait(timeout):
                delivered.append(arrivals.at[record_id] - started)
            else:
                missed += 1
            time.sleep(max(0.0, spacing - (time.perf_counter() - started)))
    return answered, delivered, missed


def send_client(base: str, ids: list[str], spacing: float, arrivals: Arrivals, timeout: float,
                sync_mode: bool) -> tuple[list[float], int]:
    """Through segment.analytics; latency from track() to the receiver's add."""
    from segment.analytics.client import Client

    client = Client(write_key=WRITE_KEY, host=base, sync_mode=sync_mode)
    delivered, missed = [], 0
    try:
        for record_id in ids:
            waiter = arrivals.expect(record_id)
            started = time.perf_counter()
            client.track(user_id=record_id, event="added_to_cart", properties={"category": "bench"})
            if waiter.wait(timeout):
                delivered.append(arrivals.at[record_id] - started)
            else:
                missed += 1
            time.sleep(max(0.0, spacing - (time.perf_counter() - started)))
    finally:
        if not sync_mode:  # sync_mode has no queue nor consumer thread
            client.flush()
            client.join()
    return delivered, missed


def row(name: str, values: list[float], missed: int = 0) -> list[str]:
    ms = [v * 1000 for v in values]
    return [name, str(len(values)), str(missed), *(f"{x:.1f}" for x in (
        percentile(ms, 0.5), percentile(ms, 0.9), percentile(ms, 0.99), max(ms) if ms else float("nan"),
        statistics.fmean(ms) if ms else float("nan")))]


def print_table(rows: list[list[str]]) -> None:
    head = ["measure (ms)", "n", "missed", "p50", "p90", "p99", "max", "mean"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    print(fmt(head))
    print(fmt(["-" * w for w in widths]))
    for r in rows:
        print(fmt(r))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--small", action="store_true", help="50k customers, 500k events")
    parser.add_argument("--shuffled", action="store_true", help="store events in random order, not time order")
    parser.add_argument("--count", type=int, default=200, help="track calls sent with httpx")
    parser.add_argument("--client-count", type=int, default=40, help="calls per official-client mode (0: skip)")
    parser.add_argument("--spacing", type=float, default=0.075, help="seconds between call starts")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each add")
    parser.add_argument("--poll-interval", type=float, default=None, help="serve --poll-interval")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temp dir, removed after")
    parser.add_argument("--py-spy", type=Path, default=None,
                        help="record the serve process with py-spy during the httpx phase (raw stacks)")
    parser.add_argument("--no-check", action="store_true", help="exit 0 even if the targets are missed")
    args = parser.parse_args(argv)
    if args.small:
        args.customers, args.events = 50_000, 500_000

    root = (args.data_dir or Path(tempfile.mkdtemp(prefix="revseg-latency-"))).resolve()
    project = root / "project"
    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    arrivals = Arrivals()
    receiver = WebhookReceiver(on_delivery=arrivals).start()
    serve: subprocess.Popen[bytes] | None = None
    spy: subprocess.Popen[bytes] | None = None
    try:
        started = time.perf_counter()
        now = datetime.now(UTC).replace(tzinfo=None)
        generate(project / "warehouse.duckdb", args.customers, args.events, now, args.shuffled)
        print(f"data: {args.customers:,} customers, {args.events:,} events in {time.perf_counter() - started:.1f}s "
              f"({project})", flush=True)
        write_project(project, receiver.url)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "revseg", "serve", "--project-dir", str(project), "--port", str(port)]
        if args.poll_interval is not None:
            command += ["--poll-interval", str(args.poll_interval)]
        log = open(project / "serve.log", "wb")  # noqa: SIM115 - closed with the process
        serve = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        started = time.perf_counter()

        def first_run_delivered() -> bool:
            if serve is not None and serve.poll() is not None:
                sys.exit(f"revseg serve exited {serve.returncode}: see {project / 'serve.log'}")
            try:
                doc = httpx.get(f"{base}/v1/segments", headers={"Authorization": f"Bearer {API_TOKEN}"}).json()
            except httpx.HTTPError:
                return False
            return bool(doc.get("segments")) and doc["segments"][0]["as_of"] is not None

        wait_until(first_run_delivered, 600, "the first run")
        time.sleep(1.0)
        print(f"serve ready, first run delivered in {time.perf_counter() - started:.1f}s "
              f"({len(arrivals.at)} members at start)", flush=True)

        # customers far from the generated carts: not members, no order_completed after now
        total = args.count + 2 * args.client_count
        step = max(1, args.customers // (total + 1))
        ids = [str(1 + i * step) for i in range(total)]
        ids = [i for i in ids if i not in arrivals.at][:total]
        if args.py_spy is not None:
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(serve.pid), "--format", "raw", "--rate", "250",
                                    "--output", str(args.py_spy), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        answered, delivered, missed = send_httpx(base, ids[:args.count], args.spacing, arrivals, args.timeout)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        rows = [row("httpx POST -> 200 (committed)", answered),
                row("httpx POST -> receiver add", delivered, missed)]
        if args.client_count:
            rest = ids[args.count:]
            batched, missed_b = send_client(base, rest[:args.client_count], args.spacing * 4, arrivals,
                                            args.timeout, sync_mode=False)
            direct, missed_d = send_client(base, rest[args.client_count:2 * args.client_count], args.spacing * 4,
                                           arrivals, args.timeout, sync_mode=True)
            rows += [row("segment.analytics default -> add", batched, missed_b),
                     row("segment.analytics sync_mode -> add", direct, missed_d)]
        print()
        print_table(rows)
        p50, p99 = percentile(delivered, 0.5), percentile(delivered, 0.99)
        ok = missed == 0 and p50 < TARGET_P50 and p99 < TARGET_P99
        print(f"\nPOST -> destination: p50 {p50 * 1000:.1f} ms (target < {TARGET_P50 * 1000:.0f}), "
              f"p99 {p99 * 1000:.1f} ms (target < {TARGET_P99 * 1000:.0f}): {'met' if ok else 'MISSED'}")
        if args.client_count:
            added = statistics.median(batched) - statistics.median(direct)
            print(f"official client batching adds {added * 1000:.0f} ms at the median "
                  "(upload_interval 0.5 s by default; sync_mode=True posts each call at once)")
        return 0 if ok or args.no_check else 1
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        if serve is not None and serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(60)
            except subprocess.TimeoutExpired:
                serve.kill()
        receiver.stop()
        if args.data_dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
