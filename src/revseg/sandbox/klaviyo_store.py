"""The state behind :class:`~revseg.sandbox.klaviyo_emulator.KlaviyoEmulator`: profiles,
lists, and the bulk import jobs that change them.

An import job is applied ``job_delay`` seconds after it was accepted (lazily, in order:
``settle`` runs every due job before a request is answered). Until then it reports
``queued`` (first half of the delay) or ``processing``; then ``complete``, with the rows it
refused as import errors. Profiles are matched by email, lower case, as Klaviyo does.
Callers hold the emulator's lock.
"""

from __future__ import annotations

import random
import re
import string
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_LIST = "Y6nRLr"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
E164 = re.compile(r"\+[1-9]\d{6,14}")
IDENTIFIERS = ("email", "phone_number", "external_id", "_kx")
_ULID = string.digits + "ABCDEFGHJKMNPQRSTVWXYZ"


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def new_id(rng: random.Random, length: int = 26) -> str:
    return "01" + "".join(rng.choice(_ULID) for _ in range(length - 2))


@dataclass
class Job:
    id: str
    profiles: list[dict[str, Any]]
    list_ids: list[str]
    created: float
    due: float
    done: bool = False
    errors: list[dict[str, Any]] = field(default_factory=list)


class ProfileStore:
    """Profiles by id, an email index, list memberships and import jobs."""

    def __init__(self, list_ids: list[str], job_delay: float, seed: int = 7) -> None:
        self.lists: dict[str, set[str]] = {i: set() for i in list_ids}
        self.profiles: dict[str, dict[str, Any]] = {}
        self.by_email: dict[str, str] = {}
        self.jobs: dict[str, Job] = {}
        self.poisoned: dict[str, str] = {}  # lower-case email -> import error detail
        self.job_delay = job_delay
        self._rng = random.Random(seed)

    # -- inspecting ------------------------------------------------------------------
    def members(self, list_id: str) -> set[str]:
        self.settle()
        return {
            self.profiles[i]["email"] for i in self.lists[list_id] if self.profiles[i].get("email")
        }

    def profile(self, email: str) -> dict[str, Any]:
        self.settle()
        found = self.by_email.get(email.lower())
        return dict(self.profiles[found]) if found else {}

    def search(self, emails: list[str]) -> list[dict[str, Any]]:
        """Profile resources (with ``attributes.email``) of the known addresses."""
        self.settle()
        ids = [self.by_email[e.lower()] for e in emails if e.lower() in self.by_email]
        return [self.resource(i) for i in dict.fromkeys(ids)]

    def resource(self, profile_id: str) -> dict[str, Any]:
        record = self.profiles[profile_id]
        attributes = {k: v for k, v in record.items() if k != "properties"}
        attributes["properties"] = dict(record.get("properties", {}))
        return {"type": "profile", "id": profile_id, "attributes": attributes}

    # -- jobs ------------------------------------------------------------------------
    def submit(self, profiles: list[dict[str, Any]], list_ids: list[str]) -> Job:
        now = time.time()
        job = Job(new_id(self._rng, 16), profiles, list_ids, now, now + self.job_delay)
        self.jobs[job.id] = job
        return job

    def settle(self, *, force: bool = False) -> None:
        """Apply every job that is due (all of them with ``force``), in order."""
        now = time.time()
        for job in self.jobs.values():
            if not job.done and (force or job.due <= now):
                self._run(job)

    def status(self, job: Job) -> str:
        if job.done:
            return "complete"
        return "queued" if time.time() < job.created + (job.due - job.created) / 2 else "processing"

    def view(self, job: Job, root: str) -> dict[str, Any]:
        """A ``profile-bulk-import-job`` resource."""
        failed = len(job.errors) if job.done else 0
        return {
            "type": "profile-bulk-import-job",
            "id": job.id,
            "attributes": {
                "status": self.status(job),
                "created_at": _iso(job.created),
                "total_count": len(job.profiles),
                "completed_count": len(job.profiles) - failed if job.done else 0,
                "failed_count": failed,
                "completed_at": _iso(job.due) if job.done else None,
                "expires_at": _iso(job.created + timedelta(days=7).total_seconds()),
                "started_at": _iso(job.created) if self.status(job) != "queued" else None,
            },
            "links": {"self": f"{root}/api/profile-bulk-import-jobs/{job.id}/"},
        }

    def _run(self, job: Job) -> None:
        job.done = True
        for index, resource in enumerate(job.profiles):
            attributes = dict(resource.get("attributes") or {})
            problem = self._problem(attributes)
            if problem is not None:
                pointer, detail = problem
                job.errors.append(
                    {
                        "type": "import-error",
                        "id": str(uuid.uuid4()),
                        "attributes": {
                            "code": "invalid",
                            "title": "Invalid input.",
                            "detail": detail,
                            "source": {
                                "pointer": f"/data/attributes/profiles/data/{index}{pointer}"
                            },
                            "original_payload": attributes,
                        },
                    }
                )
                continue
            profile_id = self._upsert(attributes, resource.get("meta") or {})
            for list_id in job.list_ids:
                self.lists[list_id].add(profile_id)

    def _problem(self, attributes: dict[str, Any]) -> tuple[str, str] | None:
        email, phone = attributes.get("email"), attributes.get("phone_number")
        if email is not None and not EMAIL.fullmatch(str(email)):
            return "/attributes/email", f"Invalid email address: {email}"
        if email is not None and str(email).lower() in self.poisoned:
            return "/attributes/email", self.poisoned[str(email).lower()]
        if phone is not None and not E164.fullmatch(str(phone)):
            return "/attributes/phone_number", f"Invalid phone number: {phone}"
        if len(str(attributes.get("external_id") or "")) > 255:
            return "/attributes/external_id", "external_id is longer than 255 characters"
        return None

    def _upsert(self, attributes: dict[str, Any], meta: dict[str, Any]) -> str:
        email = attributes.get("email")
        profile_id = self.by_email.get(str(email).lower()) if email else None
        if profile_id is None:
            profile_id = new_id(self._rng)
            self.profiles[profile_id] = {"properties": {}}
        record = self.profiles[profile_id]
        for name, value in attributes.items():
            if name == "properties":
                record["properties"].update(value or {})
            elif name == "email" and value:
                record["email"] = str(value).lower()
                self.by_email[str(value).lower()] = profile_id
            elif value is None:
                record.pop(name, None)
            else:
                record[name] = value
        unset = ((meta.get("patch_properties") or {}).get("unset")) or []
        for name in [unset] if isinstance(unset, str) else unset:
            record["properties"].pop(name, None)
        return profile_id
