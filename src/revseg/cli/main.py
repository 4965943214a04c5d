"""The ``revseg`` command: thin click commands that call the runner and render its results.

Exit codes (SPEC 5): 0 all delivered; 1 rejections or a failed sync; 2 invalid project or
usage; 3 warehouse unreachable or a query failed.
"""

from __future__ import annotations

import atexit
import functools
import gc
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from revseg import __version__
from revseg.cli.render import bar_chart, csv_text, sparkline, table, to_json
from revseg.errors import ProjectError, RevsegError

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """What every command shares: the runner, built lazily, and the secrets to redact."""

    def __init__(self, project_dir: str, target: str | None) -> None:
        from revseg.runner import Runner

        self.runner = Runner(Path(project_dir), target=target)

    def redact(self, message: str) -> str:
        project = self.runner._project
        return project.secrets.redact(message) if project is not None else message

    def out(self, message: str = "", *, err: bool = False) -> None:
        click.echo(self.redact(message), err=err)

    def out_json(self, value: Any) -> None:
        """One JSON document, its strings redacted one by one (never its numbers: it stays JSON)."""
        project = self.runner._project
        click.echo(to_json(project.secrets.redact_data(value) if project is not None else value))


def project_command(fn: F) -> F:
    """Add --project-dir and --target, build the Context, map errors to exit codes."""

    @click.option("--project-dir", metavar="DIR", default=".", show_default=True, type=click.Path(file_okay=False),
                  help="Directory holding revseg.yml.")
    @click.option("--target", metavar="NAME", default=None, help="Target in revseg.yml to use (default: its target:).")
    @functools.wraps(fn)
    def wrapper(project_dir: str, target: str | None, **kwargs: Any) -> Any:
        ctx = _startup(project_dir, target)
        try:
            return fn(ctx, **kwargs)
        except ProjectError as exc:
            for problem in exc.problems:
                ctx.out(str(problem), err=True)
            count = len(exc.problems)
            ctx.out(f"{count} problem{'s' if count != 1 else ''} found; nothing was run.", err=True)
            sys.exit(exc.exit_code)
        except RevsegError as exc:
            ctx.out(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def _startup(project_dir: str, target: str | None) -> Context:
    """The Context, built with the collector paused: importing the runner (sqlglot, pydantic,
    the project loader) creates ~85k container objects that live as long as the process; the
    collector found nothing among them but spent ~25 ms of a one-shot sync looking.

    They are then frozen, so the full collections a large sync triggers do not walk them
    again (a 240k-member first sync spent 0.35 s in the collector, 0.2 s frozen). Once per
    process: freezing again would also freeze garbage not yet collected.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        ctx = Context(project_dir, target)
    finally:
        if enabled:
            gc.enable()
    if not gc.get_freeze_count():
        gc.freeze()
    return ctx


def _as_of_option(fn: F) -> F:
    """``--as-of TS``, parsed by click so that a bad value names the option and exits 2."""
    return click.option("--as-of", "as_of", metavar="TS", default=None,
                        callback=lambda _ctx, param, value: parse_as_of(value, param),
                        help="Evaluate at this instant (ISO-8601; without a zone, UTC).")(fn)


def parse_as_of(value: str | None, param: click.Parameter | None = None) -> datetime | None:
    """ISO-8601; a value without a zone is UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 timestamp (e.g. 2026-11-28T17:00:00Z)",
                                 param=param) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds") + "Z" if not moment.microsecond else moment.isoformat() + "Z"


class CommandGroup(click.Group):
    """click's group, with a "did you mean" for a mistyped command (`revseg synk`)."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        from revseg.errors import did_you_mean

        name = args[0] if args else ""
        if args and self.get_command(ctx, name) is None and not name.startswith("-"):
            ctx.fail(f"No such command '{name}'{did_you_mean(name, self.list_commands(ctx))}.")
        return super().resolve_command(ctx, args)


@click.group(cls=CommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="revseg")
def main() -> None:
    """revseg: warehouse-native reverse ETL for real-time customer segmentation."""
    # At exit, the collector would walk every object sqlglot, pydantic, pyarrow and DuckDB
    # created at import, all of which die with the process: 60-100 ms of CPU per command.
    # Freezing them first skips that walk; atexit handlers (logging's flush) still run, and
    # the connection and files are closed explicitly before. Unregister: tests invoke main often.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Scaffold a new project in DIRECTORY: revseg.yml, two segments, a file destination and a
    seeded DuckDB warehouse; never overwrites a file."""
    from revseg.errors import UsageError
    from revseg.project.scaffold import scaffold_project

    try:
        written = scaffold_project(directory)
    except UsageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    for path in written:
        click.echo(f"  created {path}")
    click.echo(f"\nNext: cd {directory} && revseg validate && revseg preview "
               f"{_first_segment(written)} && revseg sync")


def _first_segment(paths: list[Path]) -> str:
    for path in paths:
        if path.parent.name == "segments":
            return path.stem
    return "SEGMENT"


@main.command()
@project_command
def validate(ctx: Context) -> None:
    """Check every file of the project, against the warehouse's columns too."""
    project = ctx.runner.validate()
    counts = ", ".join(_plural(n, word) for n, word in (
        (len(project.segments), "segment"), (len(project.destinations), "destination"), (len(project.models), "model")))
    ctx.out(f"OK: {counts} checked against target '{project.target_name}'.")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@main.command(name="compile")
@click.argument("segment")
@click.option("--dialect", type=click.Choice(["duckdb", "postgres", "snowflake", "bigquery", "databricks"]),
              default=None, help="SQL dialect (default: the target's).")
@_as_of_option
@click.option("--incremental", is_flag=True, help="Print what an incremental run executes: candidates, then their membership.")
@project_command
def compile_(ctx: Context, segment: str, dialect: str | None, as_of: datetime | None, incremental: bool) -> None:
    """Print the SQL that computes SEGMENT's membership."""
    ctx.out(ctx.runner.compile(segment, dialect=dialect, as_of=as_of, incremental=incremental))


@main.command()
@click.argument("segment")
@_as_of_option
@click.option("--limit", metavar="N", type=click.IntRange(min=0), default=None,
              help="Show at most N members [default: 50 for table; every member for jsonl and csv].")
@click.option("--all", "show_all", is_flag=True, help="Show every member.")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default="table", show_default=True,
              help="Output: an aligned table, one JSON object per member, or CSV.")
@project_command
def preview(ctx: Context, segment: str, as_of: datetime | None, limit: int | None, show_all: bool, fmt: str) -> None:
    """Compute SEGMENT's membership (id and traits) without changing anything."""
    if show_all and limit is not None:
        raise click.UsageError("use --limit N or --all, not both")
    default = 50 if fmt == "table" else None  # machine formats are for piping: all of it
    result = ctx.runner.preview(segment, as_of=as_of, limit=None if show_all else (limit if limit is not None else default))
    names = list(result.members[0].traits) if result.members else [t.name for t in ctx.runner.project.segments[segment].traits]
    if fmt == "jsonl":
        for member in result.members:
            ctx.out_json({"id": member.id, "traits": member.traits})
        return
    rows = [[m.id, *m.traits.values()] for m in result.members]
    if fmt == "csv":
        secrets = ctx.runner.project.secrets
        click.echo(csv_text([secrets.redact(n) for n in ["id", *names]], secrets.redact_data(rows)), nl=False)
        return
    ctx.out(table(["id", *names], rows))
    ctx.out(f"\n{len(result.members)} of {_plural(result.total, 'member')} of {segment} at {iso(result.as_of)}", err=True)


def _select_option(fn: F) -> F:
    return click.option("--select", "-s", "select", metavar="S", multiple=True,
                        help="Segment name, tag:NAME or destination:NAME (repeatable).")(fn)


@main.command()
@_select_option
@_as_of_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the shape of sync --json).")
@project_command
def plan(ctx: Context, select: tuple[str, ...], as_of: datetime | None, as_json: bool) -> None:
    """Show what the next sync would add, remove, update and trigger; send nothing."""
    report = ctx.runner.plan(select, as_of=as_of)
    if as_json:
        ctx.out_json(report.as_json())
        return
    rows = [[s.segment, s.destination, s.mode, s.added, s.removed, s.updated, s.triggered, s.skipped]
            for s in report.syncs]
    for seg in report.segments:
        ctx.out(f"{seg.name}: {_plural(seg.members, 'member')} (+{seg.entered} entering, -{seg.exited} leaving)")
    if rows:
        ctx.out()
        ctx.out(table(["segment", "destination", "mode", "add", "remove", "update", "trigger", "skipped"], rows))
    for s in report.syncs:
        for warning in s.warnings:
            ctx.out(f"warning: {s.segment} -> {s.destination}: {warning}", err=True)


@main.command()
@_select_option
@_as_of_option
@click.option("--full-refresh", is_flag=True, help="Evaluate every segment in full.")
@click.option("--max-remove-pct", metavar="PCT", type=click.FloatRange(0, 100), default=None,
              help="Fail a mirror sync that would remove more than this % of its audience.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the run's results.")
@project_command
def sync(ctx: Context, select: tuple[str, ...], as_of: datetime | None, full_refresh: bool,
         max_remove_pct: float | None, as_json: bool) -> None:
    """Compute segments, diff them in the warehouse, deliver the changes, commit."""
    from revseg.cli.progress import ProgressView

    with ProgressView(enabled=not as_json and sys.stderr.isatty()) as view:
        report = ctx.runner.sync(select, as_of=as_of, full_refresh=full_refresh,
                                 max_remove_pct=max_remove_pct, progress=view.update)
    if as_json:
        ctx.out_json(report.as_json())
    else:
        ctx.out(summary(report))
    sys.exit(report.exit_code)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@project_command
def status(ctx: Context, as_json: bool) -> None:
    """Per segment and sync: members, last run, freshness lag, adds/removes, failures."""
    result = ctx.runner.status()
    if as_json:
        ctx.out_json(result)
        return
    for seg in result["segments"]:
        lag = f"{seg['freshness_seconds']:.0f}s ago" if seg["freshness_seconds"] is not None else "never run"
        ctx.out(f"{seg['name']}: {_plural(seg['members'], 'member')}, last run {seg['last_run'] or '-'} ({lag}), "
                f"+{seg['entered']} -{seg['exited']}")
        for sync in seg["syncs"]:
            ctx.out(f"  -> {sync['destination']} ({sync['mode']}): {sync['status']}, holds {sync['held']}, last "
                    f"+{sync['added']} -{sync['removed']} ~{sync['updated']} triggered {sync['triggered']}, "
                    f"rejected {sync['rejected']}")
            if sync["error"]:
                ctx.out(f"     error: {sync['error']}")
            for rejection in sync["open_rejections"][:5]:
                ctx.out(f"     rejected {rejection['id']} ({rejection['attempts']}x): {rejection['reason']}")


@main.command()
@click.argument("segment")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@project_command
def history(ctx: Context, segment: str, as_json: bool) -> None:
    """Past runs of SEGMENT, with its membership size over time."""
    runs = ctx.runner.history(segment)
    if as_json:
        ctx.out_json({"segment": segment, "runs": runs})
        return
    if not runs:
        ctx.out(f"{segment} has no runs yet: run `revseg sync --select {segment}`.")
        return
    sizes = [int(r["members"]) for r in runs]
    ctx.out(f"{segment}: {_plural(len(runs), 'run')}, members {sparkline(sizes)} (min {min(sizes)}, max {max(sizes)})\n")
    labels = [iso(r["as_of"]) for r in runs]
    notes = [f"  (+{r['entered']} -{r['exited']})" for r in runs]
    ctx.out(bar_chart(labels, sizes, notes))


@main.command(name="run")
@_select_option
@click.option("--poll-interval", type=click.FloatRange(0.01, 60), default=0.1, show_default=True,
              help="Seconds between checks of continuous segments for new data.")
@project_command
def run_(ctx: Context, select: tuple[str, ...], poll_interval: float) -> None:
    """Keep segments fresh: each on its refresh cadence, continuous ones as data lands."""
    import signal

    from revseg.runner.scheduler import Scheduler

    scheduler = Scheduler(ctx.runner, select, poll_interval=poll_interval,
                          on_report=lambda report: ctx.out(summary(report)))
    signal.signal(signal.SIGTERM, lambda *_: scheduler.stop())
    signal.signal(signal.SIGINT, lambda *_: scheduler.stop())
    ctx.out(f"revseg run: {_plural(len(scheduler.names), 'segment')}; Ctrl-C or SIGTERM stops after the batch in flight.",
            err=True)
    scheduler.run()
    ctx.out("revseg run: stopped cleanly.", err=True)


@main.command()
@_select_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; beyond loopback, serve.api_token is required.")
@click.option("--port", type=click.IntRange(0, 65535), default=8470, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--poll-interval", type=click.FloatRange(0.01, 60), default=None,
              help="Seconds between checks of continuous segments; ingest wakes them at once "
                   "[default: 1 on DuckDB, where ingest is the only writer; else 0.1].")
@project_command
def serve(ctx: Context, select: tuple[str, ...], host: str, port: int, poll_interval: float | None) -> None:
    """`run` plus an HTTP API: membership lookups, Segment-compatible ingest, health, metrics."""
    import signal

    from revseg.serve import ServeOptions, Service

    def event(kind: str, data: dict[str, Any]) -> None:
        if kind == "report":
            ctx.out(summary(data["report"]))
        elif kind == "listening":
            ctx.out(f"revseg serve: listening on {data['url']} ({_plural(len(data['segments']), 'segment')}); "
                    "Ctrl-C or SIGTERM stops after the batch in flight.", err=True)
        elif kind == "warning":
            ctx.out(f"revseg serve: warning: {data['message']}", err=True)

    service = Service(ctx.runner, ServeOptions(host, port, select, poll_interval), on_event=event)
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    signal.signal(signal.SIGINT, lambda *_: service.stop())
    service.run()
    ctx.out("revseg serve: stopped cleanly.", err=True)


def summary(report: Any) -> str:
    lines = [f"run {report.run_id} at {iso(report.as_of)}: {report.status}"]
    for seg in report.segments:
        lines.append(f"  {seg.name}: {_plural(seg.members, 'member')}, {seg.entered} entered, {seg.exited} exited "
                     + ("(skipped: nothing new since the last run)" if seg.mode == "skipped"
                        else f"({seg.seconds:.2f}s)"))
    for s in report.syncs:
        counts = f"+{s.added} -{s.removed} ~{s.updated}"
        if s.mode == "trigger":
            counts = f"{s.triggered} triggered"
        extra = "".join(f", {n} {k}" for k, n in (("rejected", s.rejected), ("skipped", s.skipped)) if n)
        lines.append(f"  {s.segment} -> {s.destination} ({s.mode}): {counts}{extra} [{s.status}]")
        if s.error:
            lines.append(f"    error: {s.error}")
        if s.interrupted:
            lines.append("    stopped before the end of the delta: the next run sends the rest")
        for rejection in s.rejections[:5]:
            lines.append(f"    rejected {rejection['id']}: {rejection['reason']}")
    return "\n".join(lines)


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8471, show_default=True,
              help="The webhook's port on 127.0.0.1; the API emulators take the 9 ports after "
                   "it (0: every server on any free port).")
@click.option("--detach", is_flag=True, help="Run in the background (log: .revseg/sandbox.log).")
@click.option("--stop", "stop_", is_flag=True, help="Stop the sandbox started with --detach.")
@click.option("--status", "status_", is_flag=True,
              help="Say whether a sandbox is running, with each API's URL and options.")
@click.option("--secret", envvar="REVSEG_WEBHOOK_SECRET", default=None, show_envvar=True,
              help="whsec_ secret: verify signatures (default: accept unsigned requests).")
@click.option("--project-dir", metavar="DIR", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Directory whose .revseg/ holds the sandbox's pid and log.")
def sandbox(port: int, detach: bool, stop_: bool, status_: bool, secret: str | None,
            project_dir: str) -> None:
    """Run local stand-ins to sync to, in one process: a webhook receiver (a `webhook`
    destination with url http://127.0.0.1:PORT/hooks; GET /_audience shows what it holds)
    and emulators of the Meta, LinkedIn, Google Ads, Iterable, Mailchimp, SendGrid, Braze,
    Klaviyo and Twilio APIs on ports PORT+1 to PORT+9 (8472-8480 by default). --status
    prints the destination options that reach each one."""
    from revseg.sandbox import server

    if sum([detach, stop_, status_]) > 1:
        raise click.UsageError("use one of --detach, --stop and --status")
    state_dir = Path(project_dir) / ".revseg"
    try:
        if stop_:
            stopped = server.stop(state_dir)
            click.echo(f"stopped the sandbox on port {stopped.port} (pid {stopped.pid})" if stopped
                       else "no sandbox is running")
            return
        if status_:
            info = server.status(state_dir)
            if info is None or not info.running:
                click.echo("no sandbox is running")
                sys.exit(1)
            click.echo(f"sandbox running: {info.url} (pid {info.pid}, "
                       f"{'signed' if info.signed else 'unsigned'} requests)")
            _echo_sandbox_apis(info.apis)
            return

        def ready(info: Any) -> None:
            click.echo(f"webhook sandbox listening on {info.url} "
                       f"({'verifying signatures' if info.signed else 'accepting unsigned requests'})")
            click.echo(f"audience: {info.base_url}/_audience  deliveries: {info.base_url}/_deliveries")
            _echo_sandbox_apis(info.apis)
            click.echo("Ctrl-C to stop")

        info = server.start(port, detach=detach, state_dir=state_dir, secret=secret, on_ready=ready,
                            on_request=lambda delivery: click.echo(delivery.summary()))
        if detach:
            state = "already running" if info.already_running else "started"
            click.echo(f"webhook sandbox {state}: {info.url} (pid {info.pid}, log {info.log_file or '-'})")
            click.echo(f"audience: {info.base_url}/_audience; stop it with `revseg sandbox --stop`")
            _echo_sandbox_apis(info.apis)
    except RevsegError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


def _echo_sandbox_apis(apis: Any) -> None:
    """Each emulated API's URL and the destination options (a YAML flow mapping) that reach it."""
    if not apis:
        return
    click.echo("API emulators (destination type: url, then its options):")
    for api in apis:
        click.echo(f"  {api['type']}: {api['url']}")
        click.echo(f"    options: {json.dumps(api['options'])}")


if __name__ == "__main__":  # pragma: no cover
    main()
