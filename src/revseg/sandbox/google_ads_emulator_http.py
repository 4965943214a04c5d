"""The HTTP plumbing of the Google Ads emulator: its faults, recorded requests and server.

A stdlib threaded server bound to 127.0.0.1, keep-alive (HTTP/1.1) with Nagle's algorithm
off, as a real API front end answers; a client that timed out and left is not an error.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from revseg.sandbox import google_ads_wire as wire

if TYPE_CHECKING:
    from revseg.sandbox.google_ads_emulator import GoogleAdsEmulator

Reply = tuple[int, dict[str, str], Any]


@dataclass(frozen=True)
class Fault:
    """One queued misbehaviour: wait ``delay`` s, then answer ``status`` (None: process)."""

    status: int | None = 429
    delay: float = 0.0
    retry_delay: str | None = "1s"
    path: str | None = None  # only requests whose path contains this


@dataclass(frozen=True)
class Recorded:
    """One request as received (``body`` as parsed JSON) and the status answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int


def fault_reply(fault: Fault, ads: bool, version: str) -> Reply:
    """A fault in the answering API's own error shape."""
    status = int(fault.status or 500)
    request_id = wire.new_request_id()
    if ads:
        family, value = {
            429: ("quotaError", "RESOURCE_TEMPORARILY_EXHAUSTED"),
            401: ("authenticationError", "OAUTH_TOKEN_EXPIRED"),
            403: ("authorizationError", "USER_PERMISSION_DENIED"),
        }.get(status, ("internalError", "TRANSIENT_ERROR" if status == 503 else "INTERNAL_ERROR"))
        details: dict[str, Any] = {}
        if status == 429 and fault.retry_delay:
            details = {
                "quotaErrorDetails": {
                    "rateScope": "ACCOUNT",
                    "rateName": "Requests per customer per minute",
                    "retryDelay": fault.retry_delay,
                }
            }
        error = wire.ads_error(family, value, wire.MESSAGES.get(status, "Error."), details=details)
        body = wire.envelope(status, [wire.ads_failure(version, [error], request_id)])
        return status, {"request-id": request_id}, body
    reasons = {429: "RESOURCE_EXHAUSTED", 401: "ACCESS_TOKEN_EXPIRED", 403: "PERMISSION_DENIED"}
    detail_list = [wire.error_info(reasons.get(status, "INTERNAL_ERROR"))]
    if status == 429 and fault.retry_delay:
        detail_list.append(wire.retry_info(fault.retry_delay))
    return status, {}, wire.envelope(status, detail_list)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Google's front end does
    disable_nagle_algorithm = True
    server: EmulatorServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, extra, document = self.server.emulator.handle(method, self.path, headers, raw)
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=UTF-8")
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests assert on recorded requests, not on stderr noise


class EmulatorServer(ThreadingHTTPServer):
    """Serves one emulator; handler threads are daemons so a delayed answer never blocks exit."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], emulator: GoogleAdsEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that timed out and left is expected (delay faults)
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)
