"""Progress for long syncs: a rich progress bar on a terminal, nothing otherwise.

The bars go to stderr, the stream whose terminal enables them: stdout carries the results,
so `revseg sync > report.txt` gets the summary alone (rich's default console is stdout, where
a stopped transient display still left a blank line).
"""

from __future__ import annotations

from typing import Any


class ProgressView:
    """Receives the runner's progress events; renders bars per sync on a TTY."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> ProgressView:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=Console(stderr=True),
                                      transient=True)
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, kind: str, data: dict[str, Any]) -> None:
        if self._progress is None or kind != "batch":
            return
        sync = data["sync"]
        if sync not in self._tasks:
            self._tasks[sync] = self._progress.add_task(sync, total=data["total"])
        self._progress.update(self._tasks[sync], completed=data["done"])
