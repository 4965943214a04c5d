"""End-to-end benchmark of ``revseg sync`` against a hand-written DuckDB baseline.

    python benchmarks/sync_bench.py                 # 1M customers, 10M events, 2M orders
    python benchmarks/sync_bench.py --small         # 50k / 500k / 100k, a quick check
    python benchmarks/sync_bench.py --profile       # also profile one revseg sync (SQL + Python)

What it does (see benchmarks/README.md):

1. generates customers, events and orders in a DuckDB file with DuckDB SQL (``range()`` and
   ``hash()``: deterministic, no Python loops);
2. writes a revseg project next to it: one segment (lifetime_value >= X, sum of orders
   within 90d >= Y, a product_viewed event within 7d; traits email, country) mirrored to a
   ``file`` destination;
3. runs the initial sync (reported on its own row), then, ``--repeats`` times per mode
   (``default``: plain ``revseg sync``, incremental when it can be; ``full-refresh``):
   advances as_of by ``--step-minutes``, changes the data so that ``--churn-pct`` of the
   members churn (half leave, as many enter, by moving lifetime_value across the
   threshold), and times ``revseg sync`` and the baseline on that same data, each in its own
   subprocess (wall time, CPU time and peak RSS via ``os.wait4``);
4. the baseline is what a data engineer would write by hand: the same membership query,
   a FULL OUTER JOIN against a snapshot table of the previous membership, ``COPY ... TO``
   a JSON Lines file, then the snapshot swapped; its add/remove/update counts and member
   count must equal the ones revseg reports, or the script exits 1;
5. prints a table (and the median per mode); ratio = revseg wall / baseline wall (target
   <= 1.3), then a breakdown of both wall times and their CPU seconds.

Nothing here imports revseg: revseg runs as ``python -m revseg`` like a user would run it.
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
AS_OF = datetime(2026, 3, 1)  # data is generated before this instant; the initial sync runs at it
SEGMENT = "engaged_high_value"
TARGET_RATIO = 1.3


# -- data ------------------------------------------------------------------------------
def ts(moment: datetime) -> str:
    return f"TIMESTAMP '{moment:%Y-%m-%d %H:%M:%S}'"


def generate(db: Path, customers: int, events: int, orders: int, shuffled: bool = False) -> None:
    """Events and orders are stored in time order, as tables appended to as things happen are
    (DuckDB's min/max per row group then skips old rows, for revseg and the baseline alike);
    ``shuffled`` stores them in random order instead, the worst case for time-window scans."""
    import duckdb

    at = ts(AS_OF)
    con = duckdb.connect(str(db))
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"""
            CREATE OR REPLACE TABLE customers AS
            SELECT i::BIGINT AS customer_id,
                   'user' || i || '@example.com' AS email,
                   (['US','GB','DE','FR','CA','AU','BR','JP','IN','ES'])[1 + (hash(i, 'country') % 10)::INT] AS country,
                   round((hash(i, 'ltv') % 100000) / 100.0, 2)::DOUBLE AS lifetime_value,
                   {at} - to_seconds((hash(i, 'upd') % (365 * 86400))::BIGINT) AS updated_at
            FROM range(1, {customers} + 1) t(i)""")
        con.execute(f"""
            CREATE OR REPLACE TABLE orders AS
            SELECT (1 + hash(j, 'oc') % {customers})::BIGINT AS customer_id,
                   {at} - to_seconds((hash(j, 'ots') % (180 * 86400))::BIGINT) AS ordered_at,
                   round((hash(j, 'amt') % 50000) / 100.0, 2)::DOUBLE AS amount
            FROM range({orders}) t(j)
            ORDER BY {"hash(j, 'shuffle')" if shuffled else "ordered_at"}""")
        # half of the events are product_viewed, spread over the 30 days before AS_OF
        con.execute(f"""
            CREATE OR REPLACE TABLE events AS
            SELECT (1 + hash(k, 'ec') % {customers})::BIGINT AS customer_id,
                   (['product_viewed','product_viewed','product_viewed','product_viewed','product_viewed',
                     'page_viewed','page_viewed','added_to_cart','order_completed','search'])
                     [1 + (hash(k, 'en') % 10)::INT] AS event_name,
                   {at} - to_seconds((hash(k, 'ets') % (30 * 86400))::BIGINT) AS ts,
                   (['shoes','shirts','bags','hats','toys'])[1 + (hash(k, 'cat') % 5)::INT] AS category
            FROM range({events}) t(k)
            ORDER BY {"hash(k, 'shuffle')" if shuffled else "ts"}""")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def eligible_sql(as_of: datetime, spend: float) -> str:
    """Customers meeting every condition of the segment but the lifetime_value one."""
    at = ts(as_of)
    return f"""
        SELECT c.customer_id, c.lifetime_value
        FROM customers c
        JOIN (SELECT customer_id, sum(amount) AS spend FROM orders
              WHERE ordered_at > {at} - INTERVAL 90 DAY AND ordered_at <= {at}
              GROUP BY customer_id) s ON s.customer_id = c.customer_id
        WHERE s.spend >= {spend}
          AND EXISTS (SELECT 1 FROM events e
                      WHERE e.customer_id = c.customer_id AND e.event_name = 'product_viewed'
                        AND e.ts > {at} - INTERVAL 7 DAY AND e.ts <= {at})"""


def churn(db: Path, round_no: int, as_of: datetime, pct: float, ltv: float, spend: float) -> int:
    """Move ``pct``/2 % of the members (at ``as_of``) out, by setting their lifetime_value below
    the threshold, and as many eligible non-members in; returns how many go each way."""
    import duckdb

    con = duckdb.connect(str(db))
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"CREATE TEMP TABLE eligible AS {eligible_sql(as_of, spend)}")
        members = con.execute(f"SELECT count(*) FROM eligible WHERE lifetime_value >= {ltv}").fetchone()[0]
        k = max(1, round(members * pct / 100 / 2))
        con.execute(f"""
            CREATE TEMP TABLE flip AS
            SELECT customer_id, lifetime_value >= {ltv} AS member FROM (
                SELECT customer_id, lifetime_value,
                       row_number() OVER (PARTITION BY lifetime_value >= {ltv}
                                          ORDER BY hash(customer_id, 'churn', {round_no})) AS n
                FROM eligible) WHERE n <= {k}""")
        con.execute(f"""
            UPDATE customers c SET
                lifetime_value = CASE WHEN f.member
                    THEN round({ltv} * (hash(c.customer_id, 'down', {round_no}) % 1000) / 1000.0, 2)
                    ELSE {ltv} + round((hash(c.customer_id, 'up', {round_no}) % 50000) / 100.0, 2) END,
                updated_at = {ts(as_of)} - INTERVAL 1 MINUTE
            FROM flip f WHERE c.customer_id = f.customer_id""")
        con.execute("CHECKPOINT")
        return k
    finally:
        con.close()


def in_child(fn, *args):  # noqa: ANN001, ANN201 - any picklable function and arguments
    """Run ``fn(*args)`` in a fresh interpreter and return its result. The data work (DuckDB
    sorting 10M events) would otherwise grow this process, and a child forked from a big
    process starts with the parent's peak RSS in its rusage: revseg's would be overstated."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


# -- the revseg project ----------------------------------------------------------------
def project_yml(name: str, ltv: float, spend: float, loaded_at: bool = False) -> str:
    """revseg.yml over the generated tables (``loaded_at``: events and orders declare it)."""
    landed = "\n    loaded_at: loaded_at" if loaded_at else ""
    return f"""\
name: {name}
target: dev
targets:
  dev:
    type: duckdb
    path: warehouse.duckdb
state_schema: revseg
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
    name: event_name{landed}
  orders:
    table: orders
    entity_key: customer_id
    timestamp: ordered_at{landed}
vars:
  min_ltv: {ltv}
  min_spend_90d: {spend}
"""


def write_project(project: Path, ltv: float, spend: float) -> None:
    (project / "segments").mkdir(parents=True, exist_ok=True)
    (project / "destinations").mkdir(parents=True, exist_ok=True)
    (project / "revseg.yml").write_text(project_yml("sync_bench", ltv, spend))
    (project / "segments" / f"{SEGMENT}.yml").write_text(f"""\
name: {SEGMENT}
description: High lifetime value, spent in the last 90 days, browsing this week
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
    - event: product_viewed
      within: 7d
traits:
  email: email
  country: country
syncs:
  - destination: bench_file
    mode: mirror
    identifiers: {{email: email}}
""")
    (project / "destinations" / "bench_file.yml").write_text("""\
name: bench_file
type: file
options:
  path: out/revseg_delta.jsonl
""")


# -- the hand-written baseline (runs in its own process: see --baseline-worker) -----------
def baseline(db: str, out: str, as_of: str, ltv: float, spend: float) -> dict[str, object]:
    import duckdb

    at = ts(datetime.fromisoformat(as_of))
    started = time.perf_counter()
    con = duckdb.connect(db)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute("CREATE SCHEMA IF NOT EXISTS baseline")
    con.execute("CREATE TABLE IF NOT EXISTS baseline.members (customer_id BIGINT, email VARCHAR, country VARCHAR)")
    con.execute("BEGIN")
    con.execute(f"""
        CREATE OR REPLACE TABLE baseline.members_new AS
        WITH spend AS (
            SELECT customer_id, sum(amount) AS spend FROM orders
            WHERE ordered_at > {at} - INTERVAL 90 DAY AND ordered_at <= {at}
            GROUP BY customer_id)
        SELECT c.customer_id, c.email, c.country
        FROM customers c JOIN spend s ON s.customer_id = c.customer_id
        WHERE c.lifetime_value >= {ltv} AND s.spend >= {spend}
          AND EXISTS (SELECT 1 FROM events e
                      WHERE e.customer_id = c.customer_id AND e.event_name = 'product_viewed'
                        AND e.ts > {at} - INTERVAL 7 DAY AND e.ts <= {at})""")
    con.execute("""
        CREATE TEMP TABLE delta AS
        SELECT CASE WHEN o.customer_id IS NULL THEN 'add'
                    WHEN n.customer_id IS NULL THEN 'remove' ELSE 'update' END AS op,
               CAST(coalesce(n.customer_id, o.customer_id) AS VARCHAR) AS id,
               n.email, n.country
        FROM baseline.members_new n FULL OUTER JOIN baseline.members o ON n.customer_id = o.customer_id
        WHERE o.customer_id IS NULL OR n.customer_id IS NULL
           OR n.email IS DISTINCT FROM o.email OR n.country IS DISTINCT FROM o.country""")
    counts = dict(con.execute("SELECT op, count(*) FROM delta GROUP BY op").fetchall())
    escaped = out.replace("'", "''")
    con.execute(f"""
        COPY (SELECT op, id, CASE WHEN op <> 'remove' THEN {{'email': email, 'country': country}} END AS traits
              FROM delta ORDER BY op <> 'remove', id)
        TO '{escaped}' (FORMAT JSON)""")
    with open(out, "rb") as written:  # revseg fsyncs each batch it writes: so does the baseline
        os.fsync(written.fileno())
    con.execute("DROP TABLE baseline.members")
    con.execute("ALTER TABLE baseline.members_new RENAME TO members")
    con.execute("COMMIT")
    members = con.execute("SELECT count(*) FROM baseline.members").fetchone()[0]
    con.close()
    return {"added": counts.get("add", 0), "removed": counts.get("remove", 0),
            "updated": counts.get("update", 0), "members": members,
            "seconds": time.perf_counter() - started}


# -- measuring subprocesses ------------------------------------------------------------
def compile_revseg() -> None:
    """Byte-compile revseg's modules, as ``pip install`` does, and as Python does on a first
    run unless PYTHONDONTWRITEBYTECODE is set (it is on some CI machines): otherwise every
    measured run would compile revseg's source again (50-55 ms), which no installed revseg
    pays. Without importing revseg: the benchmark measures it from a cold process."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("revseg")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            compileall.compile_dir(location, quiet=1)



class Measured:
    def __init__(self, wall: float, cpu: float, rss_mb: float, code: int, stdout: str, stderr: str) -> None:
        self.wall, self.cpu, self.rss_mb, self.code = wall, cpu, rss_mb, code
        self.stdout, self.stderr = stdout, stderr


def measure(cmd: list[str], cwd: Path, logs: Path, name: str) -> Measured:
    """Run ``cmd``; wall seconds, CPU seconds (user + system, all threads) and the peak RSS of
    that child, from os.wait4's rusage (which covers exactly this child)."""
    out_path, err_path = logs / f"{name}.out", logs / f"{name}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    rss_mb = usage.ru_maxrss / 1024  # KiB on Linux
    cpu = usage.ru_utime + usage.ru_stime
    return Measured(wall, cpu, rss_mb, code, out_path.read_text(), err_path.read_text())


def iso(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}Z"


def revseg_command(project: Path, as_of: datetime, full_refresh: bool) -> list[str]:
    return ([sys.executable, "-m", "revseg", "sync", "--project-dir", str(project), "--as-of", iso(as_of), "--json"]
            + (["--full-refresh"] if full_refresh else []))


def run_revseg(project: Path, logs: Path, name: str, as_of: datetime, full_refresh: bool) -> tuple[Measured, dict]:
    m = measure(revseg_command(project, as_of, full_refresh), project, logs, name)
    if m.code != 0:
        sys.exit(f"revseg sync exited {m.code}:\n{m.stdout}\n{m.stderr}")
    return m, json.loads(m.stdout)


def run_baseline(project: Path, logs: Path, name: str, as_of: datetime, ltv: float,
                 spend: float) -> tuple[Measured, dict]:
    out = project / "out" / f"{name}.jsonl"
    config = json.dumps({"db": str(project / "warehouse.duckdb"), "out": str(out), "as_of": as_of.isoformat(),
                         "ltv": ltv, "spend": spend})
    m = measure([sys.executable, str(Path(__file__).resolve()), "--baseline-worker", config], project, logs, name)
    if m.code != 0:
        sys.exit(f"baseline exited {m.code}:\n{m.stdout}\n{m.stderr}")
    return m, json.loads(m.stdout)


# -- the run ---------------------------------------------------------------------------
def row(step: str, rv: Measured, report: dict, bl: Measured, base: dict) -> dict:
    sync = report["syncs"][0]
    segment = report["segments"][0]
    return {
        "step": step, "mode": segment["mode"], "revseg": rv.wall, "baseline": bl.wall, "ratio": rv.wall / bl.wall,
        "rss": rv.rss_mb, "base_rss": bl.rss_mb, "members": segment["members"],
        "added": sync["added"], "removed": sync["removed"], "updated": sync["updated"],
        "b_added": base["added"], "b_removed": base["removed"], "b_updated": base["updated"],
        "b_members": base["members"], "seg_s": segment["seconds"], "sync_s": sync["seconds"],
        "base_sql": base["seconds"], "cpu": rv.cpu, "base_cpu": bl.cpu,
    }


def median_row(step: str, rows: list[dict]) -> dict:
    keys = ("revseg", "baseline", "rss", "base_rss", "seg_s", "sync_s", "base_sql", "cpu", "base_cpu")
    median = {key: statistics.median(r[key] for r in rows) for key in keys}
    return {**rows[-1], **median, "step": step, "ratio": median["revseg"] / median["baseline"]}


def print_table(rows: list[dict]) -> None:
    head = ["step", "revseg mode", "revseg s", "baseline s", "ratio", "revseg RSS MB", "baseline RSS MB",
            "members", "added", "removed", "updated", "baseline add/rm/upd"]
    body = [[r["step"], r["mode"], f"{r['revseg']:.2f}", f"{r['baseline']:.2f}", f"{r['ratio']:.2f}",
             f"{r['rss']:.0f}", f"{r['base_rss']:.0f}", str(r["members"]), str(r["added"]),
             str(r["removed"]), str(r["updated"]), f"{r['b_added']}/{r['b_removed']}/{r['b_updated']}"]
            for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    print(line(head))
    print(line(["-" * w for w in widths]))
    for b in body:
        print(line(b))


def print_breakdown(rows: list[dict]) -> None:
    """Where the wall time goes: revseg's --json splits it into the segment's work and its sync."""
    print("\nbreakdown (seconds). revseg wall = rest (interpreter, imports, load, validate, connect, lock,"
          " close) + segment (evaluate, stage, commit snapshot) + sync (diff, deliver, record);\n"
          "baseline wall = rest (interpreter, import duckdb) + SQL (connect .. commit). CPU = user + system"
          " of the process, all threads (less sensitive than wall to other load on the machine)")
    print(f"{'step':<22} {'rv rest':>8} {'rv segment':>11} {'rv sync':>8} {'rv CPU':>7}"
          f" {'bl rest':>8} {'bl SQL':>7} {'bl CPU':>7} {'CPU ratio':>10}")
    for r in rows:
        print(f"{r['step']:<22} {r['revseg'] - r['seg_s']:>8.2f} {r['seg_s'] - r['sync_s']:>11.2f}"
              f" {r['sync_s']:>8.2f} {r['cpu']:>7.2f} {r['baseline'] - r['base_sql']:>8.2f} {r['base_sql']:>7.2f}"
              f" {r['base_cpu']:>7.2f} {r['cpu'] / r['base_cpu']:>10.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--orders", type=int, default=2_000_000)
    parser.add_argument("--small", action="store_true", help="50k customers, 500k events, 100k orders")
    parser.add_argument("--repeats", type=int, default=3, help="timed revseg/baseline pairs per mode (median reported)")
    parser.add_argument("--modes", default="default,full-refresh",
                        help="comma list: default (plain `revseg sync`, incremental when it can be), "
                             "full-refresh (`revseg sync --full-refresh`)")
    parser.add_argument("--churn-pct", type=float, default=1.0, help="%% of members that churn per round")
    parser.add_argument("--step-minutes", type=int, default=60, help="as_of advances this much per round")
    parser.add_argument("--min-ltv", type=float, default=400.0)
    parser.add_argument("--min-spend", type=float, default=50.0)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where to put the project and its DuckDB file (default: a temp dir, removed after)")
    parser.add_argument("--shuffled", action="store_true",
                        help="store events and orders in random order, not time order (worst case)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir afterwards")
    parser.add_argument("--profile", action="store_true",
                        help="after the timed rounds, one more round of each mode with revseg under "
                             "benchmarks/profile_sync.py (SQL per statement, cProfile)")
    args = parser.parse_args(argv)
    if args.small:
        args.customers, args.events, args.orders = 50_000, 500_000, 100_000
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if any(m not in ("default", "full-refresh") for m in modes):
        parser.error("--modes takes default and/or full-refresh")

    root = (args.data_dir or Path(tempfile.mkdtemp(prefix="revseg-bench-"))).resolve()
    project = root / "project"
    if project.exists():
        shutil.rmtree(project)
    logs = project / "logs"
    logs.mkdir(parents=True)
    (project / "out").mkdir()
    db = project / "warehouse.duckdb"
    print(f"data: {project}  ({args.customers:,} customers, {args.events:,} events, {args.orders:,} orders)")
    try:
        started = time.perf_counter()
        in_child(generate, db, args.customers, args.events, args.orders, args.shuffled)
        print(f"generated in {time.perf_counter() - started:.1f}s ({db.stat().st_size / 2**20:.0f} MiB)")
        write_project(project, args.min_ltv, args.min_spend)
        compile_revseg()
        bounds = (args.min_ltv, args.min_spend)

        rows: list[dict] = []
        rv, report = run_revseg(project, logs, "revseg_initial", AS_OF, False)
        bl, base = run_baseline(project, logs, "baseline_initial", AS_OF, *bounds)
        rows.append(row("initial", rv, report, bl, base))
        print(f"initial sync: revseg {rv.wall:.2f}s, baseline {bl.wall:.2f}s, {report['segments'][0]['members']} members",
              flush=True)

        n = 0
        medians: list[dict] = []
        for mode in modes:
            mine: list[dict] = []
            for _ in range(args.repeats):
                n += 1
                as_of = AS_OF + timedelta(minutes=args.step_minutes * n)
                k = in_child(churn, db, n, as_of, args.churn_pct, *bounds)
                full = mode == "full-refresh"
                # alternate who goes first, so neither always gets the colder cache
                if n % 2:
                    rv, report = run_revseg(project, logs, f"revseg_{n}", as_of, full)
                    bl, base = run_baseline(project, logs, f"baseline_{n}", as_of, *bounds)
                else:
                    bl, base = run_baseline(project, logs, f"baseline_{n}", as_of, *bounds)
                    rv, report = run_revseg(project, logs, f"revseg_{n}", as_of, full)
                mine.append(row(f"round {n} {mode}", rv, report, bl, base))
                print(f"round {n} ({mode}, as_of {iso(as_of)}): {k} moved out + {k} in; "
                      f"revseg {rv.wall:.2f}s, baseline {bl.wall:.2f}s", flush=True)
            rows += mine
            if mine:
                medians.append(median_row(f"median {mode}", mine))
        rows += medians
        print()
        print_table(rows)
        print_breakdown(rows)

        mismatched = [r["step"] for r in rows if (r["added"], r["removed"], r["updated"], r["members"])
                      != (r["b_added"], r["b_removed"], r["b_updated"], r["b_members"])]
        if mismatched:
            print(f"\nMISMATCH: revseg and the baseline disagree on {', '.join(mismatched)}")
            return 1
        print("\ncounts: revseg's added/removed/updated and members equal the baseline's in every round")
        for m in medians:
            verdict = "meets" if m["ratio"] <= TARGET_RATIO else "MISSES"
            print(f"{m['step']}: ratio {m['ratio']:.2f} {verdict} the target <= {TARGET_RATIO}")

        if args.profile:
            for mode in modes:
                n += 1
                as_of = AS_OF + timedelta(minutes=args.step_minutes * n)
                in_child(churn, db, n, as_of, args.churn_pct, *bounds)
                print(f"\nprofile of one more round, {mode} (benchmarks/profile_sync.py):\n", flush=True)
                command = [sys.executable, str(HERE / "profile_sync.py"), "--project-dir", str(project),
                           "--as-of", iso(as_of), "--out", str(logs / f"sync_{mode}.prof")]
                subprocess.run(command + (["--full-refresh"] if mode == "full-refresh" else []),
                               check=True, stdout=subprocess.DEVNULL)
        return 0
    finally:
        if args.keep or args.data_dir is not None:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--baseline-worker":
        cfg = json.loads(sys.argv[2])
        print(json.dumps(baseline(cfg["db"], cfg["out"], cfg["as_of"], cfg["ltv"], cfg["spend"])))
        sys.exit(0)
    sys.exit(main())
