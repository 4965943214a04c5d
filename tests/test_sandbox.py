"""``revseg sandbox``: the local webhook receiver, detached or in the foreground, and the
receiver's own rules (any path, unsigned requests without a secret, de-duplication)."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from syncproject import REVSEG, T0, cli_env, members, seed, shop_files, sync, webhook, write_files

from revseg.sandbox import server
from revseg.sandbox.webhook import WebhookReceiver

pytestmark = pytest.mark.http

SECRET = "whsec_" + base64.b64encode(b"sandbox-test-secret-32-bytes-ok!").decode()
BODY = {"operations": [{"op": "add", "id": "c_1", "traits": {"email": "a@example.com"}}]}


def sandbox(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*REVSEG, "sandbox", *args, "--project-dir", str(project)], capture_output=True,
                          text=True, timeout=60, env=env or cli_env(), check=False)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    server.stop(tmp_path / ".revseg")  # never leave a detached receiver behind


def info(project: Path) -> dict[str, object]:
    return dict(json.loads((project / ".revseg" / "sandbox.json").read_text()))


# -- the receiver ----------------------------------------------------------------------
def test_without_secret_unsigned_requests_on_any_path_are_applied_once() -> None:
    with WebhookReceiver() as receiver:
        base = f"http://127.0.0.1:{receiver.port}"
        assert httpx.post(f"{base}/anything/deeper?x=1", json=BODY).status_code == 200
        headers = {"webhook-id": "r1_1"}
        removal = {"operations": [{"op": "remove", "id": "c_1"}]}
        assert httpx.post(f"{base}/hooks", json=removal, headers=headers).json() == {"ok": True, "duplicate": False}
        httpx.post(f"{base}/hooks", json=BODY, headers=headers)  # same webhook-id: acknowledged, not applied
        assert receiver.audience == {} and [d.duplicate for d in receiver.deliveries] == [False, False, True]
        assert httpx.get(f"{base}/_health").json()["deliveries"] == 3
        assert httpx.post(f"{base}/_reset").status_code == 200 and httpx.get(f"{base}/_deliveries").json() == []


def test_with_secret_unsigned_requests_get_401() -> None:
    with WebhookReceiver(SECRET) as receiver:
        response = httpx.post(receiver.url, json=BODY, headers={"webhook-id": "r1_1", "webhook-timestamp": str(int(time.time()))})
        assert response.status_code == 401 and receiver.audience == {}
    with pytest.raises(ValueError, match="whsec_"):
        WebhookReceiver("not-a-secret")


# -- detached ------------------------------------------------------------------------
def test_detached_sandbox_receives_a_sync_and_stops(project: Path) -> None:
    done = sandbox(project, "--detach", "--port", "0")
    assert done.returncode == 0, done.stderr
    assert "webhook sandbox started: http://127.0.0.1:" in done.stdout
    state = info(project)
    pid, port = int(str(state["pid"])), int(str(state["port"]))
    assert (project / ".revseg" / "sandbox.pid").read_text().strip() == str(pid)
    assert httpx.get(f"http://127.0.0.1:{port}/_health").json()["pid"] == pid

    again = sandbox(project, "--detach", "--port", "0")  # running and answering: just report it
    assert again.returncode == 0 and "already running" in again.stdout and f"pid {pid}" in again.stdout
    status = sandbox(project, "--status")
    assert status.returncode == 0 and f"http://127.0.0.1:{port}/hooks" in status.stdout

    # a project syncs to it like to any webhook endpoint
    write_files(project, shop_files(syncs={"buyers": [{"destination": "sandbox"}]},
                                    destinations={"sandbox": webhook(f"http://127.0.0.1:{port}/hooks")}))
    seed(project / "warehouse.duckdb", 50)
    sync(project, T0, "--select", "buyers")
    assert httpx.get(f"http://127.0.0.1:{port}/_audience").json() == members(project, "buyers", T0)
    assert "200 webhook-id=r" in (project / ".revseg" / "sandbox.log").read_text()

    stopped = sandbox(project, "--stop")
    assert stopped.returncode == 0 and f"pid {pid}" in stopped.stdout
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (project / ".revseg" / "sandbox.pid").exists()
    status = sandbox(project, "--status")
    assert status.returncode == 1 and "no sandbox is running" in status.stdout
    assert sandbox(project, "--stop").stdout.strip() == "no sandbox is running"


def test_secret_from_the_environment_is_verified_and_never_printed(project: Path) -> None:
    env = {**cli_env(), "REVSEG_WEBHOOK_SECRET": SECRET}
    done = sandbox(project, "--detach", "--port", "0", env=env)
    assert done.returncode == 0 and SECRET not in done.stdout + done.stderr
    port = int(str(info(project)["port"]))
    assert httpx.get(f"http://127.0.0.1:{port}/_health").json()["signed"] is True
    assert httpx.post(f"http://127.0.0.1:{port}/hooks", json=BODY).status_code == 401
    assert SECRET not in json.dumps(info(project))
    bad = sandbox(project, "--secret", "whsec_!!", "--port", "0")
    assert bad.returncode == 1 and "whsec_" in bad.stderr and "!!" not in bad.stderr


def test_port_in_use_and_conflicting_flags_are_clear_errors(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = sandbox(project, "--detach", "--port", str(port))
        assert done.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
        done = sandbox(project, "--port", str(port))
        assert done.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert not (project / ".revseg" / "sandbox.pid").exists()
    done = sandbox(project, "--detach", "--stop")
    assert done.returncode == 2 and "one of --detach, --stop and --status" in done.stderr


def test_detached_sandbox_serves_every_api_emulator_and_stops_them(project: Path) -> None:
    from revseg.sandbox.catalog import APIS

    done = sandbox(project, "--detach", "--port", "0")
    assert done.returncode == 0, done.stderr
    apis = {str(a["name"]): a for a in info(project)["apis"]}  # type: ignore[attr-defined]
    assert list(apis) == [api.name for api in APIS]
    ports = {int(a["port"]) for a in apis.values()}
    assert len(ports) == len(APIS) and int(str(info(project)["port"])) not in ports
    status = sandbox(project, "--status")
    for name, api in apis.items():
        url = f"http://127.0.0.1:{api['port']}"
        assert api["options"]["base_url"] == api["url"] and str(api["url"]).startswith(url), name
        assert httpx.get(f"{url}/_health").json()["ok"] is True, name
        assert f"{api['type']}: {api['url']}" in status.stdout and json.dumps(api["options"]) in status.stdout
    assert f"{apis['meta']['url']}" in done.stdout  # the start message lists them too
    assert sandbox(project, "--stop").returncode == 0
    for api in apis.values():
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{api['port']}/_health")


def _port_with_a_free_predecessor() -> tuple[socket.socket, int]:
    """A listening socket on port P where P - 1 (the webhook's) is free: the meta emulator's
    port (P) is then the only one taken. Retries ephemeral ports instead of skipping."""
    for _ in range(50):
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port - 1))
                return taken, port
            except OSError:
                taken.close()
    raise AssertionError("no ephemeral port with a free predecessor in 50 tries")


def test_an_api_port_in_use_is_a_clear_error_naming_the_api(project: Path) -> None:
    taken, port = _port_with_a_free_predecessor()
    with taken:
        for detach in (["--detach"], []):
            done = sandbox(project, *detach, "--port", str(port - 1))
            assert done.returncode == 1, done.stdout
            assert f"cannot listen on 127.0.0.1:{port} for the meta API emulator" in done.stderr
            assert not (project / ".revseg" / "sandbox.pid").exists()
        with socket.socket() as webhook_port:  # and the webhook's port was released
            webhook_port.bind(("127.0.0.1", port - 1))


# -- foreground ----------------------------------------------------------------------
def test_foreground_sandbox_logs_requests_and_stops_on_ctrl_c_or_stop(project: Path) -> None:
    for stop_with in ("SIGINT", "--stop"):
        process = subprocess.Popen([*REVSEG, "sandbox", "--port", "0", "--project-dir", str(project)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("webhook sandbox listening on http://127.0.0.1:"), first
        url = first.split()[4]
        assert int(str(info(project)["pid"])) == process.pid  # --status and --stop can find it
        httpx.post(url, json=BODY, headers={"webhook-id": "r9_1"})
        if stop_with == "SIGINT":
            process.send_signal(signal.SIGINT)
        else:
            assert sandbox(project, "--stop").returncode == 0
        out, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert "200 webhook-id=r9_1 attempt=1 add=1" in out
        assert not (project / ".revseg" / "sandbox.json").exists()
