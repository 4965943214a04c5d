"""``revseg serve``: the read API, Segment-compatible ingest, health, metrics, and shutdown.

The server runs as a real subprocess (``python -m revseg serve --port 0``) over a small DuckDB
project whose ``carts`` segment is continuous and mirrored to a webhook receiver running in
this process. One server serves the module; tests use distinct customer ids so they do not
depend on each other's order. The unit tests at the end need no server.
"""

from __future__ import annotations

import base64
import gzip
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson
import pytest
from conftest import write_files

from revseg.compile.catalog import ColumnInfo
from revseg.sandbox.webhook import WebhookReceiver

API_TOKEN = "read-token-for-tests"
WRITE_KEY = "write-key-for-tests"

DATA = """
CREATE TABLE customers AS
SELECT i::INTEGER AS customer_id, 'user' || i || '@example.com' AS email,
       CASE WHEN i % 2 = 0 THEN 'US' ELSE 'DE' END AS country,
       (i * 10)::DOUBLE AS lifetime_value, TIMESTAMP '2020-01-01 00:00:00' AS updated_at
FROM range(1, 251) t(i);
CREATE TABLE events (customer_id INTEGER, event_name VARCHAR, ts TIMESTAMP, category VARCHAR,
                     amount DOUBLE, received_at TIMESTAMP);
INSERT INTO events VALUES (1, 'added_to_cart', '2020-01-01 00:00:00', 'shoes', 10, '2020-01-01 00:00:00');
"""

PROJECT: dict[str, Any] = {
    "name": "shop",
    "target": "dev",
    "targets": {"dev": {"type": "duckdb", "path": "wh.duckdb"}},
    "entity": "customers",
    "models": {
        "customers": {"table": "customers", "primary_key": "customer_id", "updated_at": "updated_at"},
        "events": {"table": "events", "entity_key": "customer_id", "timestamp": "ts", "name": "event_name",
                   "loaded_at": "received_at"},
    },
    "serve": {"api_token": "{{ env_var('REVSEG_API_TOKEN') }}", "write_key": "{{ env_var('REVSEG_WRITE_KEY') }}"},
}

SEGMENTS: dict[str, Any] = {
    "segments/carts.yml": {
        "name": "carts", "refresh": "continuous",
        "where": {"event": "added_to_cart", "within": "1h"},
        "traits": {"email": "email"},
        "syncs": [{"destination": "hooks"}],
    },
    "segments/high_value.yml": {
        "name": "high_value", "refresh": "continuous",
        "where": {"column": "lifetime_value", "op": ">=", "value": 500},
    },
    "segments/dutch.yml": {
        "name": "dutch", "refresh": "continuous",
        "where": {"column": "country", "op": "=", "value": "NL"},
    },
}

ENV = {"REVSEG_API_TOKEN": API_TOKEN, "REVSEG_WRITE_KEY": WRITE_KEY}


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    receiver: WebhookReceiver
    log: Path

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {API_TOKEN}", **kwargs.pop("headers", {})}
        return httpx.get(self.url + path, headers=headers, timeout=10, **kwargs)

    def post(self, path: str, body: Any, *, auth: tuple[str, str] | None = (WRITE_KEY, ""),
             **kwargs: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return httpx.post(self.url + path, content=content, auth=auth, timeout=10,
                          headers={"content-type": "application/json", **kwargs.pop("headers", {})}, **kwargs)

    def segments_of(self, entity_id: str) -> list[str]:
        response = self.get(f"/v1/profiles/{entity_id}/segments")
        assert response.status_code == 200, response.text
        return list(response.json()["segments"])


def make_project(root: Path, sync_url: str, config: dict[str, Any] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(str(root / "wh.duckdb"))
    conn.execute(DATA)
    conn.close()
    write_files(root, {
        "revseg.yml": config or PROJECT, **SEGMENTS,
        "destinations/hooks.yml": {"name": "hooks", "type": "webhook", "options": {"url": sync_url}},
    })
    return root


def start(project: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    log = project / "serve.log"
    out = open(log, "wb")  # noqa: SIM115 - the child holds it; closed when the test ends
    process = subprocess.Popen(
        [sys.executable, "-m", "revseg", "serve", "--project-dir", str(project), "--port", "0", *args],
        stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **ENV, **(env or {})},
    )
    out.close()
    return process, log


def wait_listening(process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise AssertionError(f"revseg serve exited {process.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    raise AssertionError(f"revseg serve did not listen within {timeout}s:\n{log.read_text()}")


def eventually(check: Callable[[], bool], timeout: float, interval: float = 0.02) -> float:
    """Seconds until ``check()`` held; AssertionError after ``timeout``."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    return process.returncode


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with WebhookReceiver() as receiver:
        project = make_project(tmp_path_factory.mktemp("serve"), receiver.url)
        process, log = start(project)
        try:
            url = wait_listening(process, log)
            server = Served(process, url, receiver, log)

            def ready() -> bool:
                if server.get("/healthz").status_code != 200:
                    return False
                state = {s["name"]: s for s in server.get("/v1/segments").json()["segments"]}
                return all(state[name]["as_of"] is not None for name in ("carts", "high_value", "dutch"))

            eventually(ready, 60, 0.1)
            yield server
        finally:
            stop(process)




def _basic(user: str, password: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- health and metrics ------------------------------------------------------------------
@pytest.mark.duckdb
@pytest.mark.http
def test_healthz_and_metrics(served: Served) -> None:
    health = httpx.get(served.url + "/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert served.post("/v1/track", {"userId": "3", "event": "page_viewed"}).status_code == 200
    metrics = httpx.get(served.url + "/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert 'revseg_segment_members{segment="high_value"} 201' in text
    assert re.search(r"^revseg_scheduler_runs_total [1-9]\d*$", text, re.M)
    assert re.search(r'^revseg_ingested_events_total\{type="track"\} [1-9]\d*$', text, re.M)
    assert re.search(r'^revseg_http_requests_total\{method="POST",route="/v1/track",status="200"\} [1-9]', text, re.M)
    assert re.search(r"^revseg_ingest_commit_seconds_count [1-9]\d*$", text, re.M)
    assert re.search(r'^revseg_ingest_commit_seconds_bucket\{le="\+Inf"\} [1-9]\d*$', text, re.M)
    assert "# TYPE revseg_ingest_commit_seconds histogram" in text
    # every sample line is "name{labels} value"
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r'[a-z_]+(\{[^}]*\})? [0-9.e+-]+|[a-z_]+(\{[^}]*\})? \+Inf', line), line


# -- read API ----------------------------------------------------------------------------
@pytest.mark.duckdb
@pytest.mark.http
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_TOKEN}"}])
def test_read_api_requires_the_token(served: Served, headers: dict[str, str]) -> None:
    for path in ("/v1/segments", "/v1/segments/carts/members", "/v1/profiles/1/segments"):
        response = httpx.get(served.url + path, headers=headers)
        assert response.status_code == 401
        assert "API token" in response.json()["error"]
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.duckdb
@pytest.mark.http
def test_list_segments(served: Served) -> None:
    response = served.get("/v1/segments")
    assert response.status_code == 200
    segments = {s["name"]: s for s in response.json()["segments"]}
    assert set(segments) == {"carts", "dutch", "high_value"}
    assert segments["high_value"]["members"] == 201
    assert datetime.fromisoformat(segments["high_value"]["as_of"].replace("Z", "+00:00"))
    assert 0 <= segments["high_value"]["freshness_seconds"] < 10


@pytest.mark.duckdb
@pytest.mark.http
def test_members_paginate_by_keyset(served: Served) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "60", **({"cursor": cursor} if cursor else {})}
        page = served.get("/v1/segments/high_value/members", params=params).json()
        assert len(page["members"]) <= 60
        seen += page["members"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4
    assert seen == sorted(str(i) for i in range(50, 251))  # ids are text: keyset in text order
    default = served.get("/v1/segments/high_value/members").json()
    assert len(default["members"]) == 100 and default["next_cursor"]
    assert len(served.get("/v1/segments/high_value/members", params={"limit": "50000"}).json()["members"]) == 201


@pytest.mark.duckdb
@pytest.mark.http
@pytest.mark.parametrize(("path", "status", "words"), [
    ("/v1/segments/nope/members", 404, "unknown segment 'nope'"),
    ("/v1/segments/cartz/members", 404, "did you mean"),
    ("/v1/segments/carts/members?limit=0", 400, "limit must be an integer from 1 to 10000"),
    ("/v1/segments/carts/members?limit=ten", 400, "limit must be an integer"),
    ("/v1/segments/carts/members?cursor=%%%", 400, "cursor"),
    ("/v1/nothing", 404, "no route"),
])
def test_read_errors(served: Served, path: str, status: int, words: str) -> None:
    response = served.get(path)
    assert response.status_code == status
    assert words in response.json()["error"]


@pytest.mark.duckdb
@pytest.mark.http
def test_profile_of_unknown_entity_is_empty(served: Served) -> None:
    assert served.get("/v1/profiles/no%2Fsuch/segments").json() == {"id": "no/such", "segments": []}
    assert served.segments_of("120") == ["high_value"]


@pytest.mark.duckdb
@pytest.mark.http
def test_wrong_method(served: Served) -> None:
    response = httpx.post(served.url + "/v1/segments", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert response.status_code == 405 and response.headers["allow"] == "GET"


# -- ingest ------------------------------------------------------------------------------
@pytest.mark.duckdb
@pytest.mark.http
@pytest.mark.parametrize("auth_header", [{}, _basic("wrong"), _basic(API_TOKEN), {"Authorization": f"Bearer {WRITE_KEY}"}])
def test_ingest_requires_the_write_key(served: Served, auth_header: dict[str, str]) -> None:
    for path in ("/v1/track", "/v1/identify", "/v1/batch"):
        response = served.post(path, {"userId": "11", "event": "added_to_cart"}, auth=None, headers=auth_header)
        assert response.status_code == 401
        assert response.json()["success"] is False
        assert "write key" in response.json()["error"]
    time.sleep(0.3)
    assert "carts" not in served.segments_of("11")


@pytest.mark.duckdb
@pytest.mark.http
@pytest.mark.parametrize(("path", "body", "words"), [
    ("/v1/track", {"anonymousId": "a-1", "event": "added_to_cart"}, "userId is required (an anonymousId alone"),
    ("/v1/track", {"event": "added_to_cart"}, "userId is required"),
    ("/v1/track", {"userId": "c_12", "event": "added_to_cart"},
     "userId \"c_12\" does not convert to the entity key customer_id (INTEGER)"),
    ("/v1/track", {"userId": "99999999999", "event": "added_to_cart"}, "out of range for INTEGER"),
    ("/v1/track", {"userId": "12", "event": "added_to_cart", "timestamp": "yesterday"},
     "timestamp: 'yesterday' is not an ISO-8601 timestamp"),
    ("/v1/track", {"userId": "12", "event": "added_to_cart", "timestamp": 1700000000},
     "timestamp must be an ISO-8601 string"),
    ("/v1/track", {"userId": "12"}, "event is required"),
    ("/v1/track", {"userId": "12", "event": "added_to_cart", "properties": [1]}, "properties must be a JSON object"),
    ("/v1/track", {"userId": "12", "event": "added_to_cart", "properties": {"amount": "lots"}},
     "properties.amount: 'lots' is not a number"),
    ("/v1/track", b"{not json", "the body is not valid JSON"),
    ("/v1/track", [1, 2], "the body must be a JSON object"),
    ("/v1/identify", {"userId": "12", "traits": {"lifetime_value": "x"}}, "traits.lifetime_value"),
    ("/v1/batch", {"batch": {"userId": "12"}}, "'batch' must be a list"),
    ("/v1/batch", {"batch": [{"type": "track", "userId": "12", "event": "added_to_cart"},
                             {"type": "pageview", "userId": "12"}]}, "batch[1]: type is 'pageview', which is not supported"),
    ("/v1/batch", {"batch": [{"type": "track", "userId": "12", "event": "added_to_cart"},
                             {"type": "track", "event": "added_to_cart"}]}, "batch[1]: userId is required"),
    ("/v1/track", {"userId": "12", "event": "added_to_cart", "properties": {"pad": "x" * 33_000}},
     "more than the 32 KB allowed per call"),
    ("/v1/batch", {"batch": [{"type": "track", "userId": "12", "event": "added_to_cart",
                              "properties": {"pad": "x" * 20_000}}] * 30}, "more than the 500 KB allowed per batch"),
    ("/v1/batch", {"batch": [{"type": "track", "userId": "12", "event": "added_to_cart",
                              "properties": {"pad": "x" * 33_000}}]}, "batch[0]: the call is"),
])
def test_malformed_calls_are_refused_and_write_nothing(served: Served, path: str, body: Any, words: str) -> None:
    response = served.post(path, body)
    assert response.status_code == 400, response.text
    document = response.json()
    assert document["success"] is False
    assert words in document["error"]
    time.sleep(0.2)
    assert "carts" not in served.segments_of("12")  # the valid first call of a bad batch was not written


@pytest.mark.duckdb
@pytest.mark.http
def test_official_client_track_reaches_api_and_destination_within_a_second(served: Served) -> None:
    from segment.analytics.client import Client

    client = Client(write_key=WRITE_KEY, host=served.url, max_retries=0)
    try:
        client.track(user_id="7", event="added_to_cart", properties={"category": "hats", "amount": 19.5})
        client.flush()  # default mode: a background thread uploads the queue as one /v1/batch call
        flushed = time.monotonic()
        eventually(lambda: "7" in served.receiver.audience, 5)
        eventually(lambda: "carts" in served.segments_of("7"), 5)
        members = served.get("/v1/segments/carts/members", params={"limit": "10000"}).json()["members"]
        assert "7" in members
        assert time.monotonic() - flushed < 1.0
        assert served.receiver.audience["7"] == {"email": "user7@example.com"}
    finally:
        client.shutdown()


@pytest.mark.duckdb
@pytest.mark.http
def test_official_client_gzip_and_sync_mode(served: Served) -> None:
    from segment.analytics.client import Client

    client = Client(write_key=WRITE_KEY, host=served.url, sync_mode=True, gzip=True, max_retries=0)
    client.track(user_id=8, event="added_to_cart", timestamp=datetime.now())
    eventually(lambda: "8" in served.receiver.audience, 5)


@pytest.mark.duckdb
@pytest.mark.http
def test_track_without_timestamp_uses_receipt_time(served: Served) -> None:
    assert served.post("/v1/track", {"userId": 9, "event": "added_to_cart"}).json() == {"success": True}
    eventually(lambda: "carts" in served.segments_of("9"), 5)


@pytest.mark.duckdb
@pytest.mark.http
def test_identify_creates_then_updates_the_entity(served: Served) -> None:
    response = served.post("/v1/identify", {"userId": "900", "traits": {
        "email": "new@example.com", "country": "NL", "unknown_trait": 1, "customer_id": 5}})
    assert response.json() == {"success": True}
    eventually(lambda: served.segments_of("900") == ["dutch"], 5)
    assert served.post("/v1/identify", {"userId": 900, "traits": {"country": "FR"}}).status_code == 200
    eventually(lambda: served.segments_of("900") == [], 5)
    # an existing customer: updated in place (updated_at moves, so incremental runs see it)
    assert served.post("/v1/identify", {"userId": "21", "traits": {"Country": "NL"}}).status_code == 200
    eventually(lambda: served.segments_of("21") == ["dutch"], 5)


@pytest.mark.duckdb
@pytest.mark.http
def test_batch_of_track_and_identify(served: Served) -> None:
    """page, screen, group and alias calls, which the official clients batch with the rest,
    are acknowledged without being written: the track and identify calls beside them land."""
    response = served.post("/v1/batch", {"batch": [
        {"type": "page", "userId": "31", "name": "Home"},
        {"type": "alias", "userId": "31", "previousId": "anon-1"},
        {"type": "identify", "userId": "31", "traits": {"country": "NL"}},
        {"type": "track", "userId": "31", "event": "added_to_cart", "timestamp": "2026-01-01T00:00:00Z"},
        {"type": "track", "userId": "33", "event": "added_to_cart"},
    ], "sentAt": "2026-01-01T00:00:00Z"})
    assert response.json() == {"success": True}
    eventually(lambda: served.segments_of("31") == ["dutch"] and "carts" in served.segments_of("33"), 5)
    assert "carts" not in served.segments_of("31")  # its event is far outside the 1h window


@pytest.mark.duckdb
@pytest.mark.http
def test_gzip_body(served: Served) -> None:
    body = gzip.compress(orjson.dumps({"userId": "41", "event": "added_to_cart"}))
    response = served.post("/v1/track", body, headers={"content-encoding": "gzip"})
    assert response.json() == {"success": True}
    eventually(lambda: "carts" in served.segments_of("41"), 5)


# -- lifecycle ---------------------------------------------------------------------------
@pytest.mark.duckdb
@pytest.mark.http
def test_sigterm_stops_cleanly_with_an_idle_keepalive_connection(tmp_path: Path) -> None:
    with WebhookReceiver() as receiver:
        project = make_project(tmp_path, receiver.url)
        process, log = start(project)
        try:
            url = wait_listening(process, log)
            with httpx.Client(base_url=url) as client:  # keeps its connection open
                eventually(lambda: client.get("/healthz").status_code == 200, 60, 0.1)
                process.send_signal(signal.SIGTERM)
                assert process.wait(30) == 0
        finally:
            stop(process)
    assert "stopped cleanly" in log.read_text()


@pytest.mark.duckdb
@pytest.mark.http
def test_non_loopback_bind_without_token_is_refused(tmp_path: Path) -> None:
    config = {**PROJECT, "serve": {"write_key": "k"}}
    project = make_project(tmp_path, "http://127.0.0.1:9/hooks", config)
    process, log = start(project, "--host", "0.0.0.0")
    assert process.wait(60) == 2
    text = log.read_text()
    assert "refusing to serve on 0.0.0.0" in text and "serve.api_token" in text


@pytest.mark.duckdb
@pytest.mark.http
def test_loopback_without_credentials_is_open(tmp_path: Path) -> None:
    config = {k: v for k, v in PROJECT.items() if k != "serve"}
    with WebhookReceiver() as receiver:
        project = make_project(tmp_path, receiver.url, config)
        process, log = start(project)
        try:
            url = wait_listening(process, log)
            eventually(lambda: httpx.get(url + "/healthz").status_code == 200, 60, 0.1)
            assert httpx.get(url + "/v1/segments").status_code == 200
            assert httpx.post(url + "/v1/track", json={"userId": "5", "event": "added_to_cart"}).status_code == 200
            eventually(lambda: "5" in receiver.audience, 10)
        finally:
            assert stop(process) == 0


# -- units: no server --------------------------------------------------------------------
def _info(name: str, type_name: str) -> ColumnInfo:
    from revseg.compile.catalog import classify

    return ColumnInfo(name, classify(type_name), type_name)


@pytest.mark.parametrize(("value", "type_name", "expected"), [
    ("42", "INTEGER", 42), (42.0, "BIGINT", 42), ("c_1", "VARCHAR", "c_1"), (7, "VARCHAR", "7"),
    ("12.50", "DOUBLE", 12.5), ("12.50", "DECIMAL(10,2)", "12.50"), (True, "BOOLEAN", True),
    ("false", "BOOLEAN", False), ("2026-11-28T17:00:00+01:00", "TIMESTAMP", datetime(2026, 11, 28, 16)),
    ("2026-11-28T17:00:00.123Z", "TIMESTAMP WITH TIME ZONE", datetime(2026, 11, 28, 17, 0, 0, 123000)),
    ({"a": 1}, "JSON", '{"a":1}'), (None, "INTEGER", None),
    ("0b8f8c1e-4a7e-4d55-9c3a-2f1b8f0e8a11", "UUID", "0b8f8c1e-4a7e-4d55-9c3a-2f1b8f0e8a11"),
])
def test_convert(value: Any, type_name: str, expected: Any) -> None:
    from revseg.serve.convert import convert

    assert convert(value, _info("c", type_name)) == expected


@pytest.mark.parametrize(("value", "type_name", "words"), [
    ("c_1", "INTEGER", "is not an integer"), (1.5, "INTEGER", "is not an integer"),
    (300, "TINYINT", "out of range for TINYINT"), (-1, "UINTEGER", "out of range"),
    (True, "DOUBLE", "is not a number"), ("nan", "DOUBLE", "not a finite number"),
    ("yes", "BOOLEAN", "is not a boolean"), (1700000000, "TIMESTAMP", "ISO-8601"),
    ("nope", "UUID", "is not a UUID"),
])
def test_convert_refuses(value: Any, type_name: str, words: str) -> None:
    from revseg.serve.convert import ConversionError, convert

    with pytest.raises(ConversionError, match=re.escape(words)):
        convert(value, _info("c", type_name))


def test_ingest_is_501_where_the_adapter_refuses(tmp_path: Path) -> None:
    from revseg.compile.catalog import Catalog
    from revseg.project.loader import load_project
    from revseg.serve.ingest import Ingest, Unavailable

    make_project(tmp_path, "http://127.0.0.1:9/hooks")
    project = load_project(tmp_path, environ=ENV)
    catalog = Catalog()
    catalog.add("customers", [_info("customer_id", "INTEGER"), _info("updated_at", "TIMESTAMP")])
    catalog.add("events", [_info(n, t) for n, t in (("customer_id", "INTEGER"), ("event_name", "VARCHAR"),
                                                    ("ts", "TIMESTAMP"), ("received_at", "TIMESTAMP"))])
    with pytest.raises(Unavailable, match="cannot write to this snowflake target"):
        Ingest(project, catalog, "snowflake", writable=False).parse(
            "track", b'{"userId": "1", "event": "e"}', datetime(2026, 1, 1))
    calls = Ingest(project, catalog, "duckdb", writable=True).parse(
        "track", b'{"userId": "1", "event": "e", "properties": {"ts": "x", "nope": 1}}', datetime(2026, 1, 1))
    assert calls[0].row == {"customer_id": 1, "event_name": "e", "ts": datetime(2026, 1, 1),  # type: ignore[union-attr]
                            "received_at": datetime(2026, 1, 1)}


def test_auth_helpers() -> None:
    from revseg.serve.auth import basic_ok, bearer_ok, is_loopback

    assert bearer_ok("Bearer t0k", "t0k") and not bearer_ok("Bearer t0", "t0k") and not bearer_ok(None, "t0k")
    assert bearer_ok(None, None)
    header = _basic("wk")["Authorization"]
    assert basic_ok(header, "wk") and not basic_ok(header, "wk2") and not basic_ok("Basic !!!", "wk")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")


def test_metrics_text_format() -> None:
    from revseg.serve.metrics import Metrics

    metrics = Metrics()
    metrics.requests.inc("GET", '/v1/"x"', "200")
    metrics.commit_latency.observe(0.003)
    text = metrics.render({"a": 3}, {"a": 0.5}, 7, True)
    assert 'revseg_http_requests_total{method="GET",route="/v1/\\"x\\"",status="200"} 1' in text
    assert 'revseg_ingest_commit_seconds_bucket{le="0.0025"} 0' in text
    assert 'revseg_ingest_commit_seconds_bucket{le="0.005"} 1' in text
    assert "revseg_segment_members{segment=\"a\"} 3" in text and "revseg_scheduler_runs_total 7" in text
    assert text.endswith("\n")


@pytest.mark.duckdb
def test_a_run_stopped_between_batches_leaves_the_rest_to_the_next_run(tmp_path: Path) -> None:
    """SIGTERM stops ``revseg run`` after the batch in flight; the next run (a new process)
    must deliver the rest even though no data changed, not find the segment idle."""
    from datetime import timedelta

    from revseg.runner import Runner
    from revseg.runner.sync import SyncOptions

    with WebhookReceiver() as receiver:
        make_project(tmp_path, receiver.url)
        write_files(tmp_path, {
            "destinations/hooks.yml": {"name": "hooks", "type": "webhook", "batch_size": 50,
                                       "options": {"url": receiver.url}},
            "segments/high_value.yml": {**SEGMENTS["segments/high_value.yml"], "syncs": [{"destination": "hooks"}]},
        })
        as_of = datetime(2026, 11, 28, 17)
        with Runner(tmp_path, environ=ENV).session() as session:
            answers = iter([False])  # the segment starts; then SIGTERM arrives during batch 1
            report = session.sync(["high_value"], None, SyncOptions(as_of), should_stop=lambda: next(answers, True))
        assert len(receiver.audience) == 50
        assert report.syncs[0].status == "partial"  # not everything was delivered
        with Runner(tmp_path, environ=ENV).session() as session:
            session.sync(["high_value"], None, SyncOptions(as_of + timedelta(seconds=1)))
        assert len(receiver.audience) == 201


@pytest.mark.duckdb
def test_a_stop_signalled_while_a_batch_is_in_flight_starts_no_other_batch(tmp_path: Path) -> None:
    """SIGTERM finishes the batch in flight: it must not start the next one, even when it had
    already checked for a stop before the signal came."""
    import threading

    from revseg.runner import Runner
    from revseg.runner.sync import SyncOptions

    checked, signalled = threading.Event(), threading.Event()
    calls: list[bool] = []

    def should_stop() -> bool:
        calls.append(signalled.is_set())
        if len(calls) >= 2:  # past the segment's start: a batch is in flight
            checked.set()
        return signalled.is_set()

    def on_delivery(_delivery: Any) -> None:  # the signal arrives while batch 1 is in flight
        checked.wait(10)
        signalled.set()

    with WebhookReceiver(on_delivery=on_delivery) as receiver:
        make_project(tmp_path, receiver.url)
        write_files(tmp_path, {
            "destinations/hooks.yml": {"name": "hooks", "type": "webhook", "batch_size": 50,
                                       "options": {"url": receiver.url}},
            "segments/high_value.yml": {**SEGMENTS["segments/high_value.yml"], "syncs": [{"destination": "hooks"}]},
        })
        with Runner(tmp_path, environ=ENV).session() as session:
            report = session.sync(["high_value"], None, SyncOptions(datetime(2026, 11, 28, 17)),
                                  should_stop=should_stop)
        assert len(receiver.deliveries) == 1 and len(receiver.audience) == 50
        assert (report.syncs[0].added, report.syncs[0].status) == (50, "partial")
        with duckdb.connect(str(tmp_path / "wh.duckdb")) as conn:  # the batch not sent is not left in flight
            assert conn.execute("SELECT count(*) FROM revseg.inflight").fetchone() == (0,)


@pytest.mark.duckdb
def test_run_refreshes_a_cron_segment_at_its_times_not_at_start_up(tmp_path: Path) -> None:
    """``revseg run``: a duration runs at once, a cron segment first at its next matching minute."""
    import queue
    import threading

    from revseg.runner import Runner
    from revseg.runner.scheduler import Scheduler

    make_project(tmp_path, "http://127.0.0.1:9/hooks")
    write_files(tmp_path, {
        "segments/carts.yml": {**SEGMENTS["segments/carts.yml"], "refresh": "manual"},
        "segments/high_value.yml": {**SEGMENTS["segments/high_value.yml"], "refresh": "1h"},
        "segments/dutch.yml": {**SEGMENTS["segments/dutch.yml"], "refresh": "0 * * * *"},
    })
    now = [datetime(2026, 11, 28, 10, 0, 30)]
    reports: queue.Queue[set[str]] = queue.Queue()
    scheduler = Scheduler(Runner(tmp_path, environ=ENV), clock=lambda: now[0],
                          on_report=lambda report: reports.put({s.name for s in report.segments}))
    thread = threading.Thread(target=scheduler.run)
    thread.start()
    try:
        assert reports.get(timeout=30) == {"high_value"}
        now[0] = datetime(2026, 11, 28, 11, 0, 31)  # the hour struck; an hour since the first run
        scheduler.nudge()
        assert reports.get(timeout=30) == {"dutch", "high_value"}
    finally:
        scheduler.stop()
        thread.join(30)


PG_DATA = """
CREATE TABLE accounts (account_id UUID PRIMARY KEY, email TEXT, ltv NUMERIC(10, 2), tags JSONB,
                       updated_at TIMESTAMPTZ);
CREATE TABLE events (account_id UUID, event_name TEXT, ts TIMESTAMPTZ, wall TIMESTAMP, amount NUMERIC(10, 2),
                     props JSONB);
"""
ACCOUNT = "6f1c8f9e-0000-4000-8000-000000000001"


@pytest.mark.postgres
@pytest.mark.http
def test_ingest_writes_postgres_tables_in_their_types(tmp_path: Path) -> None:
    """SPEC 5.1 ingest on a PostgreSQL target (it answered 501): a UUID key given in upper case,
    an offset timestamp into TIMESTAMPTZ (the instant) and TIMESTAMP (its UTC wall time), NUMERIC
    and JSONB properties; a continuous segment sees the rows at once."""
    import uuid

    import psycopg
    from psycopg import sql

    schema = f"revseg_ingest_{uuid.uuid4().hex[:12]}"
    conninfo = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5"
    with psycopg.connect(conninfo, autocommit=True) as pg:
        pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        process = None
        try:
            pg.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            pg.execute(PG_DATA)
            config = {"name": "shop", "target": "pg", "state_schema": f"{schema}_state", "entity": "accounts",
                      "targets": {"pg": {"type": "postgres", "host": "127.0.0.1", "port": 5432, "user": "postgres",
                                         "database": "test", "schema": schema}},
                      "models": {"accounts": {"table": "accounts", "primary_key": "account_id",
                                              "updated_at": "updated_at"},
                                 "events": {"table": "events", "entity_key": "account_id", "timestamp": "ts",
                                            "name": "event_name"}},
                      "serve": PROJECT["serve"]}
            write_files(tmp_path, {"revseg.yml": config, "segments/buyers.yml": {
                "name": "buyers", "refresh": "continuous", "where": {"event": "bought", "within": "1h"}}})
            process, log = start(tmp_path, env={"PGTZ": "Asia/Tokyo"})
            server = Served(process, wait_listening(process, log), None, log)  # type: ignore[arg-type]
            eventually(lambda: server.get("/healthz").status_code == 200, 60, 0.1)
            now = datetime.now(UTC).replace(microsecond=0)
            moment = now.astimezone(timezone(timedelta(hours=-5))).isoformat()
            response = server.post("/v1/batch", {"batch": [
                {"type": "identify", "userId": ACCOUNT.upper(),
                 "traits": {"email": "a@example.com", "ltv": "12.50", "tags": ["vip"]}},
                {"type": "track", "userId": ACCOUNT, "event": "bought", "timestamp": moment,
                 "properties": {"wall": moment, "amount": 9.99, "props": {"sku": [1, 2]}}},
            ]})
            assert response.status_code == 200, response.text
            assert server.post("/v1/track", {"userId": "not-a-uuid", "event": "bought"}).status_code == 400
            rows = pg.execute("SELECT account_id, ts, wall, amount, props FROM events").fetchall()
            assert rows == [(uuid.UUID(ACCOUNT), now, now.replace(tzinfo=None), Decimal("9.99"), {"sku": [1, 2]})]
            assert pg.execute("SELECT account_id::text, email, ltv, tags FROM accounts").fetchall() == [
                (ACCOUNT, "a@example.com", Decimal("12.50"), ["vip"])]
            eventually(lambda: server.segments_of(ACCOUNT) == ["buyers"], 30, 0.1)
        finally:
            if process is not None:
                stop(process)
            for name in (schema, f"{schema}_state"):
                pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
