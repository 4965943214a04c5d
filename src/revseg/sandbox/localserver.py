"""The one HTTP server every sandbox API runs on: 127.0.0.1, HTTP/1.1 keep-alive, Nagle off
(a stdlib server otherwise stalls ~40 ms per request), handler threads joined on close, and
keep-alive connections that ``drop_connections`` can cut so ``stop()`` never waits on a client.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: (status, extra headers, body bytes)
Reply = tuple[int, dict[str, str], bytes]
#: (method, path with its query string, lower-cased headers, body) -> Reply
Handle = Callable[[str, str, dict[str, str], bytes], Reply]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs do
    disable_nagle_algorithm = True
    server: LocalServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:  # SendGrid's contact upsert
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, extra, payload = self.server.handle(method, self.path, headers, body)
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests assert on recorded exchanges, not on stderr noise


class LocalServer(ThreadingHTTPServer):
    """Serves ``handle`` on ``address``; joins its handler threads on close."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], handle: Handle) -> None:
        self.handle = handle
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
