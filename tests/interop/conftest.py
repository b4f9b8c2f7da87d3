"""Fixtures for the interop tests: a real Cableway server subprocess and real Node JS clients.

* ``cableway_server`` starts ``cableway`` on a free 127.0.0.1 port (JWT + Turbo Streams + HTTP
  broadcasting on the main port), waits for its "Handle WebSocket connections at" log line and a
  200 from ``/health`` (bounded deadline), and always terminates it afterwards.
* ``rails_client`` starts ``node rails_client.mjs <scenario>`` (the real ``@rails/actioncable``
  consumer over ``ws``) and exposes the JSON-line events it prints, with bounded waits.

On any test failure the server's output and every Node client's transcript/stderr are attached to
the report as extra sections.

Prerequisites: ``node`` on PATH and ``tests/interop/node_modules`` (``npm ci`` in this directory).
Missing prerequisites skip the tests, unless ``CABLEWAY_REQUIRE_INTEROP=1`` is set (``.ci/run``
sets it), in which case they fail: CI must never silently skip the interop suite.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

# The project's own helpers (Rails MessageVerifier format; HS256 JWT with `ext`, absolute `exp`).
from cableway.auth.jwt import encode_token
from cableway.auth.signed_streams import sign_stream_name

INTEROP_DIR = Path(__file__).resolve().parent
NODE_MODULES = INTEROP_DIR / "node_modules"
RAILS_CLIENT = INTEROP_DIR / "rails_client.mjs"
REQUIRED_PACKAGES = ("@rails/actioncable", "ws")
REQUIRE_ENV = "CABLEWAY_REQUIRE_INTEROP"
# Optional command prefix replacing the `cableway` executable (same flags are appended), e.g. to
# run this suite against another AnyCable-compatible server for comparison.
SERVER_ENV = "CABLEWAY_INTEROP_SERVER"

READY_MARKER = "Handle WebSocket connections at"
SERVER_START_TIMEOUT = 20.0
SERVER_STOP_TIMEOUT = 10.0
NODE_EVENT_TIMEOUT = 10.0

_REPORT_SECTIONS = pytest.StashKey[list[tuple[str, Callable[[], str]]]]()


# --------------------------------------------------------------------------------------------
# Prerequisites
# --------------------------------------------------------------------------------------------


def _missing_prerequisite() -> str | None:
    if shutil.which("node") is None:
        return "`node` is not on PATH"
    for package in REQUIRED_PACKAGES:
        if not (NODE_MODULES / package / "package.json").is_file():
            return f"{NODE_MODULES / package} is missing (run `npm ci` in {INTEROP_DIR})"
    return None


@pytest.fixture(autouse=True)
def _interop_prerequisites(node_executable: str) -> None:
    """Every test in this directory is skipped (or, in CI, failed) before anything starts."""


@pytest.fixture(scope="session")
def node_executable() -> str:
    missing = _missing_prerequisite()
    if missing is not None:
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(f"interop prerequisites missing and {REQUIRE_ENV} is set: {missing}")
        pytest.skip(f"interop tests need Node and npm packages: {missing}")
    node = shutil.which("node")
    assert node is not None
    return node


# --------------------------------------------------------------------------------------------
# Failure reporting
# --------------------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report: pytest.TestReport = yield
    if report.failed:
        for title, render in item.stash.get(_REPORT_SECTIONS, []):
            report.sections.append((title, render()))
    return report


def _attach_section(request: pytest.FixtureRequest, title: str, render: Callable[[], str]) -> None:
    request.node.stash.setdefault(_REPORT_SECTIONS, []).append((title, render))


# --------------------------------------------------------------------------------------------
# Line reader shared by the server and the Node clients
# --------------------------------------------------------------------------------------------


class _LineCollector:
    """Reads a text stream on a daemon thread; lines are available to waiters (bounded waits)."""

    def __init__(self, stream: IO[str], on_line: Callable[[str], None] | None = None) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._cond = threading.Condition()
        self._stream = stream
        self._on_line = on_line
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for line in self._stream:
                with self._cond:
                    self.lines.append(line.rstrip("\n"))
                    if self._on_line is not None:
                        self._on_line(self.lines[-1])
                    self._cond.notify_all()
        except (OSError, ValueError):  # stream closed under us during teardown
            pass
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def wait_until(self, predicate: Callable[[], bool], deadline: float) -> bool:
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    return predicate()
                self._cond.wait(remaining)
            return True

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cableway_command() -> list[str]:
    override = os.environ.get(SERVER_ENV, "").strip()
    if override:
        return shlex.split(override)
    script = Path(sys.executable).with_name("cableway")
    if script.is_file():
        return [str(script)]
    found = shutil.which("cableway")
    if found is None:
        pytest.fail("the `cableway` console script is not installed (pip install -e '.[dev]')")
    return [found]


@dataclass
class CablewayServer:
    port: int
    jwt_secret: str
    turbo_secret: str
    broadcast_key: str
    argv: list[str]
    process: subprocess.Popen[str] | None = None
    output: _LineCollector | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, token: str | None = None) -> str:
        url = f"ws://127.0.0.1:{self.port}/cable"
        return url if token is None else f"{url}?jid={token}"

    def token(self, identifiers: dict[str, Any] | str, exp: int | None = None) -> str:
        return encode_token(identifiers, self.jwt_secret, exp=exp)

    def signed_turbo_stream(self, stream: str) -> str:
        return sign_stream_name(stream, self.turbo_secret)

    def log(self) -> str:
        return self.output.text() if self.output is not None else "(not started)"

    def describe(self) -> str:
        exit_code = self.process.poll() if self.process is not None else None
        return f"$ {' '.join(self.argv)}\nexit code: {exit_code}\n{self.log()}"

    def broadcast(self, stream: str, data: str, *, timeout: float = 5.0) -> int:
        """POST a publication to /_broadcast; returns the HTTP status."""
        body = json.dumps({"stream": stream, "data": data}).encode()
        request = urllib.request.Request(
            f"{self.http_url}/_broadcast",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.broadcast_key}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            error.close()
            return int(error.code)

    def health_status(self, *, timeout: float = 1.0) -> int | None:
        try:
            with urllib.request.urlopen(f"{self.http_url}/health", timeout=timeout) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            error.close()
            return int(error.code)
        except OSError:
            return None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()

        def on_line(line: str) -> None:
            if READY_MARKER in line and f":{self.port}/" in line:
                ready.set()

        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        assert self.process.stdout is not None
        self.output = _LineCollector(self.process.stdout, on_line)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        if not self.output.wait_until(ready.is_set, deadline):
            raise RuntimeError(
                f"server did not log {READY_MARKER!r} within {SERVER_START_TIMEOUT}s "
                f"(exit code {self.process.poll()})"
            )
        while self.health_status() != 200:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"GET /health did not answer 200 within {SERVER_START_TIMEOUT}s")
            # Short poll interval between health probes (bounded by the deadline above).
            ready.wait(0.05)

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        try:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(SERVER_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(SERVER_STOP_TIMEOUT)
        finally:
            if self.output is not None:
                self.output.join(SERVER_STOP_TIMEOUT)
            if process.stdout is not None:
                process.stdout.close()


@pytest.fixture
def cableway_server(request: pytest.FixtureRequest) -> Iterator[CablewayServer]:
    """A fresh server per test; always terminated (then killed) in teardown."""
    last_error: Exception | None = None
    for _attempt in range(3):  # a free port can be grabbed by someone else before we bind it
        port = _free_port()
        jwt_secret, turbo_secret, broadcast_key = (secrets.token_hex(16) for _ in range(3))
        argv = [
            *_cableway_command(),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--jwt_secret", jwt_secret,
            "--turbo_streams",
            "--turbo_streams_secret", turbo_secret,
            "--broadcast_key", broadcast_key,
            "--http_broadcast_port", str(port),
        ]  # fmt: skip
        server = CablewayServer(port, jwt_secret, turbo_secret, broadcast_key, argv)
        _attach_section(request, f"cableway server output (port {port})", server.describe)
        try:
            server.start()
        except RuntimeError as error:
            server.stop()
            last_error = error
            if "address already in use" in server.log().lower():
                continue
            pytest.fail(f"{error}\n--- server output ---\n{server.log()}")
        try:
            yield server
        finally:
            server.stop()
        return
    pytest.fail(f"could not start the server: {last_error}")


# --------------------------------------------------------------------------------------------
# Node clients
# --------------------------------------------------------------------------------------------


class NodeClient:
    """One ``node rails_client.mjs`` process; events are the JSON lines it prints."""

    def __init__(self, node: str, script: Path, scenario: dict[str, Any]) -> None:
        self.scenario = scenario
        self._seq = 0
        self.process = subprocess.Popen(
            [node, str(script), json.dumps(scenario)],
            cwd=script.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._stdout = _LineCollector(self.process.stdout)
        self._stderr = _LineCollector(self.process.stderr)

    # -- events ------------------------------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        parsed: list[dict[str, Any]] = []
        for line in list(self._stdout.lines):
            try:
                value = json.loads(line)
            except ValueError:
                value = {"event": "unparsed_stdout", "line": line}
            parsed.append(value if isinstance(value, dict) else {"event": "odd", "value": value})
        return parsed

    def find(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            ev
            for ev in self.events
            if ev.get("event") == event and all(ev.get(k) == v for k, v in fields.items())
        ]

    def wait_for(
        self, event: str, *, timeout: float = NODE_EVENT_TIMEOUT, **fields: Any
    ) -> dict[str, Any]:
        """First event named ``event`` whose fields equal ``fields``; bounded by ``timeout``."""
        deadline = time.monotonic() + timeout
        self._stdout.wait_until(lambda: bool(self.find(event, **fields)), deadline)
        found = self.find(event, **fields)
        if not found:
            raise AssertionError(
                f"no {event!r} event matching {fields} within {timeout}s "
                f"(node exit code {self.process.poll()})\n{self.transcript()}"
            )
        return found[0]

    def wait_frame(
        self, predicate: Callable[[Any], bool], *, timeout: float = NODE_EVENT_TIMEOUT
    ) -> dict[str, Any]:
        """First raw server frame (parsed JSON in ``data``) satisfying ``predicate``."""

        def matching() -> list[dict[str, Any]]:
            return [ev for ev in self.find("frame") if predicate(ev.get("data"))]

        deadline = time.monotonic() + timeout
        self._stdout.wait_until(lambda: bool(matching()), deadline)
        found = matching()
        if not found:
            raise AssertionError(f"no matching server frame within {timeout}s\n{self.transcript()}")
        return found[0]

    def index(self, ev: dict[str, Any]) -> int:
        return self.events.index(ev)

    # -- control -----------------------------------------------------------------------------

    def command(self, op: str, *, timeout: float = NODE_EVENT_TIMEOUT, **args: Any) -> None:
        """Send a stdin command and wait (bounded) until the client reports it carried it out."""
        assert self.process.stdin is not None
        self._seq += 1
        self.process.stdin.write(json.dumps({"op": op, "seq": self._seq, **args}) + "\n")
        self.process.stdin.flush()
        self.wait_for("done", seq=self._seq, timeout=timeout)

    def disconnect(self, *, timeout: float = NODE_EVENT_TIMEOUT) -> int:
        """consumer.disconnect(), then wait (bounded) for the client to exit on its own."""
        self.command("disconnect")
        return self.wait_exit(timeout=timeout)

    def wait_exit(self, *, timeout: float = NODE_EVENT_TIMEOUT) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"node client still running after {timeout}s\n{self.transcript()}"
            ) from None
        self._stdout.join(timeout)
        self._stderr.join(timeout)
        return code

    def close(self) -> None:
        process = self.process
        with contextlib.suppress(OSError, ValueError):
            if process.stdin is not None:
                process.stdin.close()
        if process.poll() is None:
            process.kill()
        process.wait(SERVER_STOP_TIMEOUT)
        self._stdout.join(SERVER_STOP_TIMEOUT)
        self._stderr.join(SERVER_STOP_TIMEOUT)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

    def transcript(self) -> str:
        return (
            f"scenario: {json.dumps(self.scenario)}\nexit code: {self.process.poll()}\n"
            f"--- events (stdout) ---\n{self._stdout.text()}\n"
            f"--- stderr ---\n{self._stderr.text()}"
        )


@pytest.fixture
def rails_client(
    request: pytest.FixtureRequest, node_executable: str
) -> Iterator[Callable[..., NodeClient]]:
    """Factory: ``rails_client(url=..., subscriptions=[...], control="stdin"|"none")``."""
    clients: list[NodeClient] = []

    def start(**scenario: Any) -> NodeClient:
        scenario.setdefault("timeout_ms", 30_000)
        if os.environ.get("CABLEWAY_INTEROP_DEBUG"):
            scenario.setdefault("debug", True)
        client = NodeClient(node_executable, RAILS_CLIENT, scenario)
        clients.append(client)
        _attach_section(request, f"rails_client.mjs #{len(clients)}", client.transcript)
        return client

    try:
        yield start
    finally:
        for client in clients:
            client.close()
