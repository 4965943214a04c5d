"""The HTTP layer: stdlib ``ThreadingHTTPServer`` with HTTP/1.1 keep-alive, bodies read whole
(Content-Length or chunked, optionally gzip) under a per-route size limit, and a graceful close.

Handlers see a :class:`Request` and return a :class:`Response`; routing and everything else
live in :mod:`revseg.serve.app`. No framework: the API is nine routes, and the stdlib server
with Nagle off answers in well under a millisecond of overhead.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import orjson


@dataclass
class Request:
    method: str
    path: str  # without the query string, still percent-encoded
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    received: datetime  # naive UTC, when the request line arrived
    started: float  # time.perf_counter() at the same instant

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, document: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, orjson.dumps(document), "application/json", headers or {})


class BodyError(Exception):
    """The body could not be read as sent (400); ``too_large`` when over the limit."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


#: (method, path) -> (max body bytes, what the limit is for)
Limit = Callable[[str, str], tuple[int, str]]
Dispatch = Callable[[Request], Response]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection
    disable_nagle_algorithm = True  # small JSON answers leave at once
    server_version = "revseg"
    sys_version = ""
    timeout = 300  # seconds a keep-alive connection may idle (or stall mid-request) before it is closed
    server: HttpServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        started = time.perf_counter()
        received = datetime.now(UTC).replace(tzinfo=None)
        path, _, query = self.path.partition("?")
        try:
            body = self._body(*self.server.limit(method, path))
        except BodyError as exc:
            self.close_connection = True  # the rest of the body was not read
            response = self.server.body_error(method, path, exc)
        else:
            request = Request(method, path, parse_qs(query, keep_blank_values=True), self.headers, body,
                              received, started)
            response = self.server.dispatch(request)
        self._send(response)

    def _body(self, limit: int, what: str) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            raw = self._chunked(limit, what)
        else:
            try:
                length = int(self.headers.get("content-length") or 0)
            except ValueError:
                raise BodyError("Content-Length is not a number") from None
            if length > limit:
                raise BodyError(f"the body is {length} bytes, more than the {limit // 1024} KB allowed {what}",
                                too_large=True)
            raw = self.rfile.read(length) if length > 0 else b""
            if len(raw) < length:
                raise BodyError("the body ended before Content-Length bytes arrived")
        encoding = (self.headers.get("content-encoding") or "identity").strip().lower()
        if encoding == "gzip":
            return _gunzip(raw, limit, what)
        if encoding != "identity":
            raise BodyError(f"Content-Encoding {encoding!r} is not supported (gzip is)")
        return raw

    def _chunked(self, limit: int, what: str) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024).strip()
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise BodyError("malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > limit:
                raise BodyError(f"the body is more than the {limit // 1024} KB allowed {what}", too_large=True)
            parts.append(self.rfile.read(size))
            self.rfile.readline(16)

    def _send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            if self.server.closing.is_set():
                self.close_connection = True
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except OSError:
            self.close_connection = True  # the client left

    def log_message(self, format: str, *args: Any) -> None:
        pass  # /metrics counts requests; an access log per event would drown the run reports


def _gunzip(raw: bytes, limit: int, what: str) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise BodyError(f"the gzip body does not decompress: {exc}") from None
    if len(body) > limit:
        raise BodyError(f"the body is more than the {limit // 1024} KB allowed {what} once decompressed",
                        too_large=True)
    return body


class HttpServer(ThreadingHTTPServer):
    """Joins its handler threads on close, after cutting idle keep-alive connections."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], dispatch: Dispatch, limit: Limit,
                 body_error: Callable[[str, str, BodyError], Response]) -> None:
        self.dispatch = dispatch
        self.limit = limit
        self.body_error = body_error
        self.closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_gracefully(self) -> None:
        """After ``shutdown()``: answer requests in progress (with Connection: close), end idle
        keep-alive connections (their next read sees EOF), and join every handler thread."""
        self.closing.set()
        with self._connections_lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client that left is not an error
            super().handle_error(request, client_address)
