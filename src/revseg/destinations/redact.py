"""Redaction of secrets in what the HTTP core logs and puts into error messages.

SPEC 1: a value that came from ``env_var`` (tokens, API keys, webhook secrets) is never
logged or shown in an error. The HTTP core cannot know where each value came from, so it
redacts three ways: the exact secret values a destination registers, header *names* that
carry credentials, and patterns that look like credentials in URLs and response bodies
(an API that echoes the token back in an error body must not leak it into our messages).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import httpx

REDACTED = "[redacted]"

#: header names whose values are credentials or derived from them (signatures).
_SENSITIVE_NAME = re.compile(
    r"auth|token|key|secret|signature|cookie|session|password|credential", re.IGNORECASE
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\1 {REDACTED}"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]*"), f"whsec_{REDACTED}"),
    (
        re.compile(
            r"""(["']?(?:[\w-]*(?:token|secret|password|signature|api[_-]?key|auth)[\w-]*|(?<![\w-])key)["']?"""
            r"""\s*[:=]\s*["']?)([^"'&\s,;}]+)""",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
)
#: a path segment this long mixing letters and digits is treated as a capability token
#: (Slack/Zapier-style webhook URLs carry their secret in the path).
_TOKEN_SEGMENT = re.compile(r"(?=[^/]*[A-Za-z])(?=[^/]*\d)[A-Za-z0-9_-]{20,}")


def is_sensitive_name(name: str) -> bool:
    """True for header or query-parameter names that carry credentials."""
    return _SENSITIVE_NAME.search(name) is not None


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace registered secret values and credential-looking patterns in ``text``."""
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_headers(headers: Mapping[str, str] | httpx.Headers) -> dict[str, str]:
    """Headers safe to log: credential-bearing values replaced, names kept for debugging."""
    return {
        name.lower(): REDACTED if is_sensitive_name(name) else value
        for name, value in headers.items()
    }


def redact_url(url: httpx.URL | str, secrets: Iterable[str] = ()) -> str:
    """A URL safe to log: no userinfo, credential query values and token-like path parts hidden."""
    url = httpx.URL(url)
    path = "/".join(
        REDACTED if _TOKEN_SEGMENT.fullmatch(part) else part for part in url.path.split("/")
    )
    params = [
        (name, REDACTED if is_sensitive_name(name) else value)
        for name, value in url.params.multi_items()
    ]
    query = "&".join(f"{name}={value}" for name, value in params)
    port = f":{url.port}" if url.port is not None else ""
    shown = f"{url.scheme}://{url.host}{port}{path}" + (f"?{query}" if query else "")
    return redact_text(shown, secrets)


def excerpt(response: httpx.Response, secrets: Iterable[str] = (), limit: int = 200) -> str:
    """A short, single-line, redacted excerpt of a response body for error messages."""
    try:
        text = response.content.decode(response.encoding or "utf-8", errors="replace")
    except LookupError:  # an unknown charset in content-type
        text = response.content.decode("utf-8", errors="replace")
    text = redact_text(" ".join(text.split()), secrets)
    return text if len(text) <= limit else text[: limit - 1] + "…"
