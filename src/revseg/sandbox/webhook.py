"""A Standard Webhooks receiver: verifies, de-duplicates, applies, records.

It plays the customer's endpoint of revseg's webhook destination (SPEC 3.1) for
``revseg sandbox`` and for the tests. Webhook POSTs are accepted on any path (the demo
uses ``/hooks``). With a secret, signatures are checked as the Standard Webhooks
reference library does (bad ones get 401); without one, unsigned requests are accepted.
A ``webhook-id`` already applied is acknowledged without applying it again, operations are
applied to an in-memory audience ``{id: traits}``, and every request is recorded. Faults
are queued with :meth:`WebhookReceiver.fail_next` and consumed one per request; ``delay``
slows every request down (crash tests use it to stretch a sync out).

Written independently of :mod:`revseg.destinations.webhook` (it shares no code with the
sender), so the tests that pair the two check one implementation against another.

In-process::

    with WebhookReceiver(secret) as receiver:
        receiver.fail_next(2, status=503)
        ... POST to receiver.url ...
        assert receiver.audience == {...}

As a subprocess (crash tests)::

    python -m revseg.sandbox.webhook --port 0 [--secret whsec_...] [--audience-file F]
        [--delay SECONDS] [--log] [--port-file F]

prints its port on the first line of stdout (the secret may also come from the
``REVSEG_WEBHOOK_SECRET`` environment variable), and serves control endpoints:
``GET /_audience`` (the audience as JSON; also written to ``--audience-file``),
``GET /_deliveries`` (every request, without bodies), ``GET /_applied`` (every applied
operation, in order, with its ``webhook-id``), ``POST /_faults`` (a JSON object of
``fail_next``'s arguments), ``POST /_reset`` (forget everything) and ``GET /_health``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Self

from revseg.sandbox.localserver import LocalServer

TOLERANCE_S = 300  # the Standard Webhooks reference library's timestamp tolerance
SECRET_ENV = "REVSEG_WEBHOOK_SECRET"
SERVICE = "revseg-sandbox-webhook"
Reply = tuple[int, dict[str, str], bytes]


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError (never echoing it) otherwise."""
    problem = "the secret must be 'whsec_' followed by a base64 key (the Standard Webhooks form)"
    if not secret.startswith("whsec_"):
        raise ValueError(problem)
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        raise ValueError(problem) from None
    if not key:
        raise ValueError(problem)
    return key


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

    def summary(self) -> str:
        """One line for a log: id, status, operation counts."""
        counts: Counter[str] = Counter()
        if self.status == 200:
            try:
                counts.update(str(op.get("op")) for op in self.json()["operations"])
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
        ops = " ".join(
            f"{k}={counts[k]}" for k in ("add", "update", "remove", "trigger") if counts[k]
        )
        note = " (duplicate: not applied again)" if self.duplicate else ""
        return f"{self.status} webhook-id={self.id} attempt={self.attempt} {ops or '-'}{note}"


@dataclass(frozen=True)
class Applied:
    """One operation as applied to the audience, with the delivery that carried it."""

    webhook_id: str
    op: str
    id: str
    traits: dict[str, Any] | None = None


class WebhookReceiver:
    """The receiver; start it with ``with`` or :meth:`start`, stop it with :meth:`stop`."""

    def __init__(
        self,
        secret: str | None = None,
        *,
        port: int = 0,
        tolerance: float = TOLERANCE_S,
        audience_file: str | None = None,
        delay: float = 0.0,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        self._key = secret_key(secret) if secret else None
        self.tolerance = tolerance
        self.audience_file = audience_file
        #: seconds every webhook request waits before it is processed (a slow endpoint)
        self.delay = delay
        self.on_delivery = on_delivery
        self.audience: dict[str, dict[str, Any]] = {}
        self.triggers: list[tuple[str, str | None]] = []
        self.deliveries: list[Delivery] = []
        self.applied: list[Applied] = []
        self._attempts: Counter[str] = Counter()
        self._applied: set[str] = set()
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = LocalServer(("127.0.0.1", port), self._serve_request)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    @property
    def signed(self) -> bool:
        """Whether signatures are checked (a secret was given)."""
        return self._key is not None

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
        skip: int = 0,
    ) -> None:
        """Misbehave on the next ``n`` requests (after letting ``skip`` requests through).

        ``status`` defaults to 500, or, with a ``delay``, to None: sleep, then process the
        request normally (a slow endpoint that applies a batch after the client gave up).
        """
        if status is None and not delay:
            status = 500
        after = None if retry_after is None else str(retry_after)
        with self._lock:
            self._faults.extend(Fault(None) for _ in range(skip))
            self._faults.extend(Fault(status, after, delay, body) for _ in range(n))

    def attempts(self, msg_id: str) -> int:
        with self._lock:
            return self._attempts[msg_id]

    @property
    def applied_ids(self) -> set[str]:
        with self._lock:
            return set(self._applied)

    def reset(self) -> None:
        """Forget the audience, the records and any queued faults."""
        with self._lock:
            self.audience.clear()
            self.triggers.clear()
            self.deliveries.clear()
            self.applied.clear()
            self._attempts.clear()
            self._applied.clear()
            self._faults.clear()

    # -- request handling ------------------------------------------------------------
    def _serve_request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        return self.handle(method, path.split("?", 1)[0], headers, body)

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
        if self.delay:
            self._stopping.wait(self.delay)
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
            duplicate = msg_id is not None and msg_id in self._applied
            if not duplicate:
                self._apply(msg_id or "", operations)
                if msg_id is not None:
                    self._applied.add(msg_id)
            delivery = Delivery(msg_id, headers, body, 200, attempt, duplicate)
            self.deliveries.append(delivery)
        self._notify(delivery)
        return _reply(200, {"ok": True, "duplicate": duplicate})

    def _verify(self, msg_id: str | None, headers: dict[str, str], body: bytes) -> str | None:
        """None when the request is authentic, else why not (Standard Webhooks v1).

        Without a secret there is nothing to verify: every request is accepted (a request
        without ``webhook-id`` is then applied without de-duplication).
        """
        if self._key is None:
            return None
        timestamp = headers.get("webhook-timestamp", "")
        if not msg_id or not timestamp.isdigit():
            return "missing webhook-id or webhook-timestamp"
        if abs(time.time() - int(timestamp)) > self.tolerance:
            return "timestamp outside tolerance"
        signed = f"{msg_id}.{timestamp}.".encode() + body
        expected = base64.b64encode(hmac.new(self._key, signed, hashlib.sha256).digest())
        for entry in headers.get("webhook-signature", "").split():
            version, _, signature = entry.partition(",")
            if version == "v1" and hmac.compare_digest(signature.encode(), expected):
                return None
        return "no matching signature"

    def _apply(self, msg_id: str, operations: list[dict[str, Any]]) -> None:
        for op in operations:
            self.applied.append(Applied(msg_id, op["op"], op["id"], op.get("traits")))
            if op["op"] in ("add", "update"):
                self.audience[op["id"]] = dict(op.get("traits") or {})
            elif op["op"] == "remove":
                self.audience.pop(op["id"], None)
            else:
                self.triggers.append((op["id"], op.get("message")))

    def _record(
        self, msg_id: str | None, headers: dict[str, str], body: bytes, status: int, attempt: int
    ) -> None:
        delivery = Delivery(msg_id, headers, body, status, attempt)
        with self._lock:
            self.deliveries.append(delivery)
        self._notify(delivery)

    def _notify(self, delivery: Delivery) -> None:
        if self.on_delivery is not None:
            self.on_delivery(delivery)

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
        if method == "GET" and path == "/_applied":
            with self._lock:
                applied = [asdict(a) for a in self.applied]
            return _reply(200, applied)
        if method == "GET" and path == "/_health":
            with self._lock:
                counts = {"deliveries": len(self.deliveries), "applied": len(self.applied)}
            document = {"ok": True, "service": SERVICE, "pid": os.getpid(), "signed": self.signed}
            return _reply(200, document | counts)
        if method == "POST" and path == "/_faults":
            try:
                self.fail_next(**json.loads(body or b"{}"))
            except (ValueError, TypeError) as exc:
                return _reply(400, {"error": f"bad fault: {exc}"})
            return _reply(200, {"ok": True})
        if method == "POST" and path == "/_reset":
            self.reset()
            self.dump_audience()
            return _reply(200, {"ok": True})
        return _reply(404, {"error": f"no control endpoint {method} {path}"})

    def dump_audience(self) -> None:
        """Write the audience atomically to ``audience_file`` (when set)."""
        if self.audience_file is None:
            return
        with self._lock:
            data = json.dumps(self.audience, sort_keys=True)
        _write_atomic(self.audience_file, data)


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument(
        "--secret",
        default=None,
        help=f"whsec_ secret to verify signatures (default: ${SECRET_ENV})",
    )
    parser.add_argument("--audience-file", default=None)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds every request waits")
    parser.add_argument("--log", action="store_true", help="print one line per request")
    parser.add_argument("--port-file", default=None, help="write the port here once serving")
    args = parser.parse_args(argv)
    secret = args.secret or os.environ.get(SECRET_ENV) or None
    try:
        receiver = WebhookReceiver(
            secret,
            port=args.port,
            audience_file=args.audience_file,
            delay=args.delay,
            on_delivery=_print_delivery if args.log else None,
        )
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    except OSError as exc:
        parser.exit(1, f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}\n")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with receiver:
        print(receiver.port, flush=True)
        if args.port_file:
            _write_atomic(args.port_file, str(receiver.port))
        while not stop.wait(0.2):
            pass
    receiver.dump_audience()


def _print_delivery(delivery: Delivery) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {delivery.summary()}", flush=True)


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
