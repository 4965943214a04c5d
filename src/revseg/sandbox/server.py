"""``revseg sandbox``: run the local webhook receiver and the API emulators, in the
foreground or in the background.

A project can then sync to a ``webhook`` destination whose ``url`` is
``http://127.0.0.1:8471/hooks`` (any path is accepted) without an account anywhere, and
look at what arrived with ``GET /_audience`` and ``GET /_deliveries``. The same process
serves an emulator of every API in :data:`revseg.sandbox.catalog.APIS` (Meta, LinkedIn,
Google Ads, Iterable, Mailchimp, SendGrid, Braze, Klaviyo, Twilio), each on its own port
(the webhook's plus 1 to 9: 8472 to 8480 by default; all free ports with ``--port 0``),
one thread each; the destination ``options`` that reach each one are in ``sandbox.json``
and printed by ``revseg sandbox --status``.

The servers bind 127.0.0.1 only. Their files live in the project's ``.revseg/`` directory:

==============  ==========================================================================
sandbox.pid     the pid of the running sandbox (foreground or detached)
sandbox.json    pid, port and url, and each API's port, url and options, for ``--status``
                and ``--stop``
sandbox.log     the detached sandbox's output: one line per webhook request
==============  ==========================================================================

A detached receiver runs in its own session (Ctrl-C in the terminal does not reach it) and
is stopped with :func:`stop`. Before signalling a pid from ``sandbox.pid``, :func:`stop`
checks that the process is the sandbox (it answers ``/_health`` with that pid, or its
command line names the module), so a stale file never kills an unrelated process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from revseg.errors import RevsegError
from revseg.sandbox.catalog import APIS, Api, Server, describe
from revseg.sandbox.webhook import SECRET_ENV, SERVICE, Delivery, WebhookReceiver, secret_key

DEFAULT_PORT = 8471
HOST = "127.0.0.1"
PID_FILE = "sandbox.pid"
INFO_FILE = "sandbox.json"
LOG_FILE = "sandbox.log"
MODULE = "revseg.sandbox.server"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0


class SandboxError(RevsegError):
    """The sandbox could not be started or stopped (exit 1)."""


@dataclass(frozen=True)
class SandboxInfo:
    """Where a sandbox listens, and whether it is running."""

    port: int
    pid: int | None
    running: bool
    detached: bool = False
    #: ``start(detach=True)`` found one running and reported it instead of starting another
    already_running: bool = False
    signed: bool = False
    log_file: Path | None = None
    #: the emulated APIs: ``{"name", "type", "port", "url", "options"}`` each
    apis: tuple[dict[str, Any], ...] = ()

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """The webhook URL to put in a destination's ``options.url``."""
        return f"{self.base_url}/hooks"


def start(
    port: int = DEFAULT_PORT,
    *,
    detach: bool = False,
    state_dir: Path,
    secret: str | None = None,
    on_ready: Callable[[SandboxInfo], None] | None = None,
    on_request: Callable[[Delivery], None] | None = None,
) -> SandboxInfo:
    """Run the receiver on ``127.0.0.1:port``.

    In the foreground, call ``on_ready`` once it listens, then serve (``on_request`` sees
    every request) until Ctrl-C or SIGTERM, and return. Detached, spawn it in a new
    session, wait until the port answers and return; when a sandbox of this project is
    already running and answering, return it (``already_running``) without starting another.
    """
    if secret:
        try:
            secret_key(secret)
        except ValueError as exc:
            raise SandboxError(str(exc)) from None
    if detach:
        return _start_detached(port, state_dir, secret)
    return _serve(port, state_dir, secret, on_ready, on_request)


def status(state_dir: Path) -> SandboxInfo | None:
    """The sandbox recorded in ``state_dir``, running or not; None when none was recorded."""
    recorded = _read_info(state_dir)
    if recorded is None:
        return None
    health = _health(recorded.port)
    answering = health is not None and health.get("pid") == recorded.pid
    running = answering or (recorded.pid is not None and _is_sandbox_process(recorded.pid))
    signed = bool(health.get("signed")) if health is not None else recorded.signed
    return replace(recorded, running=running, signed=signed)


def stop(state_dir: Path) -> SandboxInfo | None:
    """Stop the sandbox recorded in ``state_dir``; return what was stopped (None: nothing ran).

    SIGTERM first, SIGKILL after a few seconds; the state files are removed either way.
    """
    current = status(state_dir)
    try:
        if current is None or not current.running or current.pid is None:
            return None
        _terminate(current.pid)
        return replace(current, running=False)
    finally:
        _remove_files(state_dir, None)


# -- foreground ------------------------------------------------------------------------
def _serve(
    port: int,
    state_dir: Path,
    secret: str | None,
    on_ready: Callable[[SandboxInfo], None] | None,
    on_request: Callable[[Delivery], None] | None,
) -> SandboxInfo:
    try:
        receiver = WebhookReceiver(secret, port=port, on_delivery=on_request)
    except OSError as exc:
        raise SandboxError(_bind_problem(port, exc, state_dir)) from None
    emulators: list[tuple[Api, Server]] = []
    try:
        for api in APIS:
            api_port = api.port(port)
            try:
                emulators.append((api, api.make(api_port)))
            except OSError as exc:
                raise SandboxError(_bind_problem(api_port, exc, state_dir, api.name)) from None
    except BaseException:
        receiver.stop()
        for _, emulator in emulators:
            emulator.stop()
        raise
    apis = tuple(describe(api, emulator) for api, emulator in emulators)
    info = SandboxInfo(receiver.port, os.getpid(), True, signed=receiver.signed, apis=apis)
    stopping = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    started: list[Server] = []
    try:
        with receiver:
            try:
                for _, emulator in emulators:
                    emulator.start()
                    started.append(emulator)
                _write_info(state_dir, info)
                if on_ready is not None:
                    on_ready(info)
                try:
                    while not stopping.wait(0.2):
                        pass
                except KeyboardInterrupt:
                    pass
            finally:
                for _, emulator in emulators:
                    emulator.stop()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        _remove_files(state_dir, info.pid)
    return replace(info, running=False)


# -- detached --------------------------------------------------------------------------
def _start_detached(port: int, state_dir: Path, secret: str | None) -> SandboxInfo:
    current = status(state_dir)
    if current is not None and current.running and _health(current.port) is not None:
        return replace(current, already_running=True)
    _remove_files(state_dir, None)
    state_dir.mkdir(parents=True, exist_ok=True)
    log_file = (state_dir / LOG_FILE).resolve()
    port_file = state_dir / f"sandbox.port.{os.getpid()}"
    port_file.unlink(missing_ok=True)
    env = dict(os.environ)
    env.pop(SECRET_ENV, None)
    if secret:
        env[SECRET_ENV] = secret  # through the environment: never visible in `ps`
    command = [sys.executable, "-m", MODULE, "--port", str(port)]
    command += ["--state-dir", str(state_dir.resolve()), "--port-file", str(port_file)]
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    try:
        bound, apis = _wait_until_answering(process, port_file, log_file)
    finally:
        port_file.unlink(missing_ok=True)
    info = SandboxInfo(
        bound,
        process.pid,
        True,
        detached=True,
        signed=bool(secret),
        log_file=log_file,
        apis=apis,
    )
    _write_info(state_dir, info)
    return info


def _wait_until_answering(
    process: subprocess.Popen[bytes], port_file: Path, log_file: Path
) -> tuple[int, tuple[dict[str, Any], ...]]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            last = _tail(log_file, 1)
            if last.startswith("error: "):  # the sandbox's own message: a port is taken
                raise SandboxError(last.removeprefix("error: "))
            tail = _tail(log_file)
            raise SandboxError(f"the sandbox exited at start (code {process.returncode}): {tail}")
        if port_file.exists():
            document = json.loads(port_file.read_text(encoding="utf-8"))
            port = int(document["port"])
            health = _health(port)
            if health is not None and health.get("pid") == process.pid:
                return port, tuple(document["apis"])
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise SandboxError(f"the sandbox did not answer within {START_TIMEOUT_S:g}s; see {log_file}")


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def _alive(pid: int) -> bool:
    try:
        # reap it if it is our child (a sandbox started by this process)
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_sandbox_process(pid: int) -> bool:
    """Whether ``pid`` is alive and runs the receiver module (Linux: by its command line)."""
    if not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return MODULE.encode() in cmdline


# -- files and probes ------------------------------------------------------------------
def _health(port: int) -> dict[str, Any] | None:
    """The receiver's ``/_health`` document, or None when nothing (or something else) answers."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/_health", timeout=1.0) as response:
            document = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    if not isinstance(document, dict) or document.get("service") != SERVICE:
        return None
    return document


def _write_info(state_dir: Path, info: SandboxInfo) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "pid": info.pid,
        "port": info.port,
        "url": info.url,
        "detached": info.detached,
        "signed": info.signed,
        "log_file": str(info.log_file) if info.log_file else None,
        "apis": list(info.apis),
    }
    _write_atomic(state_dir / INFO_FILE, json.dumps(document, indent=2) + "\n")
    _write_atomic(state_dir / PID_FILE, f"{info.pid}\n")


def _read_info(state_dir: Path) -> SandboxInfo | None:
    try:
        document = json.loads((state_dir / INFO_FILE).read_text(encoding="utf-8"))
        pid = int((state_dir / PID_FILE).read_text(encoding="utf-8").strip())
        port = int(document["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    log_file = document.get("log_file")
    return SandboxInfo(
        port,
        pid,
        False,
        detached=bool(document.get("detached")),
        signed=bool(document.get("signed")),
        log_file=Path(log_file) if log_file else None,
        apis=tuple(document.get("apis") or ()),
    )


def _remove_files(state_dir: Path, pid: int | None) -> None:
    """Remove the pid and info files (only if they still name ``pid``, when given)."""
    if pid is not None:
        recorded = _read_info(state_dir)
        if recorded is not None and recorded.pid != pid:
            return
    for name in (PID_FILE, INFO_FILE):
        (state_dir / name).unlink(missing_ok=True)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def _bind_problem(port: int, exc: OSError, state_dir: Path, api: str | None = None) -> str:
    running = status(state_dir)
    ports = {running.port, *(a.get("port") for a in running.apis)} if running else set()
    if running is not None and running.running and port in ports:
        return (
            f"a sandbox is already running on {running.url} (pid {running.pid}); "
            "stop it with `revseg sandbox --stop`"
        )
    if api is None:
        return f"cannot listen on {HOST}:{port}: {exc.strerror or exc}; try another --port"
    return (
        f"cannot listen on {HOST}:{port} for the {api} API emulator: {exc.strerror or exc} "
        "(is another sandbox running?); --port P moves the webhook to P and the APIs to "
        "the 9 ports after it, --port 0 picks free ports"
    )


# -- the sandbox process -----------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """The detached sandbox: ``python -m revseg.sandbox.server --port N --state-dir D``.

    Writes ``{"port", "apis"}`` to ``--port-file`` once every server answers, logs one line
    per webhook request, and exits on SIGTERM; a port taken is one ``error: ...`` line and
    exit code 1.
    """
    parser = argparse.ArgumentParser(description="Run the revseg sandbox (webhook and APIs).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="the webhook's port")
    parser.add_argument("--state-dir", required=True, help="the project's .revseg directory")
    parser.add_argument("--port-file", default=None, help="write the ports here once serving")
    args = parser.parse_args(argv)

    def ready(info: SandboxInfo) -> None:
        print(f"sandbox pid {info.pid}: webhook {info.url}", flush=True)
        for api in info.apis:
            print(f"  {api['name']}: {api['url']}", flush=True)
        if args.port_file:
            document = {"port": info.port, "apis": list(info.apis)}
            _write_atomic(Path(args.port_file), json.dumps(document))

    def logged(delivery: Delivery) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {delivery.summary()}", flush=True)

    try:
        _serve(args.port, Path(args.state_dir), os.environ.get(SECRET_ENV) or None, ready, logged)
    except RevsegError as exc:
        print(f"error: {exc}", flush=True)
        sys.exit(1)


__all__ = ["DEFAULT_PORT", "SandboxError", "SandboxInfo", "start", "status", "stop"]


if __name__ == "__main__":
    main()
