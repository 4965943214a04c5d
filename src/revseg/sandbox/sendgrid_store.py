"""The state behind :class:`~revseg.sandbox.sendgrid_emulator.SendgridEmulator`: contacts,
lists, and the jobs that change them.

SendGrid applies upserts and list removals asynchronously, so a job here is a closure run
once its delay has passed; jobs run in the order they were accepted (``settle`` runs every
due one before a request is answered, so a client polling a job sees it finish, and a
search after a finished job sees its contacts). Callers hold the emulator's lock.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_LIST = "ca7a3796-e8a8-4029-9ccb-df8937940562"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
IDENTIFIERS = ("email", "phone_number_id", "external_id", "anonymous_id")
Outcome = tuple[int, int, int, list[tuple[str, str]]]  # created, updated, deleted, errors


class SendgridError(Exception):
    """A request-level error, answered as ``{"errors": [{"field", "message"}]}``."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or [{"field": field, "message": message}]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Job:
    id: str
    job_type: str  # upsert | delete
    due: float
    run: Callable[[], Outcome]
    requested: int
    status: str = "pending"
    results: dict[str, Any] = field(default_factory=dict)
    started_at: str = field(default_factory=_now)
    finished_at: str | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)


class ContactStore:
    """Contacts keyed by lower-case email (or their other identifier), lists of contact ids."""

    def __init__(self, list_ids: Iterable[str], job_delay: float) -> None:
        self.lists: dict[str, set[str]] = {i: set() for i in list_ids}
        self.contacts: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, Job] = {}
        self.poisoned: set[str] = set()
        self.job_delay = job_delay

    # -- inspecting ------------------------------------------------------------------
    def members(self, list_id: str) -> set[str]:
        self.settle()
        on_list = self.lists[list_id]
        return {c["email"] for c in self.contacts.values() if c["id"] in on_list and "email" in c}

    def contact(self, email: str) -> dict[str, Any]:
        self.settle()
        return self._view(self.contacts[email.lower()]) if email.lower() in self.contacts else {}

    def _view(self, record: dict[str, Any]) -> dict[str, Any]:
        """A ``ContactDetails3``: the stored fields plus the list and segment ids."""
        on = sorted(i for i, ids in self.lists.items() if record["id"] in ids)
        return {
            **record,
            "list_ids": on,
            "segment_ids": [],
            "_metadata": {"self": f"/v3/marketing/contacts/{record['id']}"},
        }

    # -- jobs ------------------------------------------------------------------------
    def settle(self, *, force: bool = False) -> None:
        now = time.monotonic()
        for job in self.jobs.values():
            if job.status != "pending":
                continue
            if not force and job.due > now:
                break  # later jobs wait for earlier ones, as one queue would
            created, updated, deleted, errors = job.run()
            done = created + updated + deleted
            job.errors = errors
            job.status = "completed" if not errors else "failed" if not done else "errored"
            job.finished_at = _now()
            job.results = {
                "requested_count": job.requested,
                "created_count": created,
                "updated_count": updated,
                "deleted_count": deleted,
                "errored_count": len(errors),
            }

    def _enqueue(self, job_type: str, requested: int, run: Callable[[], Outcome]) -> str:
        job_id = str(uuid.uuid4())
        self.jobs[job_id] = Job(job_id, job_type, time.monotonic() + self.job_delay, run, requested)
        return job_id

    def job(self, job_id: str, root: str) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        document: dict[str, Any] = {
            "id": job.id,
            "status": job.status,
            "job_type": job.job_type,
            "started_at": job.started_at,
        }
        if job.status != "pending":
            results = dict(job.results)
            if job.errors:
                results["errors_url"] = f"{root}/_errors/{job.id}"
            document["results"] = results
            document["finished_at"] = job.finished_at
        return document

    def job_errors(self, job_id: str) -> list[tuple[str, str]]:
        job = self.jobs.get(job_id)
        return list(job.errors) if job else []

    # -- the operations --------------------------------------------------------------
    def upsert(self, contacts: Sequence[dict[str, Any]], list_ids: Sequence[str]) -> str:
        unknown = [i for i in list_ids if i not in self.lists]
        if unknown:
            raise SendgridError(404, f"list_ids {', '.join(unknown)} do not exist", "list_ids")
        errors = []
        for index, entry in enumerate(contacts):
            if not any(entry.get(k) for k in IDENTIFIERS):
                errors.append(
                    {
                        "field": f"contacts[{index}]",
                        "message": "contact must have at least one identifier",
                    }
                )
            elif "email" in entry and not EMAIL.fullmatch(entry["email"]):
                errors.append(
                    {
                        "field": f"contacts[{index}].email",
                        "message": f"email '{entry['email']}' is not valid",
                    }
                )
        if errors:
            raise SendgridError(400, "", errors=errors)
        payload = [dict(entry) for entry in contacts]
        lists = list(list_ids)
        return self._enqueue("upsert", len(payload), lambda: self._apply_upsert(payload, lists))

    def _apply_upsert(self, contacts: list[dict[str, Any]], list_ids: list[str]) -> Outcome:
        created = updated = 0
        errors: list[tuple[str, str]] = []
        for entry in contacts:
            key = str(
                entry.get("email") or next(entry[k] for k in IDENTIFIERS if entry.get(k))
            ).lower()
            if key in self.poisoned:
                errors.append((key, "contact could not be processed"))
                continue
            record = self.contacts.get(key)
            if record is None:
                record = {"id": str(uuid.uuid4()), "created_at": _now()}
                self.contacts[key] = record
                created += 1
            else:
                updated += 1
            custom = {**record.get("custom_fields", {}), **(entry.get("custom_fields") or {})}
            record.update({k: v for k, v in entry.items() if k != "custom_fields"})
            if "email" in entry:
                record["email"] = entry["email"].lower()  # SendGrid lower-cases emails
            if custom:
                record["custom_fields"] = custom
            record["updated_at"] = _now()
            for list_id in list_ids:
                self.lists[list_id].add(record["id"])
        return created, updated, 0, errors

    def search(self, emails: Sequence[str]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for email in emails:
            record = self.contacts.get(email.lower())
            result[email] = (
                {"contact": self._view(record)}
                if record is not None
                else {"error": "contact not found"}
            )
        return result

    def remove(self, list_id: str, contact_ids: Sequence[str]) -> str:
        if list_id not in self.lists:
            raise SendgridError(404, f"list {list_id} does not exist", "id")
        known = {c["id"] for c in self.contacts.values()}
        unknown = [i for i in contact_ids if i not in known]
        if unknown:
            raise SendgridError(
                404, f"contact ids not found: {', '.join(unknown[:5])}", "contact_ids"
            )
        ids = list(contact_ids)

        def run() -> Outcome:
            self.lists[list_id].difference_update(ids)
            return 0, 0, len(ids), []

        return self._enqueue("delete", len(ids), run)
