"""A local emulator of Google's Customer Match APIs: the Data Manager API
(``audienceMembers:ingest`` / ``:remove``) and the Google Ads API OfflineUserDataJobService
(jobs: ``:create``, ``:addOperations``, ``:run``, and ``googleAds:search`` for their status).

It checks what Google checks (bearer token, ``developer-token``, ``login-customer-id`` for a
manager, required fields, unknown fields, oneofs, SHA-256 hex digests, batch caps, the job
lifecycle) and answers with Google's response and error shapes (``google.rpc.Status`` with
``ErrorInfo``/``BadRequest``/``RetryInfo`` details, or ``GoogleAdsFailure``). It keeps each
user list's members, a member being the set of its identifiers (``email=<hex>``,
``phone=<hex>``, ``address=<first>|<last>|<CC>|<postal>``): an add merges with any member
sharing an identifier, a remove drops every member sharing one.

Faults, queued with :meth:`GoogleAdsEmulator.fail_next` and consumed one per matching
request: 429 ``RESOURCE_EXHAUSTED`` with a retry delay in Google's form, 5xx, 401, or a delay
(then, with ``status=None``, the request is processed after the client may have given up).
:meth:`GoogleAdsEmulator.reject_identifier` makes every member carrying a digest fail per
record (a ``BadRequest`` on the Data Manager API, a partial failure on the Google Ads API).

In-process::

    with GoogleAdsEmulator() as emu:
        ... options.base_url = emu.data_manager_url (or emu.google_ads_url) ...
        emu.fail_next(2, status=429, retry_delay="1s")
        assert emu.members("222") == {frozenset({"email=..."})}

As a process: ``python -m revseg.sandbox.google_ads_emulator --port N`` prints the port on
its first line and serves ``GET /_health``, ``GET /_members?user_list_id=ID``,
``GET /_requests``, ``POST /_faults`` (``fail_next``'s arguments as JSON) and ``POST /_reset``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
from collections import deque
from typing import Any, Self
from urllib.parse import parse_qs

from revseg.sandbox import google_ads_wire as wire
from revseg.sandbox.google_ads_emulator_dm import data_manager
from revseg.sandbox.google_ads_emulator_http import (
    EmulatorServer,
    Fault,
    Recorded,
    Reply,
    fault_reply,
)
from revseg.sandbox.google_ads_emulator_jobs import JobService
from revseg.sandbox.google_ads_emulator_store import Audience

SERVICE = "revseg-sandbox-google-ads"
ACCESS_TOKEN = "emulator-access-token"
DEVELOPER_TOKEN = "emulator-developer-token"
ADS_VERSION = "v26"
_DM = re.compile(r"/v\d+/audienceMembers:(ingest|remove)")
_ADS = re.compile(
    r"/(v\d+)/customers/([^/]+)/(offlineUserDataJobs[^/]*|offlineUserDataJobs/.+|googleAds:search)"
)


class GoogleAdsEmulator:
    """Start with ``with`` or :meth:`start`; ``url`` is the server root."""

    def __init__(
        self,
        *,
        port: int = 0,
        access_token: str = ACCESS_TOKEN,
        developer_token: str = DEVELOPER_TOKEN,
        manager_customer_id: str | None = None,
        processing_seconds: float = 0.0,
    ) -> None:
        self.access_token = access_token
        self.developer_token = developer_token
        #: when set, requests must act through this manager (login-customer-id / loginAccount)
        self.manager_customer_id = manager_customer_id
        #: how long a run job stays RUNNING before its operations apply
        self.processing_seconds = processing_seconds
        self.lock = threading.RLock()
        self.lists: dict[str, Audience] = {}
        self.poisoned: dict[str, str | None] = {}
        self.recorded: list[Recorded] = []
        self.jobs = JobService(self)
        self._faults: deque[Fault] = deque()
        self._stopping = threading.Event()
        self._server = EmulatorServer(("127.0.0.1", port), self)
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_manager_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def google_ads_url(self) -> str:
        return f"{self.url}/{ADS_VERSION}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- programming and inspecting ------------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        *,
        status: int | None = 429,
        delay: float = 0.0,
        retry_delay: str | None = "1s",
        path: str | None = None,
    ) -> None:
        """Misbehave on the next ``n`` API requests (whose path contains ``path``)."""
        with self.lock:
            self._faults.extend(Fault(status, delay, retry_delay, path) for _ in range(n))

    def reject_identifier(self, digest: str, reason: str | None = None) -> None:
        """Fail every member carrying ``digest`` (any identifier kind), per record."""
        with self.lock:
            self.poisoned[digest] = reason

    def members(self, user_list_id: str) -> set[frozenset[str]]:
        """The list's members, each the set of its identifiers."""
        with self.lock:
            self.jobs.settle()
            audience = self.lists.get(str(user_list_id))
            return audience.members() if audience is not None else set()

    def identifiers(self, user_list_id: str, kind: str = "email") -> set[str]:
        """Every digest of one kind in the list (``email``, ``phone``)."""
        prefix = f"{kind}="
        return {
            k[len(prefix) :] for m in self.members(user_list_id) for k in m if k.startswith(prefix)
        }

    def requests(self, path_contains: str = "") -> list[Recorded]:
        with self.lock:
            return [r for r in self.recorded if path_contains in r.path]

    def reset(self) -> None:
        with self.lock:
            self.lists.clear()
            self.poisoned.clear()
            self.recorded.clear()
            self._faults.clear()
            self.jobs = JobService(self)

    # -- the store -------------------------------------------------------------------------
    def audience(self, user_list_id: str) -> Audience:
        """The list's store (created on first use: Google answers INVALID_USER_LIST_ID for
        lists that do not exist; the emulator holds every numeric ID but 0)."""
        return self.lists.setdefault(user_list_id, Audience())

    # -- requests ----------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        """Answer one request; ``headers`` have lower-case names."""
        path, _, query = target.partition("?")
        if path.startswith("/_"):
            return self._control(method, path, parse_qs(query), raw)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        reply = self._answer(method, path, headers, body)
        with self.lock:
            self.recorded.append(Recorded(method, path, headers, body, reply[0]))
        return reply

    def _answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> Reply:
        with self.lock:
            fault = next((f for f in self._faults if f.path is None or f.path in path), None)
            if fault is not None:
                self._faults.remove(fault)
        versioned = re.match(r"/(v\d+)/", path)
        version = versioned.group(1) if versioned else ADS_VERSION
        ads = _DM.fullmatch(path) is None
        if fault is not None:
            if fault.delay:
                self._stopping.wait(fault.delay)
            if fault.status is not None:
                return fault_reply(fault, ads, version)
        if method != "POST":
            return 404, {}, wire.envelope(404, [])
        if not isinstance(body, dict):
            text = "Invalid JSON payload received. Expected an object."
            return (
                400,
                {},
                wire.envelope(400, [wire.bad_request([{"field": "", "description": text}])]),
            )
        if (match := _DM.fullmatch(path)) is not None:
            return data_manager(self, match.group(1), headers, body)
        if (match := _ADS.fullmatch(path)) is not None:
            return self.jobs.handle(match.group(1), match.group(2), match.group(3), headers, body)
        return 404, {}, wire.envelope(404, [], f"The requested URL {path} was not found.")

    def _control(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Reply:
        if method == "GET" and path == "/_health":
            return 200, {}, {"ok": True, "service": SERVICE, "pid": os.getpid()}
        if method == "GET" and path == "/_members":
            list_id = (query.get("user_list_id") or [""])[0]
            return 200, {}, sorted(sorted(m) for m in self.members(list_id))
        if method == "GET" and path == "/_requests":
            rows = [
                {"method": r.method, "path": r.path, "status": r.status} for r in self.requests()
            ]
            return 200, {}, rows
        if method == "POST" and path == "/_faults":
            try:
                self.fail_next(**json.loads(raw or b"{}"))
            except (ValueError, TypeError) as exc:
                return 400, {}, {"error": f"bad fault: {exc}"}
            return 200, {}, {"ok": True}
        if method == "POST" and path == "/_reset":
            self.reset()
            return 200, {}, {"ok": True}
        return 404, {}, {"error": f"no control endpoint {method} {path}"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Emulate Google's Customer Match APIs locally.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--access-token", default=ACCESS_TOKEN)
    parser.add_argument("--developer-token", default=DEVELOPER_TOKEN)
    parser.add_argument("--manager-customer-id", default=None)
    args = parser.parse_args(argv)
    try:
        emulator = GoogleAdsEmulator(
            port=args.port,
            access_token=args.access_token,
            developer_token=args.developer_token,
            manager_customer_id=args.manager_customer_id,
        )
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


if __name__ == "__main__":
    main()
