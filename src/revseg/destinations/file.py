"""The file destination: every operation appended as one JSON Lines record.

Useful for audits, local development and piping into other tools. Each batch is written
with one ``write`` and then fsynced before ``send`` returns, so a batch revseg records as
acknowledged survives a power cut. A crash in the middle of a write can leave a partial
last line; it belonged to an unacknowledged batch (which the next run sends again), so
``open`` cuts it off rather than letting the next record be glued onto it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO, ClassVar

from pydantic import field_validator

from revseg.destinations.base import (
    Batch,
    BatchResult,
    Capabilities,
    DeliverySettings,
    Destination,
    DestinationOptions,
)
from revseg.destinations.encoding import dumps, operation_fields
from revseg.errors import DeliveryError

log = logging.getLogger("revseg.destinations.file")

_CHUNK = 64 * 1024


class FileOptions(DestinationOptions):
    """``options:`` of a file destination: ``path``, relative to the project directory."""

    path: str

    @field_validator("path")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("path must not be empty")
        return value


class FileDestination(Destination):
    """Appends ``{"run_id", "sync", "segment", "batch", "op", "id", "traits"?, "message"?}``."""

    capabilities: ClassVar[Capabilities] = Capabilities()
    Options: ClassVar[type[DestinationOptions]] = FileOptions

    def __init__(self, name: str, options: DestinationOptions, settings: DeliverySettings) -> None:
        if not isinstance(options, FileOptions):
            raise TypeError(f"expected FileOptions, got {type(options).__name__}")
        super().__init__(name, options, settings)
        path = Path(options.path).expanduser()
        project_dir = settings.extra.get("project_dir")
        if not path.is_absolute() and project_dir is not None:
            path = Path(project_dir) / path
        self.path = path
        self._file: IO[bytes] | None = None

    def open(self) -> None:
        if self._file is not None:
            return
        try:
            created = not self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a+b")  # noqa: SIM115 - held open for the run
            _cut_partial_line(self._file, self.path)
            if created:
                _fsync_dir(self.path.parent)
        except OSError as exc:
            self.close()
            raise DeliveryError(f"cannot open {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def send(self, batch: Batch) -> BatchResult:
        self.open()
        assert self._file is not None
        head = {
            "run_id": batch.run_id,
            "sync": batch.sync,
            "segment": batch.segment,
            "batch": batch.number,
        }
        data = b"".join(dumps(head | operation_fields(op)) + b"\n" for op in batch.operations)
        try:
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise DeliveryError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        return BatchResult()


def _cut_partial_line(file: IO[bytes], path: Path) -> None:
    """Truncate bytes after the last newline (the remains of a write cut short by a crash)."""
    size = file.seek(0, os.SEEK_END)
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        file.seek(start)
        chunk = file.read(end - start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end < size:
        log.warning("%s: removing %d bytes of an interrupted write", path, size - end)
        file.truncate(end)
        file.flush()
        os.fsync(file.fileno())
    file.seek(0, os.SEEK_END)


def _fsync_dir(directory: Path) -> None:
    """Make a newly created file's directory entry durable too (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
