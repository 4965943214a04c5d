"""``status`` and ``history``: what the state schema says about each segment and sync."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from revseg.spec.project import Project
from revseg.state import history
from revseg.state.store import StateStore


def project_status(project: Project, store: StateStore, now: datetime) -> dict[str, Any]:
    """Per segment: members, last run, freshness lag; per sync: last outcome, rejections."""
    exists = store.exists()
    segments = history.segment_status(store) if exists else {}
    syncs = history.sync_status(store) if exists else {}
    held = history.held_counts(store) if exists else {}
    members = history.member_counts(store) if exists else {}
    rejections = history.open_rejections(store) if exists else {}
    out: list[dict[str, Any]] = []
    for name, segment in sorted(project.segments.items()):
        last = segments.get(name)
        entry: dict[str, Any] = {
            "name": name,
            "members": members.get(name, 0),
            "last_run": last["run_id"] if last else None,
            "as_of": last["as_of"] if last else None,
            "freshness_seconds": round((now - last["as_of"]).total_seconds(), 3) if last else None,
            "entered": last["entered"] if last else 0,
            "exited": last["exited"] if last else 0,
            "syncs": [],
        }
        for sync in segment.syncs:
            run = syncs.get(sync.name)
            entry["syncs"].append({
                "destination": sync.destination,
                "mode": sync.mode,
                "held": held.get(sync.name, 0),
                "last_run": run["run_id"] if run else None,
                "status": run["status"] if run else "never",
                "added": run["added"] if run else 0,
                "removed": run["removed"] if run else 0,
                "updated": run["updated"] if run else 0,
                "triggered": run["triggered"] if run else 0,
                "rejected": run["rejected"] if run else 0,
                "error": run["error"] if run else None,
                "open_rejections": rejections.get(sync.name, []),
            })
        out.append(entry)
    return {"segments": out}


def segment_history(store: StateStore, segment: str) -> list[dict[str, Any]]:
    """Past runs, ``seconds`` rounded to the millisecond as in ``sync --json``."""
    runs = history.segment_history(store, segment) if store.exists() else []
    return [{**run, "seconds": None if run["seconds"] is None else round(run["seconds"], 3)} for run in runs]
