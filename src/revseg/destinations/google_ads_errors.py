"""Reading Google's error bodies: classification for the HTTP core, and per-record failures.

Both Google paths answer errors in the Google API envelope (``google.rpc.Status`` as JSON:
``{"error": {"code", "message", "status", "details": [...]}}``). The details say more than
the HTTP status, and that is what decides a retry:

- ``RESOURCE_EXHAUSTED`` / 429 / any ``quotaError``: transient, waiting the server's hint
  (``google.rpc.RetryInfo.retryDelay`` on the Data Manager API,
  ``GoogleAdsError.details.quotaErrorDetails.retryDelay`` on the Google Ads API; neither
  sends ``Retry-After``). The daily cap (``quotaError: RESOURCE_EXHAUSTED``) without a hint
  ends the run's attempts at once: retrying within the hour cannot succeed.
- ``ABORTED`` / 409 / ``CONCURRENT_MODIFICATION`` (another job on the list): transient.
- ``UNAUTHENTICATED`` / 401 and ``PERMISSION_DENIED`` / 403 (authentication, authorization,
  not allowlisted): terminal, with a hint at the option to fix.
- a Data Manager 400 whose every ``BadRequest`` violation names an audience member, and a
  Google Ads ``JOB_ALREADY_STARTED``: handed back (OK) so the destination can reject just
  those records and resend the rest, or accept a retried ``:run`` that had gone through.

Everything else falls to the core's status rules (other 4xx terminal, 5xx transient).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from revseg.destinations.http import Outcome, Verdict

#: how long a daily quota exhaustion asks to wait when Google gives no hint: beyond what a
#: run waits, so the core gives up at once and the next run retries.
DAILY_QUOTA_WAIT = 3600.0
_MEMBER_FIELD = re.compile(r"audience_?members\[(\d+)\]", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d*)?)s")


@dataclass(frozen=True)
class Violation:
    """One ``google.rpc.BadRequest.FieldViolation``."""

    field: str
    reason: str = ""
    description: str = ""


@dataclass(frozen=True)
class GoogleError:
    """The parts of an error envelope that decide what to do."""

    http_status: int
    status: str = ""
    message: str = ""
    #: ``family.VALUE`` of Google Ads error codes, and ``google.rpc.ErrorInfo`` reasons.
    codes: tuple[str, ...] = ()
    retry_delay: float | None = None
    violations: tuple[Violation, ...] = field(default_factory=tuple)

    def has(self, code: str) -> bool:
        """True when ``code`` (``family.VALUE``, ``family.*`` or a bare reason) was given."""
        if code.endswith(".*"):
            return any(c.startswith(code[:-1]) for c in self.codes)
        return code in self.codes

    def describe(self) -> str:
        """``HTTP 400 INVALID_ARGUMENT: message [codes]``: one line for a report."""
        text = f"HTTP {self.http_status} {self.status}".rstrip()
        if self.message:
            text += f": {self.message}"
        if self.codes:
            text += f" [{', '.join(self.codes)}]"
        return text


def parse_duration(value: object) -> float | None:
    """A protobuf JSON Duration (``"30s"``, ``"1.5s"``) in seconds."""
    if isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        return float(match.group(1))
    if isinstance(value, dict):  # a Duration written as an object
        seconds = float(value.get("seconds", 0) or 0) + float(value.get("nanos", 0) or 0) / 1e9
        return seconds
    return None


def _ads_errors(detail: dict[str, Any]) -> Iterator[dict[str, Any]]:
    errors = detail.get("errors")
    if isinstance(errors, list):
        yield from (e for e in errors if isinstance(e, dict))


def _codes(error: dict[str, Any]) -> list[str]:
    code = error.get("errorCode")
    return [f"{k}.{v}" for k, v in code.items()] if isinstance(code, dict) else []


def parse_error(response: httpx.Response) -> GoogleError | None:
    """The error envelope of a non-2xx response; None when the body is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    codes: list[str] = []
    retry: float | None = None
    violations: list[Violation] = []
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("google.rpc.RetryInfo"):
            retry = parse_duration(detail.get("retryDelay"))
        elif kind.endswith("google.rpc.ErrorInfo") and detail.get("reason"):
            codes.append(str(detail["reason"]))
        elif kind.endswith("google.rpc.BadRequest"):
            violations += [
                Violation(
                    str(v.get("field", "")), str(v.get("reason", "")), str(v.get("description", ""))
                )
                for v in detail.get("fieldViolations") or []
                if isinstance(v, dict)
            ]
        elif kind.endswith("GoogleAdsFailure"):
            for ads_error in _ads_errors(detail):
                codes += _codes(ads_error)
                quota = (ads_error.get("details") or {}).get("quotaErrorDetails") or {}
                delay = parse_duration(quota.get("retryDelay"))
                retry = delay if delay is not None else retry
    return GoogleError(
        http_status=response.status_code,
        status=str(error.get("status", "")),
        message=str(error.get("message", "")),
        codes=tuple(dict.fromkeys(codes)),
        retry_delay=retry,
        violations=tuple(violations),
    )


def member_violations(error: GoogleError) -> dict[int, str] | None:
    """``{audience member index: reason}`` when every violation names a member, else None."""
    found: dict[int, list[str]] = {}
    for violation in error.violations:
        match = _MEMBER_FIELD.search(violation.field)
        # a violation without a Data Manager ErrorReason (an unknown JSON field, say) is
        # revseg's mistake in the request, not a member's: the whole batch fails
        if match is None or not violation.reason:
            return None
        text = violation.reason or "INVALID_ARGUMENT"
        if violation.description:
            text += f" ({violation.description})"
        found.setdefault(int(match.group(1)), []).append(text)
    if not found:
        return None
    return {i: "Google rejected the member: " + "; ".join(r) for i, r in found.items()}


def classify(response: httpx.Response) -> Verdict | None:
    """The Verdict for a Google response, or None for the core's default status rules."""
    if response.is_success:
        return None
    error = parse_error(response)
    if error is None:
        return Verdict(Outcome.TRANSIENT) if response.status_code == 429 else None
    reason = error.describe()
    if (
        response.status_code == 429
        or error.status == "RESOURCE_EXHAUSTED"
        or error.has("quotaError.*")
    ):
        delay = error.retry_delay
        if delay is None and error.has("quotaError.RESOURCE_EXHAUSTED"):
            delay = DAILY_QUOTA_WAIT
        return Verdict(Outcome.TRANSIENT, reason, retry_after=delay)
    if (
        response.status_code == 409
        or error.status == "ABORTED"
        or error.has("databaseError.CONCURRENT_MODIFICATION")
    ):
        return Verdict(Outcome.TRANSIENT, reason, retry_after=error.retry_delay)
    if (
        response.status_code == 401
        or error.status == "UNAUTHENTICATED"
        or error.has("authenticationError.*")
    ):
        hint = "authentication failed: check access_token (OAuth tokens expire after an hour)"
        if error.has("authenticationError.*") and any("DEVELOPER_TOKEN" in c for c in error.codes):
            hint = "authentication failed: check developer_token"
        return Verdict(Outcome.TERMINAL, f"{hint}; {reason}")
    if error.has("notAllowlistedError.*"):
        hint = (
            "this developer token may no longer use Customer Match on the Google Ads API; "
            "use api: data_manager"
        )
        return Verdict(Outcome.TERMINAL, f"{hint}; {reason}")
    if response.status_code == 403 or error.status == "PERMISSION_DENIED":
        hint = (
            "permission denied: check customer_id, login_customer_id and the token's account access"
        )
        return Verdict(Outcome.TERMINAL, f"{hint}; {reason}")
    if response.status_code == 400 and member_violations(error) is not None:
        return Verdict(Outcome.OK, reason)
    if response.status_code == 400 and set(error.codes) == {
        "offlineUserDataJobError.JOB_ALREADY_STARTED"
    }:
        return Verdict(Outcome.OK, reason)
    return None if response.status_code >= 500 else Verdict(Outcome.TERMINAL, reason)


def partial_failures(body: object) -> dict[int, str]:
    """``{operation index: reason}`` from a Google Ads ``partialFailureError``.

    Raises ValueError for a failure that names no operation: its records cannot be told
    apart, so the caller fails the whole batch rather than acknowledge a rejected record.
    """
    status = body.get("partialFailureError") if isinstance(body, dict) else None
    if not isinstance(status, dict) or not status:
        return {}
    found: dict[int, list[str]] = {}
    for detail in status.get("details") or []:
        if not isinstance(detail, dict):
            continue
        for error in _ads_errors(detail):
            elements = ((error.get("location") or {}).get("fieldPathElements")) or []
            index = next(
                (
                    e.get("index")
                    for e in elements
                    if isinstance(e, dict) and e.get("fieldName") == "operations"
                ),
                None,
            )
            if not isinstance(index, int):
                raise ValueError(
                    f"a partial failure names no operation: {', '.join(_codes(error))}"
                )
            text = ", ".join(_codes(error)) or "error"
            if error.get("message"):
                text += f" ({error['message']})"
            found.setdefault(index, []).append(text)
    if not found and status.get("code"):
        raise ValueError(f"a partial failure names no operation: {status.get('message', '')}")
    return {i: "Google Ads rejected the operation: " + "; ".join(r) for i, r in found.items()}
