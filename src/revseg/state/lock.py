"""Per-segment locks in the state schema, held under a lease (SPEC 4).

A run inserts one row per segment it works on; the table's primary key makes the insert
fail when another run holds the segment. The lease is renewed while the run lives: by a
heartbeat thread on a warehouse session of its own, so a batch that waits minutes on a slow
API, or a long evaluation, never outlasts it (on an embedded DuckDB file, which one process
holds at a time, between batches). A lock whose lease ran out, or whose owner process on
this same host is gone (killed with SIGKILL), is taken over at once, so a crash never blocks
the next run for long.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlglot import exp

from revseg.compile.values import timestamp_literal
from revseg.errors import LockError, WarehouseError
from revseg.state.store import StateStore
from revseg.warehouse.base import Warehouse

LEASE = timedelta(seconds=60)
#: the heartbeat renews the lease this often, well within it
HEARTBEAT = LEASE / 6

logger = logging.getLogger(__name__)


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive_elsewhere(owner: str) -> bool:
    """False when ``owner`` is a process of this host that no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SegmentLock:
    def __init__(self, store: StateStore, run_id: str, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.run_id = run_id
        self.clock = clock
        self.owner = owner_id()
        self.held: list[str] = []
        self._renewed = 0.0
        self._heartbeat: _Heartbeat | None = None

    def acquire(self, segments: list[str], wait_seconds: float) -> None:
        """Take every segment's lock, or raise LockError after ``wait_seconds``."""
        deadline = time.monotonic() + wait_seconds
        while True:
            blocker = self._try(segments)
            if blocker is None:
                return
            if time.monotonic() >= deadline:
                segment, run_id, owner = blocker
                raise LockError(
                    f"segment '{segment}' is locked by run {run_id} ({owner}); another revseg run "
                    "is working on it. Wait for it to finish; a killed run's lock expires within "
                    f"{int(LEASE.total_seconds())}s."
                )
            time.sleep(0.25)

    def _try(self, segments: list[str]) -> tuple[str, str, str] | None:
        locks = self.store.t("locks")
        now = self.clock()
        names = [exp.Literal.string(s) for s in segments]
        rows = self.store.wh.fetchall(
            exp.select("segment", "run_id", "owner", "expires_at").from_(locks).where(exp.column("segment").isin(*names))
        )
        stale = [seg for seg, _run, owner, expires in rows if expires < now or not _alive_elsewhere(owner)]
        live = [(seg, run, owner) for seg, run, owner, expires in rows if seg not in stale]
        if live:
            return live[0]
        expires = now + LEASE
        try:
            with self.store.transaction():
                if stale:
                    self.store.wh.execute(exp.delete(locks, where=exp.column("segment").isin(*[exp.Literal.string(s) for s in stale])))
                self.store.insert_rows("locks", [
                    {"segment": s, "run_id": self.run_id, "owner": self.owner, "expires_at": expires} for s in segments
                ])
        except WarehouseError:
            return (segments[0], "?", "another run")  # lost the race: someone inserted first
        self.held = list(segments)
        self._renewed = time.monotonic()
        if not self.store.wh.single_process:
            self._heartbeat = _Heartbeat.start(self)
        return None

    def renew(self, force: bool = False) -> None:
        """Extend the lease (at most every few seconds, it is called per batch); a no-op while
        the heartbeat does it."""
        if not self.held or self._heartbeat is not None or (not force and time.monotonic() - self._renewed < 5):
            return
        self.store.wh.execute(self._renewal())
        self._renewed = time.monotonic()

    def _renewal(self) -> exp.Update:
        return exp.update(
            self.store.t("locks"), {"expires_at": timestamp_literal(self.clock() + LEASE)},
            where=exp.EQ(this=exp.column("run_id"), expression=exp.Literal.string(self.run_id)),
        )

    def release(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self.held:
            self.store.wh.execute(exp.delete(self.store.t("locks"), where=exp.EQ(
                this=exp.column("run_id"), expression=exp.Literal.string(self.run_id))))
            self.held = []


class _Heartbeat:
    """Renews a lock's lease every HEARTBEAT on a session of its own (the run's session may
    sit in a transaction, or wait on an API, for longer than the lease), until stopped."""

    def __init__(self, lock: SegmentLock, session: Warehouse) -> None:
        self._lock = lock
        self._session = session
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="revseg-lock-heartbeat", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, lock: SegmentLock) -> _Heartbeat | None:
        """None where the adapter has no second session: the run renews between batches."""
        try:
            session = lock.store.wh.clone()
        except NotImplementedError:
            return None
        return cls(lock, session)

    def _beat(self) -> None:
        while not self._stopped.wait(HEARTBEAT.total_seconds()):
            try:
                self._session.execute(self._lock._renewal())  # noqa: SLF001 - the lock's own statement
            except WarehouseError as exc:  # the next beat tries again; the lease has time left
                logger.warning("could not renew the lock of run %s: %s", self._lock.run_id, exc)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._session.close()
