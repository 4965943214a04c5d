"""A Standard Webhooks receiver for tests: verifies, de-duplicates, applies, records.

It plays the customer's endpoint of revseg's webhook destination (SPEC 3.1): signatures
are checked as the Standard Webhooks reference library does (bad ones get 401), a
``webhook-id`` already applied is acknowledged without applying it again, operations are
applied to an in-memory audience ``{id: traits}``, and every request is recorded. Faults
are queued with :meth:`WebhookReceiver.fail_next` and consumed one per request.

In-process::

    with WebhookReceiver(secret) as receiver:
        receiver.fail_next(2, status=503)
        ... POST to receiver.url ...
        assert receiver.audience == {...}

As a subprocess (crash tests)::

    python -m tests.emulators.webhook_receiver --port 0 --secret whsec_... [--audience-file F]

prints its port on the first line of stdout, and serves control endpoints:
``GET /_audience`` (the audience as JSON; also written to ``--audience-file``),
``GET /_deliveries``, ``POST /_faults`` (a JSON object of ``fail_next``'s arguments).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

TOLERANCE_S = 300  # the Standard Webhooks reference library's timestamp tolerance
Reply = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class Fault:
    """One queued misbehaviour: wait ``delay`` s, then answer ``status`` (None: process)."""

    status: int | None = 500
    retry_after: str | None = None
    delay: float = 0.0
    body: str = ""


@dataclass(frozen=True)
class Delivery:
    """One request as received, and what the receiver answered."""

    id: str | None
    headers: dict[str, str]
    body: bytes
    status: int
    attempt: int  # how many requests with this webhook-id arrived so far, this one included
    duplicate: bool = False

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """The receiver; start it with ``with`` or :meth:`start`, stop it with :meth:`stop`."""

    def __init__(
        self,
        secret: str | None = None,
        *,
        port: int = 0,
        tolerance: float = TOLERANCE_S,
        audience_file: str | None = None,
    ) -> None:
        self._key = base64.b64decode(secret.removeprefix("whsec_")) if secret else None
        self.tolerance = tolerance
        self.audience_file = audience_file
        self.audience: dict[str, dict[str, Any]] = {}
        self.triggers: list[tuple[str, str | None]] = []
        self.deliveries: list[Delivery] = []
        self._attempts: Counter[str] = Counter()
        self._applied: set[str] = set()
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", port), self)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and wake delayed handlers; joins all threads."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.drop_connections()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- programming and inspecting ------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        *,
        status: int | None = None,
        retry_after: str | int | None = None,
        delay: float = 0.0,
        body: str = "",
    ) -> None:
        """Misbehave on the next ``n`` requests.

        ``status`` defaults to 500, or, with a ``delay``, to None: sleep, then process the
        request normally (a slow endpoint that applies a batch after the client gave up).
        """
        if status is None and not delay:
            status = 500
        after = None if retry_after is None else str(retry_after)
        with self._lock:
            self._faults.extend(Fault(status, after, delay, body) for _ in range(n))

    def attempts(self, msg_id: str) -> int:
        with self._lock:
            return self._attempts[msg_id]

    @property
    def applied_ids(self) -> set[str]:
        with self._lock:
            return set(self._applied)

    # -- request handling ------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Answer one request; ``headers`` have lower-case names."""
        if path.startswith("/_"):
            return self._control(method, path, body)
        if method != "POST":
            return _reply(405, {"error": "POST only"})
        msg_id = headers.get("webhook-id")
        with self._lock:
            attempt = self._attempts[msg_id or ""] = self._attempts[msg_id or ""] + 1
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            if fault.delay:
                self._stopping.wait(fault.delay)
            if fault.status is not None:
                extra = {"retry-after": fault.retry_after} if fault.retry_after else {}
                self._record(msg_id, headers, body, fault.status, attempt)
                return fault.status, extra, fault.body.encode()
        problem = self._verify(msg_id, headers, body)
        if problem is not None:
            self._record(msg_id, headers, body, 401, attempt)
            return _reply(401, {"error": problem})
        try:
            operations = _operations(json.loads(body))
        except (ValueError, KeyError, TypeError) as exc:
            self._record(msg_id, headers, body, 400, attempt)
            return _reply(400, {"error": f"bad body: {exc}"})
        with self._lock:
            duplicate = msg_id in self._applied
            if not duplicate:
                self._apply(operations)
                self._applied.add(str(msg_id))
            self.deliveries.append(Delivery(msg_id, headers, body, 200, attempt, duplicate))
        return _reply(200, {"ok": True, "duplicate": duplicate})

    def _verify(self, msg_id: str | None, headers: dict[str, str], body: bytes) -> str | None:
        """None when the request is authentic, else why not (Standard Webhooks v1)."""
        timestamp = headers.get("webhook-timestamp", "")
        if not msg_id or not timestamp.isdigit():
            return "missing webhook-id or webhook-timestamp"
        if abs(time.time() - int(timestamp)) > self.tolerance:
            return "timestamp outside tolerance"
        if self._key is None:
            return None
        signed = f"{msg_id}.{timestamp}.".encode() + body
        expected = base64.b64encode(hmac.new(self._key, signed, hashlib.sha256).digest())
        for entry in headers.get("webhook-signature", "").split():
            version, _, signature = entry.partition(",")
            if version == "v1" and hmac.compare_digest(signature.encode(), expected):
                return None
        return "no matching signature"

    def _apply(self, operations: list[dict[str, Any]]) -> None:
        for op in operations:
            if op["op"] in ("add", "update"):
                self.audience[op["id"]] = dict(op.get("traits") or {})
            elif op["op"] == "remove":
                self.audience.pop(op["id"], None)
            else:
                self.triggers.append((op["id"], op.get("message")))

    def _record(
        self, msg_id: str | None, headers: dict[str, str], body: bytes, status: int, attempt: int
    ) -> None:
        with self._lock:
            self.deliveries.append(Delivery(msg_id, headers, body, status, attempt))

    def _control(self, method: str, path: str, body: bytes) -> Reply:
        if method == "GET" and path == "/_audience":
            with self._lock:
                audience = dict(sorted(self.audience.items()))
            self.dump_audience()
            return _reply(200, audience)
        if method == "GET" and path == "/_deliveries":
            with self._lock:
                rows = [
                    {k: v for k, v in asdict(d).items() if k not in ("body", "headers")}
                    for d in self.deliveries
                ]
            return _reply(200, rows)
        if method == "POST" and path == "/_faults":
            self.fail_next(**json.loads(body or b"{}"))
            return _reply(200, {"ok": True})
        return _reply(404, {"error": f"no control endpoint {method} {path}"})

    def dump_audience(self) -> None:
        """Write the audience atomically to ``audience_file`` (when set)."""
        if self.audience_file is None:
            return
        with self._lock:
            data = json.dumps(self.audience, sort_keys=True)
        tmp = f"{self.audience_file}.tmp"
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(data)
        os.replace(tmp, self.audience_file)


def _operations(document: Any) -> list[dict[str, Any]]:
    """The operations of a body, all validated before any is applied."""
    operations = document["operations"]
    if not isinstance(operations, list):
        raise TypeError("operations must be a list")
    for op in operations:
        if op.get("op") not in ("add", "remove", "update", "trigger") or "id" not in op:
            raise ValueError(f"bad operation {op!r}")
    return operations


def _reply(status: int, document: Any) -> Reply:
    return status, {"content-type": "application/json"}, json.dumps(document).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, extra, payload = self.server.receiver.handle(method, self.path, headers, body)
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests assert on recorded deliveries, not on stderr noise


class _Server(ThreadingHTTPServer):
    """Joins its handler threads on close and can cut keep-alive connections to do so."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._connections_lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and left, or a connection cut by stop(), is expected.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret", default=None)
    parser.add_argument("--audience-file", default=None)
    args = parser.parse_args(argv)
    receiver = WebhookReceiver(args.secret, port=args.port, audience_file=args.audience_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with receiver:
        print(receiver.port, flush=True)
        while not stop.wait(0.2):
            pass
    receiver.dump_audience()


if __name__ == "__main__":
    main()
