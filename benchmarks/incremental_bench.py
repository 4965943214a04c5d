"""Incremental vs full ``revseg sync``: one small append between two as_of one minute apart.

    python benchmarks/incremental_bench.py            # 1M customers, 10M events, 2M orders
    python benchmarks/incremental_bench.py --small    # 50k / 500k / 100k, a quick check

What it does:

1. generates customers / events / orders with ``sync_bench.generate`` (DuckDB SQL only) and
   adds a ``loaded_at`` column (= the row's own timestamp) to events and orders, so the
   project's models declare ``updated_at`` (customers) and ``loaded_at`` + ``timestamp``
   (events, orders): every segment can be run incrementally (SPEC 4);
2. writes a project with two segments, each mirrored to its own ``file`` destination:
   ``big_spenders`` (lifetime_value >= --min-ltv AND sum(orders.amount) within 90d >=
   --min-spend; a few hundred thousand members at the default size) and ``cart_abandoners_rt``
   (added_to_cart within 30m, not_followed_by order_completed);
3. in process, with ``revseg.runner.Runner(project).sync(as_of=...)`` (only that call is
   timed; revseg is imported and a warm-up sync is run on a tiny separate project first):
   - ``initial``: the first sync at AS_OF (full: nothing committed yet);
   - ``incremental``: append --new-events events (and --new-orders orders) with ts/loaded_at in
     (AS_OF, AS_OF + 1m], then sync at AS_OF + 1m; afterwards the committed membership of both
     segments (state ``segment_members``) is checked against ``Runner.preview`` (a full
     evaluation) at that as_of;
   - ``full-refresh``: append as many again in (AS_OF + 1m, AS_OF + 2m], sync at AS_OF + 2m with
     ``full_refresh=True``;
   - ``no-op``: sync again at AS_OF + 2m with nothing new: every segment should be ``skipped``;
4. then, as ``revseg run`` and ``serve`` work (one session connected and validated once, the
   segments' lock held, each run a ``Session.sync``): an incremental run and a full-refresh
   run after the same appends, and 30 runs with nothing new (their median is the no-op);
5. repeats the in-process steps on a copy of the freshly generated warehouse with the CLI
   (``python -m revseg sync --as-of T --json [--full-refresh]``), timing each subprocess's
   wall time (interpreter start, imports, load and validation included);
6. prints one table per way of running, the ratio incremental / full-refresh (target <= 0.1)
   and the no-op time (target: a few ms in process), plus the 1-minute load average at each
   step (the timings mean little on a busy machine).

Exit status 1 if the membership check fails or the no-op run is not skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sync_bench import AS_OF, compile_revseg, generate, project_yml, ts  # noqa: E402  (data and project are shared)

BIG = "big_spenders"
RT = "cart_abandoners_rt"
SEGMENTS = (BIG, RT)
STEP = timedelta(minutes=1)
POLLS = 30  # resident no-op runs (median reported)
TARGET_RATIO = 0.1


# -- data ------------------------------------------------------------------------------
def add_loaded_at(db: Path) -> None:
    """events / orders get ``loaded_at`` = their own timestamp (they landed as they happened)."""
    import duckdb

    con = duckdb.connect(str(db))
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("CREATE OR REPLACE TABLE events AS SELECT *, ts AS loaded_at FROM events")
        con.execute("CREATE OR REPLACE TABLE orders AS SELECT *, ordered_at AS loaded_at FROM orders")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def append(db: Path, seed: int, since: datetime, until: datetime, customers: int, events: int, orders: int,
           connection: object = None) -> None:
    """``events`` new events and ``orders`` new orders, with ts = loaded_at in (since, until].

    A fifth of the events are order_completed sent to customers that added to cart in the last
    30 minutes (so some realtime members leave), two fifths are added_to_cart (some enter), the
    rest page_viewed; the orders are large, for random customers (some big_spenders enter).
    """
    import duckdb

    span = int((until - since).total_seconds())
    recent = ts(until - timedelta(minutes=30))
    con = connection or duckdb.connect(str(db))  # a connection: the process that holds the file
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"""
            CREATE TEMP TABLE carted AS
            SELECT DISTINCT customer_id FROM events
            WHERE event_name = 'added_to_cart' AND ts > {recent} AND ts <= {ts(since)}""")
        con.execute(f"""
            INSERT INTO events
            WITH c AS (SELECT customer_id, row_number() OVER (ORDER BY hash(customer_id, {seed})) AS n FROM carted),
                 new AS (
                   SELECT k,
                          CASE WHEN k % 5 = 0 THEN 'order_completed'
                               WHEN k % 5 IN (1, 2) THEN 'added_to_cart' ELSE 'page_viewed' END AS event_name,
                          {ts(until)} - to_seconds((hash(k, 'nts', {seed}) % {span})::BIGINT) AS t
                   FROM range({events}) r(k))
            SELECT coalesce(CASE WHEN new.event_name = 'order_completed' THEN c.customer_id END,
                            (1 + hash(k, 'nc', {seed}) % {customers})::BIGINT) AS customer_id,
                   new.event_name, new.t AS ts,
                   (['shoes','shirts','bags','hats','toys'])[1 + (hash(k, 'ncat', {seed}) % 5)::INT] AS category,
                   new.t AS loaded_at
            FROM new LEFT JOIN c ON c.n = 1 + (k // 5) % greatest((SELECT count(*) FROM c), 1)""")
        con.execute(f"""
            INSERT INTO orders
            SELECT (1 + hash(j, 'noc', {seed}) % {customers})::BIGINT AS customer_id,
                   {ts(until)} - to_seconds((hash(j, 'nots', {seed}) % {span})::BIGINT) AS ordered_at,
                   500.0 AS amount,
                   {ts(until)} - to_seconds((hash(j, 'nots', {seed}) % {span})::BIGINT) AS loaded_at
            FROM range({orders}) t(j)""")
        con.execute("DROP TABLE carted")
        con.execute("CHECKPOINT")
    finally:
        if connection is None:
            con.close()


# -- the project -----------------------------------------------------------------------
def write_project(project: Path, ltv: float, spend: float) -> None:
    (project / "segments").mkdir(parents=True, exist_ok=True)
    (project / "destinations").mkdir(parents=True, exist_ok=True)
    (project / "out").mkdir(exist_ok=True)
    (project / "revseg.yml").write_text(project_yml("incremental_bench", ltv, spend, loaded_at=True))
    (project / "segments" / f"{BIG}.yml").write_text(f"""\
name: {BIG}
where:
  all:
    - column: lifetime_value
      op: ">="
      value: "{{{{ var('min_ltv') }}}}"
    - aggregate: sum
      model: orders
      column: amount
      within: 90d
      op: ">="
      value: "{{{{ var('min_spend_90d') }}}}"
traits:
  email: email
  country: country
syncs:
  - destination: big_file
    mode: mirror
    identifiers: {{email: email}}
""")
    (project / "segments" / f"{RT}.yml").write_text(f"""\
name: {RT}
refresh: continuous
where:
  event: added_to_cart
  within: 30m
  not_followed_by:
    event: order_completed
traits:
  email: email
syncs:
  - destination: rt_file
    mode: mirror
    identifiers: {{email: email}}
""")
    for name in ("big_file", "rt_file"):
        (project / "destinations" / f"{name}.yml").write_text(f"""\
name: {name}
type: file
options:
  path: out/{name}.jsonl
""")


def committed_members(db: Path, segment: str, connection: object = None) -> set[str]:
    import duckdb

    con = connection or duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute('SELECT id FROM revseg.segment_members WHERE segment = ?', [segment]).fetchall()
        return {r[0] for r in rows}
    finally:
        if connection is None:
            con.close()


# -- the steps -------------------------------------------------------------------------
def plan_steps(new_events: int, new_orders: int) -> list[tuple[str, datetime, bool, int, int]]:
    """(step, as_of, full_refresh, events appended first, orders appended first)."""
    return [
        ("initial", AS_OF, False, 0, 0),
        ("incremental", AS_OF + STEP, False, new_events, new_orders),
        ("full-refresh", AS_OF + 2 * STEP, True, new_events, new_orders),
        ("no-op", AS_OF + 2 * STEP, False, 0, 0),
    ]


def load1() -> float:
    return os.getloadavg()[0]


def in_process(project: Path, customers: int, steps: list, warm: Path) -> tuple[list[dict], list[str]]:
    from revseg.runner import Runner

    # warm-up: imports, sqlglot and DuckDB code paths, on a tiny separate project
    Runner(warm).sync(as_of=AS_OF)

    db = project / "warehouse.duckdb"
    rows: list[dict] = []
    problems: list[str] = []
    previous = AS_OF
    for n, (step, as_of, full, events, orders) in enumerate(steps):
        if events or orders:
            append(db, n, previous, as_of, customers, events, orders)
        runner = Runner(project)
        runner.project  # noqa: B018  (load the YAML outside the timing, like the warm-up did)
        before = load1()
        started = time.perf_counter()
        report = runner.sync(as_of=as_of, full_refresh=full)
        seconds = time.perf_counter() - started
        if report.status != "success":
            problems.append(f"{step}: run status {report.status}: {report.as_json()}")
        rows.append(summarize(step, seconds, report.as_json(), before))
        if step == "incremental":
            for segment in SEGMENTS:
                expected = {m.id for m in runner.preview(segment, as_of=as_of).members}
                got = committed_members(db, segment)
                verdict = "equal" if got == expected else "DIFFERENT"
                print(f"  check {segment}: committed {len(got)} vs preview {len(expected)}: {verdict}"
                      + ("" if got == expected else f" (missing {len(expected - got)}, extra {len(got - expected)})"),
                      flush=True)
                if got != expected:
                    problems.append(f"{segment}: membership after the incremental run differs from preview")
        previous = as_of
        print(f"  in-process {step}: {seconds:.3f}s", flush=True)
    return rows, problems


def resident(project: Path, customers: int, new_events: int, new_orders: int) -> tuple[list[dict], list[str]]:
    """As ``revseg run`` and ``serve`` work: one session (connected and validated once) with
    the segments' lock held, each run a ``Session.sync`` call. After the in-process steps:
    an incremental run and a full-refresh run (data appended first, as before), then
    ``POLLS`` runs with nothing new (the median is the no-op row)."""
    from revseg.runner import Runner
    from revseg.runner.sync import SyncOptions
    from revseg.state.lock import SegmentLock

    db = project / "warehouse.duckdb"
    rows: list[dict] = []
    problems: list[str] = []
    previous = AS_OF + 2 * STEP
    steps = [("incremental", previous + STEP, False), ("full-refresh", previous + 2 * STEP, True)]
    runner = Runner(project)
    with runner.session(previous) as session:
        # the process that holds the DuckDB file appends through it (no second configuration)
        shared = session.warehouse._conn  # noqa: SLF001
        lock = SegmentLock(session.store, "incremental_bench", datetime.utcnow)
        lock.acquire(list(SEGMENTS), 30.0)
        try:
            for n, (step, as_of, full) in enumerate(steps, start=len(plan_steps(0, 0))):
                append(db, n, previous, as_of, customers, new_events, new_orders, connection=shared.cursor())
                before = load1()
                started = time.perf_counter()
                report = session.sync(list(SEGMENTS), None, SyncOptions(as_of, full_refresh=full), None, None, lock)
                seconds = time.perf_counter() - started
                rows.append(summarize(step, seconds, report.as_json(), before))
                if step == "incremental":
                    for segment in SEGMENTS:
                        expected = {m.id for m in runner.preview(segment, as_of=as_of).members}
                        if committed_members(db, segment, shared.cursor()) != expected:
                            problems.append(f"resident {segment}: membership after the incremental run differs")
                previous = as_of
                print(f"  resident {step}: {seconds:.3f}s", flush=True)
            before = load1()
            polls = []
            for _ in range(POLLS):
                started = time.perf_counter()
                report = session.sync(list(SEGMENTS), None, SyncOptions(previous), None, None, lock)
                polls.append(time.perf_counter() - started)
            rows.append(summarize("no-op", statistics.median(polls), report.as_json(), before))
            print(f"  resident no-op: median {statistics.median(polls) * 1000:.1f} ms of {POLLS}", flush=True)
        finally:
            lock.release()
    return rows, problems


def via_cli(project: Path, customers: int, steps: list) -> tuple[list[dict], list[str]]:
    db = project / "warehouse.duckdb"
    rows: list[dict] = []
    problems: list[str] = []
    previous = AS_OF
    for n, (step, as_of, full, events, orders) in enumerate(steps):
        if events or orders:
            append(db, n, previous, as_of, customers, events, orders)
        cmd = [sys.executable, "-m", "revseg", "sync", "--project-dir", str(project),
               "--as-of", f"{as_of:%Y-%m-%dT%H:%M:%S}Z", "--json"] + (["--full-refresh"] if full else [])
        before = load1()
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            problems.append(f"cli {step}: exit {done.returncode}: {done.stderr[-2000:]}")
            continue
        rows.append(summarize(step, seconds, json.loads(done.stdout), before))
        previous = as_of
        print(f"  CLI {step}: {seconds:.3f}s", flush=True)
    return rows, problems


def summarize(step: str, seconds: float, report: dict, load: float) -> dict:
    segments = {s["name"]: s for s in report["segments"]}
    syncs = {s["segment"]: s for s in report["syncs"]}
    return {"step": step, "seconds": seconds, "load": load, "segments": segments, "syncs": syncs}


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    head = ["step", "seconds", "load1"]
    for segment in SEGMENTS:
        head += [f"{segment} mode", "seg s", "members", "added", "removed"]
    body = []
    for r in rows:
        cells = [r["step"], f"{r['seconds']:.3f}", f"{r['load']:.2f}"]
        for segment in SEGMENTS:
            s = r["segments"].get(segment, {})
            y = r["syncs"].get(segment, {})
            cells += [str(s.get("mode", "-")), f"{s.get('seconds', 0):.3f}", str(s.get("members", "-")),
                      str(y.get("added", "-")), str(y.get("removed", "-"))]
        body.append(cells)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for b in body:
        print("  ".join(c.ljust(w) if i == 0 or c.isalpha() else c.rjust(w)
                        for i, (c, w) in enumerate(zip(b, widths, strict=True))))
    by = {r["step"]: r for r in rows}
    if "incremental" in by and "full-refresh" in by:
        # the target is for the large segment: its evaluation, diff and delivery ("seg s")
        inc, full = (by[step]["segments"].get(BIG, {}).get("seconds", 0.0) for step in ("incremental", "full-refresh"))
        if inc and full:
            verdict = "meets" if inc / full <= TARGET_RATIO else "MISSES"
            print(f"{BIG} (the large segment): incremental {inc:.3f}s / full-refresh {full:.3f}s = "
                  f"{inc / full:.3f} ({verdict} the target <= {TARGET_RATIO})")
        ratio = by["incremental"]["seconds"] / by["full-refresh"]["seconds"]
        print(f"whole run (both segments, and connect and validate where timed): incremental / full-refresh {ratio:.3f}")
    if "incremental" in by and "initial" in by:
        print(f"ratio incremental / initial:      {by['incremental']['seconds'] / by['initial']['seconds']:.3f}")
    if "no-op" in by:
        modes = {s: by["no-op"]["segments"].get(s, {}).get("mode") for s in SEGMENTS}
        print(f"no-op: {by['no-op']['seconds'] * 1000:.1f} ms, modes {modes}")


def no_op_problems(label: str, rows: list[dict]) -> list[str]:
    for r in rows:
        if r["step"] == "no-op":
            bad = [s for s in SEGMENTS if r["segments"].get(s, {}).get("mode") != "skipped"]
            return [f"{label} no-op: {', '.join(bad)} not skipped"] if bad else []
    return [f"{label}: no no-op row"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--orders", type=int, default=2_000_000)
    parser.add_argument("--small", action="store_true", help="50k customers, 500k events, 100k orders")
    parser.add_argument("--new-events", type=int, default=1000, help="events appended before each timed sync")
    parser.add_argument("--new-orders", type=int, default=20, help="orders appended before each timed sync")
    parser.add_argument("--min-ltv", type=float, default=400.0)
    parser.add_argument("--min-spend", type=float, default=50.0)
    parser.add_argument("--skip-cli", action="store_true", help="only the in-process measurements")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temp dir, removed after")
    args = parser.parse_args(argv)
    if args.small:
        args.customers, args.events, args.orders = 50_000, 500_000, 100_000

    root = (args.data_dir or Path(tempfile.mkdtemp(prefix="revseg-incr-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    try:
        project, cli_project, warm = root / "project", root / "project_cli", root / "warmup"
        for p in (project, cli_project, warm):
            shutil.rmtree(p, ignore_errors=True)
            p.mkdir()
        started = time.perf_counter()
        generate(project / "warehouse.duckdb", args.customers, args.events, args.orders)
        add_loaded_at(project / "warehouse.duckdb")
        print(f"data: {project} ({args.customers:,} customers, {args.events:,} events, {args.orders:,} orders), "
              f"generated in {time.perf_counter() - started:.1f}s; load average {os.getloadavg()}", flush=True)
        if not args.skip_cli:
            shutil.copy(project / "warehouse.duckdb", cli_project / "warehouse.duckdb")
        generate(warm / "warehouse.duckdb", 2000, 20000, 4000)
        add_loaded_at(warm / "warehouse.duckdb")
        for p in (project, cli_project, warm):
            write_project(p, args.min_ltv, args.min_spend)

        steps = plan_steps(args.new_events, args.new_orders)
        print("in process (Runner.sync):", flush=True)
        rows, problems = in_process(project, args.customers, steps, warm)
        problems += no_op_problems("in-process", rows)
        print("resident session (as revseg run / serve):", flush=True)
        resident_rows, more = resident(project, args.customers, args.new_events, args.new_orders)
        problems += more + no_op_problems("resident", resident_rows)
        cli_rows: list[dict] = []
        if not args.skip_cli:
            compile_revseg()
            print("CLI (python -m revseg sync):", flush=True)
            cli_rows, more = via_cli(cli_project, args.customers, steps)
            problems += more + no_op_problems("CLI", cli_rows)

        print_table("in process: revseg.runner.Runner(project).sync(as_of=...), only that call timed", rows)
        print_table("resident: Session.sync in one open session with the lock held, as revseg run / serve "
                    f"(no-op: median of {POLLS})", resident_rows)
        if cli_rows:
            print_table("CLI: `python -m revseg sync --as-of T --json`, subprocess wall time", cli_rows)
        print(f"\nload average at the end: {os.getloadavg()} ({os.cpu_count()} CPUs)")
        for problem in problems:
            print(f"PROBLEM: {problem}")
        return 1 if problems else 0
    finally:
        if args.data_dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
