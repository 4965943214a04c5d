"""Klaviyo's JSON:API answers for :class:`~revseg.sandbox.klaviyo_emulator.KlaviyoEmulator`:
request bodies checked against the OpenAPI document, error documents, cursor pages, and the
``filter`` of ``GET /api/profiles``.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any

from revseg.sandbox.emulator import Reply, Request
from revseg.sandbox.openapi import request_schema, validate

MEDIA = "application/vnd.api+json"
MAX_PAGE = 100
MAX_BODY = 5_000_000
_FILTER = re.compile(r'(?:any\(email,(\[.*\])\)|equals\(email,(".*")\))', re.DOTALL)
TITLES = {
    400: ("invalid", "Invalid input."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    413: ("invalid", "Request entity too large."),
    415: ("unsupported_media_type", "Unsupported media type."),
    429: ("throttled", "Request was throttled."),
    500: ("error", "A server error occurred."),
    503: ("service_unavailable", "Service unavailable."),
}


class KlaviyoError(Exception):
    def __init__(self, status: int, detail: str, pointer: str | None = None, **source: str):
        super().__init__(detail)
        self.status = status
        self.source = {"pointer": pointer} if pointer else source


def error_document(status: int, detail: str, source: dict[str, str] | None = None) -> Any:
    code, title = TITLES.get(status, ("error", "Error."))
    error = {"id": str(uuid.uuid4()), "status": status, "code": code, "title": title}
    error.update({"detail": detail, "source": source or {}, "meta": {}})
    return {"errors": [error]}


def jsonapi(status: int, document: Any, headers: dict[str, str] | None = None) -> Reply:
    body = b"" if document is None else json.dumps(document).encode()
    return status, {"content-type": MEDIA, **(headers or {})}, body


def email_filter(text: str | None) -> list[str]:
    """The addresses of ``any(email,["a@x.io",…])`` or ``equals(email,"a@x.io")``.

    >>> email_filter('any(email,["a@x.io","b@x.io"])')
    ['a@x.io', 'b@x.io']
    """
    match = _FILTER.fullmatch(text or "")
    if not match:
        raise KlaviyoError(400, "Unsupported or invalid filter.", parameter="filter")
    try:
        values = json.loads(match.group(1) or f"[{match.group(2)}]")
    except ValueError:
        raise KlaviyoError(400, "Invalid filter value.", parameter="filter") from None
    if len(values) > MAX_PAGE:
        raise KlaviyoError(400, "'any' accepts at most 100 values.", parameter="filter")
    return [str(v) for v in values]


def page(
    items: list[dict[str, Any]], size_text: str | None, cursor: str | None, url: str
) -> dict[str, Any]:
    """One page of a collection: ``page[size]`` 1..100 (default 20), an opaque cursor."""
    size_text = size_text or "20"
    if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE:
        raise KlaviyoError(400, "page[size] must be between 1 and 100.", parameter="page[size]")
    try:
        start = int(base64.urlsafe_b64decode(cursor).decode()) if cursor else 0
    except ValueError:
        raise KlaviyoError(400, "Invalid page cursor.", parameter="page[cursor]") from None
    size = int(size_text)
    links: dict[str, str] = {"self": url}
    if start + size < len(items):
        token = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        links["next"] = f"{url}?page%5Bsize%5D={size}&page%5Bcursor%5D={token}"
    return {"data": items[start : start + size], "links": links}


def json_document(request: Request, spec: dict[str, Any], path: str) -> dict[str, Any]:
    """A request's JSON:API body, checked like Klaviyo does: media type, the 5 MB cap, and
    the operation's schema (the first problem answered with its JSON pointer)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != MEDIA:
        raise KlaviyoError(415, f"Content-Type must be {MEDIA}.")
    if len(request.body) > MAX_BODY:
        raise KlaviyoError(413, "The request payload exceeds 5 MB.")
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        raise KlaviyoError(400, "JSON parse error.", "/data") from None
    schema = request_schema(spec, path, request.method, media_type=MEDIA)
    problems = validate(body, schema, spec)
    if problems:
        where, message = problems[0]
        pointer = "/" + re.sub(r"\[(\d+)\]", r".\1", where).replace(".", "/") if where else "/"
        raise KlaviyoError(
            400, f"The payload provided in the request is invalid: {message}", pointer
        )
    assert isinstance(body, dict)
    return body
