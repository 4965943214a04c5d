"""The machinery every API emulator shares: a threaded stdlib server on 127.0.0.1, a log of
requests, a queue of faults, and a ``main`` to run one as a process.

An emulator subclass only answers requests (:meth:`Emulator.handle`) the way its API does;
faults are consumed here, one per API request, before the subclass sees the request, so
every emulator misbehaves the same way: an error reply (with the API's own error body and
retry signal), or a delay (then the request is processed normally, as a slow API applies a
change after the client has given up waiting). Paths starting with ``/_`` are control
endpoints (``GET /_health``, plus the subclass's :meth:`Emulator.control`), never faulted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from revseg.sandbox.localserver import LocalServer

Reply = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class Request:
    """One request as received; header names are lower case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass(frozen=True)
class Fault:
    """One queued misbehaviour: wait ``delay`` s, then answer ``status`` (None: process)."""

    status: int | None = 500
    body: Any = None  # a JSON document
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Exchange:
    """A request and the status it was answered with."""

    request: Request
    status: int

    def json(self) -> Any:
        return json.loads(self.request.body)


def reply(status: int, document: Any, headers: dict[str, str] | None = None) -> Reply:
    """A JSON reply."""
    return (
        status,
        {"content-type": "application/json", **(headers or {})},
        json.dumps(document).encode(),
    )


class Emulator:
    """Base of the emulators; start it with ``with`` or :meth:`start`, stop with :meth:`stop`."""

    service = "revseg-emulator"

    def __init__(self, *, port: int = 0) -> None:
        self.exchanges: list[Exchange] = []
        self._faults: deque[Fault] = deque()
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self._server = LocalServer(("127.0.0.1", port), self._handle)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and wake delayed handlers; joins all threads."""
        self.stopping.set()
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

    def inject(self, fault: Fault, n: int = 1) -> None:
        """Queue ``n`` copies of ``fault`` for the next API requests."""
        with self.lock:
            self._faults.extend(fault for _ in range(n))

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def requests(self, method: str | None = None) -> list[Exchange]:
        """The API requests received so far (optionally of one method), in order."""
        with self.lock:
            return [e for e in self.exchanges if method is None or e.request.method == method]

    # -- serving ---------------------------------------------------------------------
    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        url = urlsplit(path)
        query = parse_qs(url.query, keep_blank_values=True)
        return self.dispatch(Request(method, url.path, query, headers, body))

    def dispatch(self, request: Request) -> Reply:
        if request.path.startswith("/_"):
            if request.method == "GET" and request.path == "/_health":
                return reply(200, {"ok": True, "service": self.service})
            return self.control(request)
        with self.lock:
            fault = self._faults.popleft() if self._faults else None
        answer: Reply | None = None
        if fault is not None:
            if fault.delay:
                self.stopping.wait(fault.delay)
            if fault.status is not None:
                answer = reply(fault.status, fault.body, fault.headers)
        if answer is None:
            answer = self.handle(request)
        with self.lock:
            self.exchanges.append(Exchange(request, answer[0]))
        return answer

    def handle(self, request: Request) -> Reply:
        """Answer one API request as the real API would."""
        raise NotImplementedError

    def control(self, request: Request) -> Reply:
        """Control endpoints (``/_...``) of the subclass."""
        return reply(404, {"error": f"no control endpoint {request.method} {request.path}"})


def serve_main(
    make: Callable[[argparse.Namespace], Emulator],
    description: str,
    argv: Sequence[str] | None = None,
    configure: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Run an emulator until SIGTERM/SIGINT; its port is the first line of stdout."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    if configure is not None:
        configure(parser)
    args = parser.parse_args(argv)
    try:
        emulator = make(args)
    except OSError as exc:
        parser.exit(1, f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}\n")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with emulator:
        sys.stdout.write(f"{emulator.port}\n")
        sys.stdout.flush()
        while not stop.wait(0.2):
            pass
