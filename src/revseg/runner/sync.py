"""One sync run: stage each selected segment, commit its snapshot, then deliver each sync's
delta batch by batch under the protocol of :mod:`revseg.state.store`.

Only the delta leaves the warehouse, a page at a time. Batching, identifiers, templates,
guardrails and state commits live here; destinations only send a batch.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from revseg.compile.catalog import Catalog
from revseg.compile.delta import HASH, DeltaSpec, delta_query, stage_query
from revseg.compile.membership import membership_query, traits_query
from revseg.destinations.base import Batch, BatchResult, DeliverySettings, Destination
from revseg.destinations.registry import get_destination_type
from revseg.errors import DeliveryError, PossiblyDeliveredError, TransientDeliveryError
from revseg.runner.evaluate import definition_hash, evaluate
from revseg.runner.garbage import fewer_collections
from revseg.runner.operations import PreparedBatch, inflight_rows, page_rows, prepare_page
from revseg.runner.probe import Probe, probe
from revseg.runner.reports import RunReport, SegmentReport, SyncReport
from revseg.runner.templates import message_template
from revseg.spec.project import Project, Segment, Sync
from revseg.state.lock import SegmentLock
from revseg.state.store import StateStore
from revseg.state.watermarks import LastRun, last_runs, sync_state

if TYPE_CHECKING:
    import jinja2

SENDS = {"mirror": ("remove", "add", "update"), "upsert": ("add", "update"), "trigger": ("trigger",)}


def new_run_id(now: datetime) -> str:
    """``r20261128T170000Z-3f2a``: sortable by start time, unique by a random suffix."""
    return f"r{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


@dataclass
class SyncOptions:
    as_of: datetime
    full_refresh: bool = False
    max_remove_pct: float | None = None
    dry_run: bool = False  # plan: compute deltas, send nothing
    lock_wait_seconds: float = 30.0


Progress = Callable[[str, dict[str, Any]], None]


class SyncRun:
    """Executes a run over selected segments; returns a RunReport."""

    def __init__(self, project: Project, catalog: Catalog, store: StateStore, options: SyncOptions,
                 clock: Callable[[], datetime], progress: Progress | None = None,
                 destination_extra: dict[str, Any] | None = None, known: dict[str, LastRun] | None = None) -> None:
        self.project = project
        self.catalog = catalog
        self.store = store
        self.options = options
        self.clock = clock
        self.progress = progress or (lambda _kind, _data: None)
        self.extra = destination_extra or {}
        self.report = RunReport(new_run_id(clock()), options.as_of)
        self.seq = 0
        self.lock: SegmentLock | None = None
        self.should_stop: Callable[[], bool] = lambda: False
        #: destinations that stayed unreachable after retries in this run: later syncs to
        #: them fail at once instead of retrying again (the next run delivers everything)
        self.down: dict[str, str] = {}
        #: each segment's last run as this process recorded it, kept across the runs of a
        #: long-running session (it holds the segments' lock: no one else records runs)
        self.known = known if known is not None else {}
        #: entity key checksums taken in this run (see evaluate)
        self.checksums: dict[tuple[str, str], str] = {}
        self._recorded = False  # the run's row is written
        self._finished = False  # ... with its final status

    # -- the run --------------------------------------------------------------------
    def run(self, segments: list[str], syncs: set[str] | None = None,
            lock: SegmentLock | None = None) -> RunReport:
        """Run the segments; a long-running scheduler passes the ``lock`` it already holds."""
        self.store.ensure()
        if self.options.dry_run:
            for name in segments:
                self._plan_segment(self.project.segments[name], syncs)
            return self.report
        own_lock = lock is None
        self.lock = lock or SegmentLock(self.store, self.report.run_id, self.clock)
        if own_lock:
            self.lock.acquire(segments, self.options.lock_wait_seconds)
            # without a lock held across runs, others may have run these segments since
            self.known.clear()
            self.store.forget()
        try:
            chosen = [self.project.segments[name] for name in segments]
            definitions = {segment.name: definition_hash(self.project, segment) for segment in chosen}
            # forgotten until this run records them: a run that fails halfway leaves them unknown
            previous = {name: self.known.pop(name) for name in segments if name in self.known}
            previous.update(last_runs(self.store, [name for name in segments if name not in previous]))
            probes = probe(self.project, self.catalog, self.store, chosen, self.options.as_of, previous, definitions,
                           full_refresh=self.options.full_refresh)
            for i, segment in enumerate(chosen):
                if self.should_stop():
                    break
                self._segment(segment, syncs, probes[segment.name], previous.get(segment.name),
                              definitions[segment.name], last=i == len(segments) - 1)
            if self._recorded and not self._finished:
                self.store.finish_run(self.report.run_id, self.report.status, self.clock())
        finally:
            if own_lock:
                self.lock.release()
        return self.report

    def _record_start(self) -> None:
        """The run's row is written with its first evaluated segment: skips write nothing."""
        if not self._recorded:
            self.store.start_run(self.report.run_id, "sync", self.options.as_of, self.clock())
            self._recorded = True

    def _selected(self, segment: Segment, syncs: set[str] | None) -> list[Sync]:
        return [s for s in segment.syncs if syncs is None or s.name in syncs]

    def _segment(self, segment: Segment, syncs: set[str] | None, probed: Probe, previous: LastRun | None,
                 definition: str, last: bool = False) -> None:
        started = time.monotonic()
        self.progress("segment", {"segment": segment.name})
        result = evaluate(self.project, self.catalog, self.store, segment, self.options.as_of, probed, previous,
                          checksums=self.checksums)
        chosen = self._selected(segment, syncs)
        if result.mode == "skipped":  # nothing new, nothing due, nothing left to deliver
            report = SegmentReport(segment.name, "skipped", result.members)  # as the previous run left it
            self.report.segments.append(report)
            self.report.syncs.extend(SyncReport(segment.name, s.destination, s.mode) for s in chosen)
            report.seconds = time.monotonic() - started
            if result.previous is not None:
                self.known[segment.name] = result.previous
            return
        only = (result.candidates_table, result.changed_table) \
            if result.candidates_table is not None and result.changed_table is not None else None
        traits = [t.name for t in segment.traits] if segment.where is not None else self.store.stage_traits(segment.name)
        synced = [self._sync(segment, sync, traits, only, result.previous_as_of) for sync in chosen]
        # The snapshot and history are committed after the syncs (they read the stored
        # membership, not the snapshot): deliveries wait for nothing they do not need.
        # One transaction with the run's records (and, for the last segment, its status): a
        # run killed before it left the stored membership at a later as_of than its last
        # record, so the next run is full and compares everything; a lost sync row only makes
        # that sync diff in full (sync_members, not this history, is what its destination holds).
        self.report.syncs.extend(synced)
        with self.store.transaction():
            self._record_start()
            entered, exited = self.store.commit_segment(segment.name, self.options.as_of,
                                                        self.project.history_retention, only)
            report = SegmentReport(segment.name, result.mode, result.members, entered, exited)
            report.seconds = time.monotonic() - started
            for sync_report in synced:
                self.store.record_sync_run(self.report.run_id, sync_report, self.options.as_of, self.clock())
            self.store.record_segment_run(self.report.run_id, report, self.options.as_of,
                                          definition, self.clock(), result.fingerprint, result.last_full_as_of)
            self.report.segments.append(report)
            if last:
                self.store.finish_run(self.report.run_id, self.report.status, self.clock())
                self._finished = True
        self.known[segment.name] = result.recorded(self.options.as_of, definition)
        self.store.release_run_tables(segment.name, [s.name for s in segment.syncs])

    def _plan_segment(self, segment: Segment, syncs: set[str] | None) -> None:
        membership = membership_query(self.project, self.catalog, segment.name, self.options.as_of)
        traits = [t.name for t in segment.traits] if segment.where is not None else list(membership.named_selects[1:])
        staged = stage_query(membership, traits).subquery("stage")
        members = int(self.store.scalar(_count(staged.copy())))
        entered, exited = self.store.plan_segment(segment.name, staged.copy())
        self.report.segments.append(SegmentReport(segment.name, "full", members, entered, exited))
        for sync in self._selected(segment, syncs):
            report = SyncReport(segment.name, sync.destination, sync.mode)
            first_run = sync_state(self.store, sync.name, sync.max_attempts, None).first_run
            # a killed run's batch in flight: the sync will recover it first (see StateStore.recover)
            held = self.store.recovered_members(sync.name) if sync.mode != "trigger" else None
            query = self._delta(segment, sync, traits, staged.copy(), first_run, held=held)
            counts = self.store.count_delta(query)
            # members without a usable identifier are skipped, not sent: counted apart, as sync does
            unidentified = self.store.count_unidentified(query, sync.identifiers.values()) if sync.identifiers else {}
            _fill_counts(report, {op: n - unidentified.get(op, 0) for op, n in counts.items()})
            report.skipped = sum(unidentified.values())
            report.warnings = self._warnings(sync, members, report.skipped)
            report.finish()
            self.report.syncs.append(report)

    def _warnings(self, sync: Sync, members: int, skipped: int) -> list[str]:
        """What a data engineer should know before this sync runs (plan)."""
        config = self.project.destinations[sync.destination]
        caps = get_destination_type(config.type).capabilities
        out = []
        if skipped:
            kinds = ", ".join(sorted(sync.identifiers))
            out.append(f"{skipped} records have no usable identifier ({kinds}) and will be skipped")
        if caps.min_audience_size and members < caps.min_audience_size:
            out.append(f"{config.type} serves audiences of at least {caps.min_audience_size} matched members; "
                       f"this segment has {members}")
        if caps.processing_lag:
            hours = caps.processing_lag.total_seconds() / 3600
            out.append(f"{config.type} applies changes asynchronously (up to {hours:g}h): "
                       "its audience size lags the segment")
        return out

    # -- one sync -------------------------------------------------------------------
    def _delta(self, segment: Segment, sync: Sync, traits: list[str], stage: Any, first_run: bool,
               only: tuple[exp.Table, exp.Table] | None = None, held: Any = None) -> Any:
        """The sync's diff; with ``only`` (candidates, their new rows), just those ids; ``held``:
        the sync's snapshot (default: the stored one)."""
        if only is not None:
            stage = only[1]
        spec = DeltaSpec(
            sync=sync.name, mode=sync.mode, traits=tuple(traits), max_attempts=sync.max_attempts,
            on=sync.on, cooldown=sync.cooldown,
            first_run=first_run, backfill=sync.backfill,
        )
        exit_traits = None
        if sync.mode == "trigger" and sync.on == "exit":
            exit_traits = traits_query(self.project, self.catalog, segment.name)
        held = held if held is not None else self.store.t("sync_members")
        return delta_query(spec, stage, held, self.store.t("rejections"),
                           self.store.t("triggers"), self.options.as_of, exit_traits,
                           only_ids=only[0] if only is not None else None)

    def _sync(self, segment: Segment, sync: Sync, traits: list[str],
              only: tuple[exp.Table, exp.Table] | None = None, previous_as_of: datetime | None = None) -> SyncReport:
        started = time.monotonic()
        report = SyncReport(segment.name, sync.destination, sync.mode)
        state = sync_state(self.store, sync.name, sync.max_attempts, previous_as_of)
        # a sync that holds exactly the previous membership only needs the candidates' diff
        if only is not None and (sync.quiet_hours is not None or not state.caught_up):
            only = None
        if state.in_flight:
            self.store.recover(sync.name, sync.on if sync.mode == "trigger" else None)
        query = self._delta(segment, sync, traits, self.store.stage_table(segment.name), state.first_run, only)
        if state.first_run:
            self.store.record_first_run(sync.name, self.report.run_id, self.clock())
        counts = self.store.materialize_delta(sync.name, query)
        blocked = self._guardrail(sync, counts.get("remove", 0))
        if blocked:
            report.error = blocked
        elif sync.destination in self.down:
            report.error = f"not attempted: {self.down[sync.destination]}"
        else:
            if sync.mode == "trigger":
                self.store.apply_bookkeeping(sync.name, sync.on, self.clock())
                report.suppressed = counts.get("suppress", 0)
            try:
                self._deliver(segment, sync, report, counts, state.rejections > 0)
            except TransientDeliveryError as exc:
                report.error = str(exc)
                self.down[sync.destination] = f"destination '{sync.destination}' was unreachable earlier in this run"
            except DeliveryError as exc:
                report.error = str(exc)
        if only is not None and sync.identifiers and sync.mode != "trigger":
            # the diff saw only candidates: count every member still unsendable
            report.skipped = self.store.count_unsendable(segment.name, sync.name, sync.identifiers.values())
        report.finish()
        report.seconds = time.monotonic() - started
        self.progress("sync_done", {"sync": sync.name, "report": report})
        return report

    def _guardrail(self, sync: Sync, removes: int) -> str | None:
        if sync.mode != "mirror" or removes == 0:
            return None
        held = self.store.held(sync.name)
        pct = 100.0 * removes / held if held else 0.0
        limit_pct = self.options.max_remove_pct if self.options.max_remove_pct is not None else sync.max_remove_pct
        if sync.max_removes is not None and removes > sync.max_removes:
            return (f"guardrail: would remove {removes} of {held} records, more than max_removes "
                    f"{sync.max_removes}; nothing was sent. If this is intended, raise max_removes for this sync.")
        if limit_pct is not None and pct > limit_pct:
            return (f"guardrail: would remove {removes} of {held} records ({pct:.1f}%), more than "
                    f"max_remove_pct {limit_pct:g}%; nothing was sent. If this is intended, rerun with "
                    f"--max-remove-pct {min(100, int(pct) + 1)}.")
        return None

    def _destination(self, sync: Sync) -> Destination:
        config = self.project.destinations[sync.destination]
        kind = get_destination_type(config.type)
        settings = DeliverySettings(
            batch_size=config.batch_size, rate_limit_per_s=config.rate_limit_per_s, max_retries=config.max_retries,
            extra={"project_dir": self.project.directory, **self.extra},
        )
        return kind(config.name, config.options, settings)

    def _batch_size(self, sync: Sync, destination: Destination) -> int:
        sizes = [destination.capabilities.max_batch_size, sync.batch_size, destination.settings.batch_size]
        return max(1, min(s for s in sizes if s))

    def _deliver(self, segment: Segment, sync: Sync, report: SyncReport, counts: dict[str, int],
                 open_rejections: bool) -> None:
        """Send the materialized delta (``counts``: its rows per op) batch by batch;
        ``open_rejections``: the sync has rejected records on record."""
        total = sum(counts.get(op, 0) for op in SENDS[sync.mode])
        if total == 0:
            return
        trigger_on = sync.on if sync.mode == "trigger" else None
        ops = SENDS[sync.mode]
        template = message_template(sync.template) if sync.template is not None else None
        with self._destination(sync) as destination, ThreadPoolExecutor(1, "revseg-send") as sender, \
                ThreadPoolExecutor(1, "revseg-encode") as encoder, fewer_collections():
            number = 0
            flight: _InFlight | None = None
            # The next page is read and turned into operations while the sender thread waits
            # for the destination's answer to the batch in flight. Mirror and upsert record
            # its rows in flight then too, in a transaction that acknowledges the batch in
            # flight once its answer is in and only then commits: one commit per batch, the
            # insert off the path between two requests, and never more than one batch in
            # flight (a crash before the commit leaves the previous batch's rows alone).
            for prepared in self._prepared(sync, destination, report, template, ops, sum(counts.values())):
                rows = inflight_rows(prepared)
                # encoded (hashed) in the encoder thread, while the batch before it is still in
                # flight and this thread records it and acknowledges that one
                batch = self._batch(destination, encoder, segment, sync, number + 1, self.seq + 1, prepared)
                recorded = False
                if flight is not None:
                    # SIGTERM: the batch in flight is finished, no other starts; the rest goes next run
                    recorded = trigger_on is None and not self.should_stop()
                    with self.store.transaction():
                        if recorded:
                            self._mark_inflight(sync, number + 1, rows, trigger_on)
                        rejected = self._outcome(flight, trigger_on)
                        stop = self.should_stop()  # also when it came while the batch was in flight
                        if recorded and stop:
                            self.store.forget_inflight(sync.name, self.report.run_id, number + 1)
                        open_rejections = self._acknowledge(flight, rejected, sync, report, trigger_on,
                                                            open_rejections)
                    self._batch_done(sync, flight.prepared.done, total)
                    if flight.failure is not None:
                        raise flight.failure
                    flight = None
                    if stop:
                        report.interrupted = True  # this page and those after it were not sent
                        break
                number += 1
                self.seq += 1
                if not recorded:
                    self._mark_inflight(sync, number, rows, trigger_on)
                flight = self._submit(sender, destination, number, prepared, batch)
            if flight is not None:
                rejected = self._outcome(flight, trigger_on)
                self._acknowledge(flight, rejected, sync, report, trigger_on, open_rejections)
                self._batch_done(sync, flight.prepared.done, total)
                if flight.failure is not None:
                    raise flight.failure
            report.batches = number

    def _prepared(self, sync: Sync, destination: Destination, report: SyncReport,
                  template: jinja2.Template | None, ops: tuple[str, ...], last: int) -> Iterator[PreparedBatch]:
        """The delta (rows ``rn`` 1 to ``last``) a page at a time, as operations ready to send
        (pages with nothing to send or record are skipped); ``done`` counts the rows read."""
        size = self._batch_size(sync, destination)
        after = 0
        done = 0
        while after < last:
            page = self.store.read_delta(sync.name, after, size, ops, total=last)
            after += size
            rows = page_rows(page)
            if rows == 0:
                continue
            done += rows
            prepared = prepare_page(sync, page, template, destination.capabilities.supports_update,
                                    self.options.as_of, done)
            report.skipped += prepared.skipped
            report.deferred += prepared.deferred  # quiet hours: sent by the next run after them
            if prepared.operations or prepared.failed:
                yield prepared

    def _batch_done(self, sync: Sync, done: int, total: int) -> None:
        if self.lock is not None:
            self.lock.renew()
        self.progress("batch", {"sync": sync.name, "done": done, "total": total})

    def _batch(self, destination: Destination, encoder: ThreadPoolExecutor, segment: Segment, sync: Sync,
               number: int, seq: int, prepared: PreparedBatch) -> Future[Batch] | None:
        """Batch ``number`` (delivery ``seq`` of the run), being encoded by the destination in
        the ``encoder`` thread; None when it has nothing to send."""
        if not prepared.operations:
            return None
        batch = Batch(self.report.run_id, sync.name, segment.name, number, seq, self.options.as_of,
                      prepared.operations)
        return encoder.submit(destination.encode, batch)

    def _submit(self, sender: ThreadPoolExecutor, destination: Destination, number: int, prepared: PreparedBatch,
                batch: Future[Batch] | None) -> _InFlight:
        """Step 2 of the protocol, in the sender thread: the batch is already recorded in flight."""
        future = sender.submit(_send_encoded, destination, batch) if batch is not None else None
        return _InFlight(number, prepared, future)

    def _outcome(self, flight: _InFlight, trigger_on: str | None) -> dict[str, str]:
        """Wait for the destination's answer to the batch in flight: the ids it rejected."""
        rejected = dict(flight.prepared.failed)
        try:
            result = flight.future.result() if flight.future is not None else None
        except PossiblyDeliveredError:
            raise  # may have been delivered: at most once for triggers
        except DeliveryError as exc:
            unsent = not isinstance(exc, TransientDeliveryError) or not exc.maybe_delivered
            if trigger_on is None or not unsent:
                raise  # mirror rows go pending; a trigger that may have been delivered stays sent
            # the API refused the whole batch, or no attempt reached it: nothing was sent, so
            # the triggers may be retried (next run); the sync fails once that is recorded
            rejected.update({record_id: f"batch failed: {exc}" for record_id in flight.prepared.operations.id})
            flight.failure = exc
            result = None
        if result is not None:
            rejected.update(result.rejected)
        return rejected

    def _mark_inflight(self, sync: Sync, number: int, rows: dict[str, list[Any]], trigger_on: str | None) -> None:
        """Step 1 of the protocol for batch ``number``."""
        self.store.mark_inflight(sync.name, self.report.run_id, number, rows, trigger_on=trigger_on,
                                 as_of=self.options.as_of, now=self.clock())

    def _acknowledge(self, flight: _InFlight, rejected: dict[str, str], sync: Sync, report: SyncReport,
                     trigger_on: str | None, open_rejections: bool) -> bool:
        """Step 3; returns whether the sync has rejections on record now."""
        operations, state = flight.prepared.operations, flight.prepared.state
        self.store.acknowledge(sync.name, self.report.run_id, flight.number, rejected, trigger_on=trigger_on,
                               now=self.clock(), any_held=any(state["held"]), open_rejections=open_rejections)
        ops = Counter(state["op"])
        if not rejected and "update" not in ops and len(operations) == len(state["id"]):
            # every row was sent as itself (no update split or held back): count by op
            report.added += ops["add"]
            report.removed += ops["remove"]
            report.triggered += ops["trigger"]
            return open_rejections or bool(report.rejected)
        sent = set(operations.id)
        for record_id, op in zip(state["id"], state["op"], strict=True):
            if record_id in rejected or record_id not in sent:
                continue  # rejected, or an update the API has no use for (acknowledged quietly)
            if op == "add":
                report.added += 1
            elif op == "remove":
                report.removed += 1
            elif op == "update":
                report.updated += 1
            else:
                report.triggered += 1
        report.rejected += len(rejected)
        for record_id, reason in rejected.items():
            if len(report.rejections) < 100:
                report.rejections.append({"id": record_id, "reason": reason})
        return open_rejections or bool(report.rejected)


@dataclass
class _InFlight:
    """A batch recorded in flight; ``future`` is its send (None: nothing to send)."""

    number: int
    prepared: PreparedBatch
    future: Future[BatchResult] | None
    #: the trigger batch failed whole, unsent: raised once its rejections are recorded
    failure: DeliveryError | None = None


def _send_encoded(destination: Destination, encoding: Future[Batch]) -> BatchResult:
    """Send the batch once the encoder thread is done with it (its error, if any, is the send's)."""
    return destination.send(encoding.result())


def _fill_counts(report: SyncReport, counts: dict[str, int]) -> None:
    report.added = counts.get("add", 0)
    report.removed = counts.get("remove", 0)
    report.updated = counts.get("update", 0)
    report.triggered = counts.get("trigger", 0)
    report.suppressed = counts.get("suppress", 0)


def _count(source: Any) -> Any:
    return exp.select(exp.Count(this=exp.Star())).from_(source)


__all__ = ["SyncRun", "SyncOptions", "new_run_id", "HASH", "timedelta"]
