"""What a sync or a plan returns: per segment, per sync, and for the run (SPEC 5 ``--json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class SegmentReport:
    name: str
    mode: str  # full | incremental | skipped
    members: int = 0
    entered: int = 0
    exited: int = 0
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "mode": self.mode, "members": self.members, "entered": self.entered,
                "exited": self.exited, "seconds": round(self.seconds, 3)}


@dataclass
class SyncReport:
    segment: str
    destination: str
    mode: str
    added: int = 0
    removed: int = 0
    updated: int = 0
    triggered: int = 0
    rejected: int = 0
    skipped: int = 0
    suppressed: int = 0
    deferred: int = 0  # trigger messages held back by quiet hours
    status: str = "success"  # success | partial | failed
    error: str | None = None
    seconds: float = 0.0
    rejections: list[dict[str, str]] = field(default_factory=list)
    batches: int = 0
    warnings: list[str] = field(default_factory=list)  # plan: destination constraints at risk
    #: the run was stopped (SIGTERM) with part of the delta unsent: the next run sends the rest
    interrupted: bool = False

    @property
    def name(self) -> str:
        return f"{self.segment}.{self.destination}"

    def finish(self) -> None:
        if self.error is not None:
            self.status = "failed"
        elif self.rejected or self.interrupted:
            self.status = "partial"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "segment": self.segment, "destination": self.destination, "mode": self.mode,
            "added": self.added, "removed": self.removed, "updated": self.updated,
            "triggered": self.triggered, "rejected": self.rejected, "skipped": self.skipped,
            "status": self.status, "seconds": round(self.seconds, 3),
        }
        if self.mode == "trigger":
            out["suppressed"] = self.suppressed
            out["deferred"] = self.deferred
        if self.rejections:
            out["rejections"] = self.rejections[:100]
        if self.error:
            out["error"] = self.error
        if self.warnings:
            out["warnings"] = self.warnings
        return out


@dataclass
class RunReport:
    run_id: str
    as_of: datetime
    segments: list[SegmentReport] = field(default_factory=list)
    syncs: list[SyncReport] = field(default_factory=list)

    @property
    def status(self) -> str:
        if any(s.status == "failed" for s in self.syncs):
            return "failed"
        if all(s.status == "success" for s in self.syncs):
            return "success"
        return "partial"

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "success" else 1

    def as_json(self) -> dict[str, Any]:
        rejections = [r for s in self.syncs for r in s.rejections][:100]
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "as_of": _iso(self.as_of),
            "status": self.status,
            "segments": [s.as_json() for s in self.segments],
            "syncs": [s.as_json() for s in self.syncs],
        }
        if rejections:
            out["rejections"] = rejections
        return out


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds") + "Z"
