"""Profile one ``revseg sync``: time per SQL statement and a cProfile of the Python side.

    python benchmarks/profile_sync.py --project-dir DIR [--as-of TS] [--full-refresh]
                                      [--out sync.prof] [--top 15] [--dump-sql statements.sql]

Runs ``revseg sync --json`` in this process with DuckDB's statement methods wrapped, then
prints (to stderr) wall time split into import, SQL (grouped by the revseg function that
issued it) and the rest, and the top functions of the cProfile by cumulative time. The
``.prof`` file opens with ``python -m pstats`` or snakeviz. DuckDB only (the warehouse of the
benchmark); it does not change any revseg file, it wraps methods at run time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections import defaultdict


def _caller() -> str:
    """The innermost revseg frame outside the warehouse module: who issued the statement."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("revseg.") and not module.startswith("revseg.warehouse"):
            return f"{module.removeprefix('revseg.')}.{frame.f_code.co_name}"
        frame = frame.f_back
    return "?"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--project-dir", required=True)
    parser.add_argument("--as-of", default=None)
    parser.add_argument("--out", default="sync.prof")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--full-refresh", action="store_true")
    parser.add_argument("--select", default=None, help="only these segments (as revseg sync --select)")
    parser.add_argument("--dump-sql", default=None, help="write every statement, in order, with its seconds")
    args = parser.parse_args()

    started = time.perf_counter()
    from revseg.cli.main import main as cli
    from revseg.warehouse.duckdb import DuckDBWarehouse
    imported = time.perf_counter() - started

    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    samples: dict[str, str] = {}
    statements: list[tuple[float, str, str]] = []

    def record(label: str, sql: str, seconds: float) -> None:
        totals[label][0] += seconds
        totals[label][1] += 1
        samples.setdefault(label, sql)
        statements.append((seconds, label, sql))

    original_run = DuckDBWarehouse._run
    original_batches = DuckDBWarehouse.fetch_batches

    def timed_run(self, expression, params=None):  # type: ignore[no-untyped-def]
        begin = time.perf_counter()
        sql = expression if isinstance(expression, str) else self.render(expression)
        render_end = time.perf_counter()
        result = original_run(self, sql, params)
        record(_caller(), sql, time.perf_counter() - render_end)
        totals["(rendering sqlglot trees to SQL)"][0] += render_end - begin
        return result

    def timed_batches(self, expression, batch_size):  # type: ignore[no-untyped-def]
        begin = time.perf_counter()
        sql = self.render(expression)
        label = _caller()
        for batch in original_batches(self, expression, batch_size):
            record(label, sql, time.perf_counter() - begin)
            yield batch
            begin = time.perf_counter()
        record(label, sql, time.perf_counter() - begin)

    def wrap(name: str):  # type: ignore[no-untyped-def]
        original = getattr(DuckDBWarehouse, name)

        def wrapped(self, *a):  # type: ignore[no-untyped-def]
            begin = time.perf_counter()
            try:
                return original(self, *a)
            finally:
                record(f"warehouse.{name}", name.upper(), time.perf_counter() - begin)
        setattr(DuckDBWarehouse, name, wrapped)

    DuckDBWarehouse._run = timed_run  # type: ignore[method-assign]
    DuckDBWarehouse.fetch_batches = timed_batches  # type: ignore[method-assign]
    for name in ("connect", "close", "begin", "commit", "rollback"):
        wrap(name)

    argv = ["sync", "--project-dir", args.project_dir, "--json"] + (["--as-of", args.as_of] if args.as_of else [])
    argv += ["--full-refresh"] if args.full_refresh else []
    argv += ["--select", args.select] if args.select else []
    profiler = cProfile.Profile()
    run_started = time.perf_counter()
    code = 0
    profiler.enable()
    try:
        cli(argv, standalone_mode=False)
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        profiler.disable()
    ran = time.perf_counter() - run_started
    profiler.dump_stats(args.out)

    err = sys.stderr
    if args.dump_sql:
        with open(args.dump_sql, "w", encoding="utf-8") as dump:
            for seconds, label, sql in statements:
                dump.write(f"-- {seconds:.4f}s {label}\n{sql};\n\n")
    sql_total = sum(v[0] for k, v in totals.items() if not k.startswith("("))
    render_total = totals.get("(rendering sqlglot trees to SQL)", [0.0])[0]
    print(f"exit code {code}; import revseg {imported:.2f}s, "
          f"run {ran:.2f}s = SQL/driver {sql_total:.2f}s + rendering SQL {render_total:.2f}s "
          f"+ other python {ran - sql_total - render_total:.2f}s", file=err)
    print(f"\nSQL by issuing function (seconds, statements), top {args.top}:", file=err)
    ranked = sorted(((v[0], v[1], k) for k, v in totals.items() if not k.startswith("(")), reverse=True)
    for seconds, count, label in ranked[: args.top]:
        print(f"  {seconds:8.3f}s {count:5d}  {label:<40} {' '.join(samples[label].split())[:110]}", file=err)
    print(f"\nslowest single statements, top {args.top}:", file=err)
    for seconds, label, sql in sorted(statements, key=lambda s: s[0], reverse=True)[: args.top]:
        print(f"  {seconds:8.3f}s  {label:<40} {' '.join(sql.split())[:110]}", file=err)
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(args.top * 2)
    print(f"\ncProfile, by cumulative time (full profile: {args.out}):", file=err)
    print("\n".join(buffer.getvalue().splitlines()[4:]), file=err)
    return code


if __name__ == "__main__":
    sys.exit(main())
