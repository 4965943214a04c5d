"""Initial sync of a large segment to the Meta emulator: ``revseg sync`` beside a raw httpx loop.

    python benchmarks/meta_bench.py                    # 1M members
    python benchmarks/meta_bench.py --small            # 50k members, a quick check
    python benchmarks/meta_bench.py --members 2000000 --profile

What it does (see benchmarks/README.md):

1. generates ``customers`` (customer_id, email ``c{n}@example.com``, phone ``+1415{n:07}``
   (valid E.164, unique up to 10M), first_name) in a DuckDB file with DuckDB SQL (``range()``);
2. writes a revseg project beside it: segment ``everyone`` (``customer_id > 0``, traits email
   and phone) mirrored to a ``meta`` destination (identifiers email + phone, batch_size
   10,000) whose ``base_url`` is an emulator started for the run;
3. times ``python -m revseg sync --json`` as a subprocess (wall time and peak RSS from
   ``os.wait4``), then checks that the emulator's audience holds one row per member;
4. times the raw baseline, also a subprocess, against a fresh emulator: the same rows read
   from DuckDB as Arrow (from a copy of the file made before revseg wrote its state), email and phone normalized and hashed with revseg's own
   ``identifiers.hash_value``, the same ``payload`` + ``session`` body per 10,000 rows,
   POSTed with one ``httpx.Client``; its audience must equal revseg's;
5. prints the table (ratio = revseg records/s / raw records/s, target >= 0.8; revseg peak
   RSS target < 500 MB) and, when the ratio misses its target or with ``--profile``, a
   cProfile of one more revseg sync (via benchmarks/profile_sync.py) on a fresh copy.

Each emulator runs as its own process (``python -m revseg.sandbox.meta_emulator``), so its
CPU is not charged to the process measured; on a 2-core machine the client and the emulator
each get about one core.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKEN = "meta-test-token"
BATCH = 10_000
TARGET_RATIO = 0.8
TARGET_RSS_MB = 500
REVSEG_AUDIENCE, RAW_AUDIENCE, PROFILE_AUDIENCE = "23851234567890123", "23851234567890456", "23851234567890789"


# -- data and project ------------------------------------------------------------------
def generate(db: Path, members: int) -> None:
    import duckdb

    con = duckdb.connect(str(db))
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"""
            CREATE OR REPLACE TABLE customers AS
            SELECT i::BIGINT AS customer_id,
                   'c' || i || '@example.com' AS email,
                   printf('+1415%07d', i) AS phone,
                   (['Ann','Bob','Chloé','Dmitri','Eve','Farid','Grace','Hiro'])[1 + (i % 8)::INT] AS first_name
            FROM range(1, {members} + 1) t(i)""")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def write_project(project: Path, base_url: str, audience_id: str) -> None:
    (project / "segments").mkdir(parents=True, exist_ok=True)
    (project / "destinations").mkdir(parents=True, exist_ok=True)
    (project / "revseg.yml").write_text("""\
name: meta_bench
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
""")
    (project / "segments" / "everyone.yml").write_text(f"""\
name: everyone
where:
  column: customer_id
  op: ">"
  value: 0
traits:
  email: email
  phone: phone
syncs:
  - destination: meta_bench
    mode: mirror
    identifiers: {{email: email, phone: phone}}
    batch_size: {BATCH}
""")
    (project / "destinations" / "meta_bench.yml").write_text(f"""\
name: meta_bench
type: meta
options:
  audience_id: "{audience_id}"
  access_token: {TOKEN}
  base_url: {base_url}
""")


# -- the emulator, as its own process --------------------------------------------------
class EmulatorProcess:
    """``python -m revseg.sandbox.meta_emulator --port 0 --audience ID``; its port is line 1."""

    def __init__(self, audience_id: str, logs: Path) -> None:
        self.audience_id = audience_id
        self._err = open(logs / f"emulator_{audience_id}.err", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "revseg.sandbox.meta_emulator", "--port", "0", "--token", TOKEN,
             "--audience", audience_id],
            stdout=subprocess.PIPE, stderr=self._err, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            raise SystemExit(f"the emulator did not start; see {self._err.name}")
        self.root = f"http://127.0.0.1:{int(line)}"
        self.url = f"{self.root}/v26.0"  # MetaEmulator.url: the destination's base_url

    def audience(self) -> list[dict[str, str]]:
        import httpx

        response = httpx.get(f"{self.root}/_audience/{self.audience_id}", timeout=600)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()


def audience_rows(rows: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(r.get("EMAIL", ""), r.get("PHONE", "")) for r in rows}


# -- the raw baseline (runs in its own process: see --raw-worker) ------------------------
def raw(db: str, url: str, audience_id: str) -> dict[str, object]:
    """Read the members as Arrow, hash email + phone as revseg does, POST 10,000 rows at a time."""
    import secrets

    import duckdb
    import httpx
    import orjson

    from revseg.destinations.identifiers import hash_value, normalize_email, normalize_phone

    started = time.perf_counter()
    con = duckdb.connect(db, read_only=True)
    reader = con.sql("SELECT customer_id, email, phone FROM customers WHERE customer_id > 0"
                    ).to_arrow_reader(BATCH)
    schema = ["EMAIL", "PHONE"]
    sent = requests = invalid = 0
    pending: list[list[str]] = []

    def post(client: httpx.Client, rows: list[list[str]]) -> None:
        nonlocal sent, requests, invalid
        body = {
            "payload": {"schema": schema, "data": rows},
            "session": {"session_id": secrets.randbelow(2**62) + 1, "batch_seq": 1,
                        "last_batch_flag": True, "estimated_num_total": len(rows)},
        }
        response = client.post(f"{audience_id}/users", content=orjson.dumps(body),
                               headers={"content-type": "application/json"})
        response.raise_for_status()
        answer = response.json()
        sent += answer["num_received"]
        invalid += answer["num_invalid_entries"]
        requests += 1

    with httpx.Client(base_url=url + "/", timeout=120,
                      headers={"authorization": f"Bearer {TOKEN}"}) as client:
        for batch in reader:
            for email, phone in zip(batch.column("email").to_pylist(), batch.column("phone").to_pylist(),
                                    strict=True):
                e = hash_value(email, normalize_email) if email is not None else None
                p = hash_value(phone, normalize_phone) if phone is not None else None
                if e or p:
                    pending.append([e or "", p or ""])
                if len(pending) == BATCH:
                    post(client, pending)
                    pending = []
        if pending:
            post(client, pending)
    con.close()
    return {"sent": sent, "requests": requests, "invalid": invalid, "seconds": time.perf_counter() - started}


# -- measuring subprocesses ------------------------------------------------------------
class Measured:
    def __init__(self, wall: float, cpu: float, rss_mb: float, code: int, stdout: str, stderr: str) -> None:
        self.wall, self.cpu, self.rss_mb, self.code = wall, cpu, rss_mb, code
        self.stdout, self.stderr = stdout, stderr


def measure(cmd: list[str], cwd: Path, logs: Path, name: str) -> Measured:
    """Wall seconds, CPU seconds and peak RSS of exactly this child (os.wait4's rusage)."""
    out_path, err_path = logs / f"{name}.out", logs / f"{name}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    m = Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, code,
                 out_path.read_text(), err_path.read_text())
    if code != 0:
        sys.exit(f"{name} exited {code}:\n{m.stdout[-4000:]}\n{m.stderr[-4000:]}")
    return m


def revseg_command(project: Path) -> list[str]:
    return [sys.executable, "-m", "revseg", "sync", "--project-dir", str(project), "--json"]


# -- the run ---------------------------------------------------------------------------
def print_table(members: int, rv: Measured, bl: Measured) -> float:
    rv_rate, bl_rate = members / rv.wall, members / bl.wall
    ratio = rv_rate / bl_rate
    head = ["members", "revseg s", "raw s", "revseg rec/s", "raw rec/s", "ratio", "revseg RSS MB",
            "raw RSS MB", "revseg CPU s", "raw CPU s"]
    body = [f"{members:,}", f"{rv.wall:.2f}", f"{bl.wall:.2f}", f"{rv_rate:,.0f}", f"{bl_rate:,.0f}",
            f"{ratio:.2f}", f"{rv.rss_mb:.0f}", f"{bl.rss_mb:.0f}", f"{rv.cpu:.2f}", f"{bl.cpu:.2f}"]
    widths = [max(len(h), len(b)) for h, b in zip(head, body, strict=True)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    print("  ".join(b.rjust(w) for b, w in zip(body, widths, strict=True)))
    print(f"\nratio (revseg rec/s / raw rec/s): {ratio:.2f}  target >= {TARGET_RATIO}  "
          f"{'OK' if ratio >= TARGET_RATIO else 'MISSED'}")
    print(f"revseg peak RSS: {rv.rss_mb:.0f} MB  target < {TARGET_RSS_MB}  "
          f"{'OK' if rv.rss_mb < TARGET_RSS_MB else 'MISSED'}")
    return ratio


def profile(root: Path, pristine: Path, logs: Path, top: int) -> None:
    """One more revseg initial sync under benchmarks/profile_sync.py, on a fresh copy and emulator."""
    project = root / "profile"
    if project.exists():
        shutil.rmtree(project)
    project.mkdir()
    shutil.copy(pristine, project / "warehouse.duckdb")
    emulator = EmulatorProcess(PROFILE_AUDIENCE, logs)
    try:
        write_project(project, emulator.url, PROFILE_AUDIENCE)
        out = root / "revseg_sync.prof"
        print(f"\nprofiling one more revseg sync (cProfile written to {out}) ...", flush=True)
        done = subprocess.run([sys.executable, str(HERE / "profile_sync.py"), "--project-dir", str(project),
                               "--out", str(out), "--top", str(top)], capture_output=True, text=True)
        print(done.stderr, end="")
        if done.returncode != 0:
            print(f"profile_sync.py exited {done.returncode}:\n{done.stdout[-2000:]}")
            return
        print(f"\ntop {top} by own time (tottime):")
        pstats.Stats(str(out)).sort_stats("tottime").print_stats(top)
    finally:
        emulator.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--small", action="store_true", help="50k members")
    parser.add_argument("--profile", action="store_true",
                        help="profile one more revseg sync even when the ratio meets its target")
    parser.add_argument("--top", type=int, default=25, help="functions listed by the profile")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where to put the project (default: a temp dir, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir afterwards")
    parser.add_argument("--raw-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.raw_worker:
        config = json.loads(args.raw_worker)
        print(json.dumps(raw(config["db"], config["url"], config["audience_id"])))
        return 0
    if args.small:
        args.members = 50_000
    if not 0 < args.members < 10_000_000:
        parser.error("--members must be between 1 and 9,999,999 (phones are +1415 and 7 digits)")

    root = (args.data_dir or Path(tempfile.mkdtemp(prefix="revseg-meta-bench-"))).resolve()
    project = root / "project"
    if project.exists():
        shutil.rmtree(project)
    logs = root / "logs"
    project.mkdir(parents=True)
    logs.mkdir(exist_ok=True)
    db, pristine = project / "warehouse.duckdb", root / "pristine.duckdb"
    print(f"data: {root}  ({args.members:,} members; {os.cpu_count()} CPUs)")
    emulators: list[EmulatorProcess] = []
    try:
        started = time.perf_counter()
        generate(db, args.members)
        shutil.copy(db, pristine)  # before revseg adds its state tables: read by the raw loop and --profile
        print(f"generated in {time.perf_counter() - started:.1f}s ({db.stat().st_size / 2**20:.0f} MiB)", flush=True)

        # revseg
        emulators.append(emu := EmulatorProcess(REVSEG_AUDIENCE, logs))
        write_project(project, emu.url, REVSEG_AUDIENCE)
        rv = measure(revseg_command(project), project, logs, "revseg")
        report = json.loads(rv.stdout)
        [sync] = report["syncs"]
        revseg_rows = audience_rows(emu.audience())
        emu.stop()
        print(f"revseg: {rv.wall:.2f}s, added {sync['added']:,}, rejected {sync.get('rejected')},"
              f" audience {len(revseg_rows):,}", flush=True)
        if sync["added"] != args.members or len(revseg_rows) != args.members:
            sys.exit(f"revseg's audience holds {len(revseg_rows):,} rows (added {sync['added']:,});"
                     f" expected {args.members:,}")

        # raw baseline, on a fresh emulator
        emulators.append(emu := EmulatorProcess(RAW_AUDIENCE, logs))
        config = json.dumps({"db": str(pristine), "url": emu.url, "audience_id": RAW_AUDIENCE})
        bl = measure([sys.executable, str(Path(__file__).resolve()), "--raw-worker", config], project, logs, "raw")
        base = json.loads(bl.stdout)
        raw_rows = audience_rows(emu.audience())
        emu.stop()
        print(f"raw:    {bl.wall:.2f}s, sent {base['sent']:,} in {base['requests']} requests,"
              f" invalid {base['invalid']}, audience {len(raw_rows):,}\n", flush=True)
        if raw_rows != revseg_rows:
            sys.exit(f"the raw loop's audience differs from revseg's ({len(raw_rows ^ revseg_rows):,} rows)")

        ratio = print_table(args.members, rv, bl)
        rest = rv.wall - report["segments"][0]["seconds"]
        print(f"revseg split: segment {report['segments'][0]['seconds'] - sync['seconds']:.2f}s"
              f" (evaluate, stage, snapshot), sync {sync['seconds']:.2f}s (diff, deliver, record),"
              f" rest {rest:.2f}s (interpreter, imports, load, validate); raw in-process {base['seconds']:.2f}s")
        if args.profile or ratio < TARGET_RATIO:
            profile(root, pristine, logs, args.top)
        return 0
    finally:
        for emu in emulators:
            emu.stop()
        if args.data_dir is None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        elif args.keep:
            print(f"kept {root}")


if __name__ == "__main__":
    sys.exit(main())
