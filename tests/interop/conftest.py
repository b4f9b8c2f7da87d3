"""Fixtures for the interop tests: a real Cableway server subprocess and real Node JS clients.

* ``cableway_server`` starts ``cableway`` on a free 127.0.0.1 port (JWT + Turbo Streams + HTTP
  broadcasting on the main port), waits for its "Handle WebSocket connections at" log line and a
  200 from ``/health`` (bounded deadline), and always terminates it afterwards.
* ``cableway_factory(mode)`` does the same for any of ``SERVER_MODES`` (public mode, one
  ``--secret`` with enforced JWT, ...), as many servers as a test needs.
* ``rails_client`` starts ``node rails_client.mjs <scenario>`` (the real ``@rails/actioncable``
  consumer over ``ws``) and exposes the JSON-line events it prints, with bounded waits;
  ``anycable_client`` (``@anycable/web``) and ``sse_client`` (npm ``eventsource``) likewise.
* ``tcp_proxy(port)`` is a 127.0.0.1 TCP forwarder a test can cut to simulate a network failure.
* ``browser()`` starts ``node browser_driver.mjs``: Debian's headless Chromium driven by
  playwright-core (``BrowserClient``); ``static_site(pages)`` serves pages (and the Turbo
  packages from node_modules) from another origin. They need ``/usr/bin/chromium`` (or
  ``CABLEWAY_CHROMIUM``): missing, the browser tests skip, or fail under
  ``CABLEWAY_REQUIRE_INTEROP=1``.

On any test failure the server's output, every Node client's transcript/stderr and every proxy's
event log are attached to the report as extra sections.

Prerequisites: ``node`` on PATH and ``tests/interop/node_modules`` (``npm ci`` in this directory).
Missing prerequisites skip the tests, unless ``CABLEWAY_REQUIRE_INTEROP=1`` is set (``.ci/run``
sets it), in which case they fail: CI must never silently skip the interop suite.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import mimetypes
import os
import re
import secrets
import selectors
import shlex
import shutil
import socket
import struct
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
from cableway.auth.keys import derive_broadcast_key
from cableway.auth.signed_streams import sign_stream_name

INTEROP_DIR = Path(__file__).resolve().parent
NODE_MODULES = INTEROP_DIR / "node_modules"
RAILS_CLIENT = INTEROP_DIR / "rails_client.mjs"
ANYCABLE_CLIENT = INTEROP_DIR / "anycable_client.mjs"
SSE_CLIENT = INTEROP_DIR / "sse_client.mjs"
REQUIRED_PACKAGES = ("@rails/actioncable", "ws", "@anycable/web", "@anycable/core", "eventsource")
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
    demo_curl: str = ""
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

    def sign(self, stream: str) -> str:
        """A signed `$pubsub` stream name (mode "signed_jwt": the streams secret is --secret)."""
        return sign_stream_name(stream, self.turbo_secret)

    def read_demo_banner(self) -> None:
        """Mode "demo": take the generated secret, the broadcast key and the ``curl`` example
        from the start-up banner (``cableway.tools.demo.startup_banner``)."""
        log = self.log()
        secret = re.search(r"^Secret generated for this run: (\S+) ", log, re.MULTILINE)
        key = re.search(r"^Broadcast key: (\S+)$", log, re.MULTILINE)
        curl = re.search(r"^  (curl .*)$", log, re.MULTILINE)
        if secret is None or key is None or curl is None:
            raise RuntimeError("`cableway --demo` printed no banner with its secret, key and curl")
        self.jwt_secret = self.turbo_secret = secret.group(1)
        self.broadcast_key = key.group(1)
        self.demo_curl = curl.group(1)

    def error_lines(self) -> list[str]:
        """Server log lines at error level or with a traceback (a crash the client cannot see)."""
        return [line for line in self.log().splitlines() if " ERR " in line or "Traceback" in line]

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


def _turbo_jwt_flags(port: int, jwt_secret: str, turbo_secret: str, key: str) -> list[str]:
    """JWT identification, Turbo Streams with signed names, keyed HTTP broadcasting."""
    return [
        "--jwt_secret", jwt_secret,
        "--turbo_streams",
        "--turbo_streams_secret", turbo_secret,
        "--broadcast_key", key,
        "--http_broadcast_port", str(port),
    ]  # fmt: skip


def _public_flags(port: int, jwt_secret: str, turbo_secret: str, key: str) -> list[str]:
    """Public mode: anonymous connections, unsigned `$pubsub` streams, open broadcasting; memory
    broker and SSE spelled out (AnyCable's defaults are off) so another server runs the same."""
    return ["--public", "--broker=memory", "--sse", "--http_broadcast_port", str(port)]


def _signed_jwt_flags(port: int, jwt_secret: str, turbo_secret: str, key: str) -> list[str]:
    """One `--secret` (JWT and signed `$pubsub` streams), JWT enforced, keyed broadcasting.
    ``jwt_secret`` == ``turbo_secret`` here, so ``CablewayServer.sign`` uses the right secret."""
    return [
        "--secret", jwt_secret,
        "--enforce_jwt",
        "--broker=memory",
        "--sse",
        "--broadcast_key", key,
        "--http_broadcast_port", str(port),
    ]  # fmt: skip


def _enforced_jwt_public_streams_flags(
    port: int, jwt_secret: str, turbo_secret: str, key: str
) -> list[str]:
    """JWT required for every connection (also SSE), unsigned `$pubsub` streams allowed."""
    return [
        "--jwt_secret", jwt_secret,
        "--enforce_jwt",
        "--public_streams",
        "--broker=memory",
        "--sse",
        "--broadcast_key", key,
        "--http_broadcast_port", str(port),
    ]  # fmt: skip


ServerFlags = Callable[[int, str, str, str], list[str]]


def _turbo_sse_flags(port: int, jwt_secret: str, turbo_secret: str, key: str) -> list[str]:
    """Mode "turbo_jwt" plus the memory broker and SSE spelled out (for another server)."""
    return [*_turbo_jwt_flags(port, jwt_secret, turbo_secret, key), "--broker=memory", "--sse"]


def _turbo_deflate_flags(port: int, jwt_secret: str, turbo_secret: str, key: str) -> list[str]:
    """Mode "turbo_jwt" with WebSocket compression (permessage-deflate) enabled."""
    return [*_turbo_jwt_flags(port, jwt_secret, turbo_secret, key), "--enable_ws_compression"]


def _secret_turbo_flags(port: int, jwt_secret: str, turbo_secret: str, key: str) -> list[str]:
    """One `--secret` for everything, as docs/recipes set it up (ANYCABLE_SECRET): JWT, Turbo
    Streams signing, and the broadcast key derived from it (``key`` is that derived key)."""
    return [
        "--secret", jwt_secret,
        "--turbo_streams",
        "--broker=memory",
        "--sse",
        "--http_broadcast_port", str(port),
    ]  # fmt: skip


def _demo_flags(port: int, jwt_secret: str, turbo_secret: str, key: str) -> list[str]:
    """`cableway --demo` and nothing else: the server generates its secrets and prints them;
    ``CablewayServer.read_demo_banner`` takes them from its output."""
    return ["--demo"]


SERVER_MODES: dict[str, ServerFlags] = {
    "turbo_jwt": _turbo_jwt_flags,
    "turbo_sse": _turbo_sse_flags,
    "turbo_deflate": _turbo_deflate_flags,
    "public": _public_flags,
    "signed_jwt": _signed_jwt_flags,
    "enforced_jwt_public_streams": _enforced_jwt_public_streams_flags,
    "secret_turbo": _secret_turbo_flags,
    "demo": _demo_flags,
}


def _start_server(request: pytest.FixtureRequest, mode: str) -> CablewayServer:
    """Start (and return) a server in ``mode``; the caller must ``stop()`` it."""
    flags = SERVER_MODES[mode]
    last_error: Exception | None = None
    for _attempt in range(3):  # a free port can be grabbed by someone else before we bind it
        port = _free_port()
        jwt_secret, turbo_secret, broadcast_key = (secrets.token_hex(16) for _ in range(3))
        if mode in ("signed_jwt", "secret_turbo"):
            turbo_secret = jwt_secret
        if mode == "secret_turbo":
            broadcast_key = derive_broadcast_key(jwt_secret)
        argv = [
            *_cableway_command(),
            "--host", "127.0.0.1",
            "--port", str(port),
            *flags(port, jwt_secret, turbo_secret, broadcast_key),
        ]  # fmt: skip
        server = CablewayServer(port, jwt_secret, turbo_secret, broadcast_key, argv)
        _attach_section(request, f"cableway server output (port {port}, {mode})", server.describe)
        try:
            server.start()
            if mode == "demo":
                server.read_demo_banner()
        except RuntimeError as error:
            server.stop()
            last_error = error
            if "address already in use" in server.log().lower():
                continue
            pytest.fail(f"{error}\n--- server output ---\n{server.log()}")
        return server
    pytest.fail(f"could not start the server: {last_error}")


@pytest.fixture
def cableway_server(request: pytest.FixtureRequest) -> Iterator[CablewayServer]:
    """A fresh server per test (mode "turbo_jwt"); always terminated (then killed) in teardown."""
    server = _start_server(request, "turbo_jwt")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cableway_factory(request: pytest.FixtureRequest) -> Iterator[Callable[[str], CablewayServer]]:
    """Factory: ``cableway_factory(mode)`` starts a fresh server in one of ``SERVER_MODES``;
    every server started is terminated (then killed) in teardown."""
    servers: list[CablewayServer] = []

    def start(mode: str) -> CablewayServer:
        server = _start_server(request, mode)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


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

    def wait_count(
        self, event: str, count: int, *, timeout: float = NODE_EVENT_TIMEOUT, **fields: Any
    ) -> list[dict[str, Any]]:
        """Wait (bounded) until at least ``count`` events match; returns all matching ones."""
        deadline = time.monotonic() + timeout
        self._stdout.wait_until(lambda: len(self.find(event, **fields)) >= count, deadline)
        found = self.find(event, **fields)
        if len(found) < count:
            raise AssertionError(
                f"only {len(found)} of {count} {event!r} events matching {fields} within "
                f"{timeout}s (node exit code {self.process.poll()})\n{self.transcript()}"
            )
        return found

    def wait_event(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        what: str = "event",
        timeout: float = NODE_EVENT_TIMEOUT,
    ) -> dict[str, Any]:
        """First event satisfying ``predicate``; bounded by ``timeout``."""

        def matching() -> list[dict[str, Any]]:
            return [ev for ev in self.events if predicate(ev)]

        deadline = time.monotonic() + timeout
        self._stdout.wait_until(lambda: bool(matching()), deadline)
        found = matching()
        if not found:
            raise AssertionError(f"no matching {what} within {timeout}s\n{self.transcript()}")
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


def _node_client_factory(
    request: pytest.FixtureRequest, node: str, script: Path
) -> Iterator[Callable[..., NodeClient]]:
    clients: list[NodeClient] = []

    def start(**scenario: Any) -> NodeClient:
        scenario.setdefault("timeout_ms", 30_000)
        if os.environ.get("CABLEWAY_INTEROP_DEBUG"):
            scenario.setdefault("debug", True)
        client = NodeClient(node, script, scenario)
        clients.append(client)
        _attach_section(request, f"{script.name} #{len(clients)}", client.transcript)
        return client

    try:
        yield start
    finally:
        for client in clients:
            client.close()


@pytest.fixture
def rails_client(
    request: pytest.FixtureRequest, node_executable: str
) -> Iterator[Callable[..., NodeClient]]:
    """Factory: ``rails_client(url=..., subscriptions=[...], control="stdin"|"none")``."""
    yield from _node_client_factory(request, node_executable, RAILS_CLIENT)


@pytest.fixture
def anycable_client(
    request: pytest.FixtureRequest, node_executable: str
) -> Iterator[Callable[..., NodeClient]]:
    """Factory: ``anycable_client(url=..., streams=[...], token=..., reconnect={...})`` — the real
    ``@anycable/web`` client (``anycable_client.mjs``; scenario format in its header)."""
    yield from _node_client_factory(request, node_executable, ANYCABLE_CLIENT)


@pytest.fixture
def sse_client(
    request: pytest.FixtureRequest, node_executable: str
) -> Iterator[Callable[..., NodeClient]]:
    """Factory: ``sse_client(url=..., events=[...], control="stdin"|"none")`` — a real
    ``EventSource`` (``sse_client.mjs``, npm ``eventsource``; scenario format in its header)."""
    yield from _node_client_factory(request, node_executable, SSE_CLIENT)


class Broadcaster:
    """Calls ``publish(n)`` for n = first..last, in order, on a thread — so a test can drop a
    connection while messages are flowing. ``join()`` waits (bounded) and re-raises failures."""

    def __init__(
        self, publish: Callable[[int], None], first: int, last: int, *, per_call_timeout: float
    ) -> None:
        self.errors: list[BaseException] = []
        self._timeout = per_call_timeout * (last - first + 2)
        self._thread = threading.Thread(
            target=self._run, args=(publish, first, last), name="broadcaster", daemon=True
        )
        self._thread.start()

    def _run(self, publish: Callable[[int], None], first: int, last: int) -> None:
        try:
            for n in range(first, last + 1):
                publish(n)
        except BaseException as error:  # re-raised by join()
            self.errors.append(error)

    def join(self) -> None:
        self._thread.join(self._timeout)
        assert not self._thread.is_alive(), f"the broadcaster did not finish in {self._timeout}s"
        if self.errors:
            raise self.errors[0]


# --------------------------------------------------------------------------------------------
# A TCP proxy the test can cut, to simulate a network failure between a client and the server
# --------------------------------------------------------------------------------------------

PROXY_OP_TIMEOUT = 5.0
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, drops buffers


def _reset(sock: socket.socket) -> None:
    """Close abruptly (TCP RST, unsent data dropped), as a network failure looks to both ends."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to the server's port, byte for byte, on one daemon thread.

    * ``cut()``: reset every forwarded connection on both sides (RST, no WebSocket close frame, no
      end of the HTTP response) and go *down*: new connections are accepted and reset at once, so
      the client's reconnection attempts fail like during an outage.
    * ``hold()``: go down without touching the live connections (then a client-side drop cannot
      reconnect until ``restore()``).
    * ``restore()``: forward new connections again.
    * ``retarget(port)``: forward the connections accepted from now on to another port (live
      ones keep theirs): a load balancer sending the client's next connection to another worker.
    * ``hold_client_data()`` / ``release_client_data()``: on connections where the server has
      already spoken (e.g. after a WebSocket handshake), queue what the client sends instead of
      forwarding it, then deliver the queue: a slow uplink, to widen a race deterministically.

    ``forwarded`` / ``refused`` count connections, ``forwarded_to`` lists the port each forwarded
    connection went to; ``describe()`` is its event log.
    """

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = int(self._listener.getsockname()[1])
        self.forwarded = 0
        self.forwarded_to: list[int] = []
        self.refused = 0
        self._up = True
        self._log: list[str] = []
        self._started = time.monotonic()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._eof: set[socket.socket] = set()
        self._clients: set[socket.socket] = set()
        self._server_spoke: set[socket.socket] = set()  # client sockets whose server has sent
        self._held: dict[socket.socket, bytearray] = {}  # client socket -> bytes not forwarded
        self._holding = False
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._lock = threading.Lock()
        self._pending: list[tuple[str, threading.Event]] = []
        self._stopped = False
        self._thread = threading.Thread(
            target=self._run, name=f"tcp-proxy-{self.port}", daemon=True
        )
        self._thread.start()

    # -- test API (any thread) ---------------------------------------------------------------

    def cut(self) -> None:
        self._call("cut")

    def hold(self) -> None:
        self._call("hold")

    def restore(self) -> None:
        self._call("restore")

    def retarget(self, port: int) -> None:
        with self._lock:  # read by the proxy thread when it accepts a connection
            self.target = ("127.0.0.1", port)
        self._note(f"retarget: new connections go to port {port}")

    def hold_client_data(self) -> None:
        self._call("hold_client_data")

    def release_client_data(self) -> None:
        self._call("release_client_data")

    def stop(self) -> None:
        if not self._stopped:
            with contextlib.suppress(RuntimeError):
                self._call("stop")
            self._thread.join(PROXY_OP_TIMEOUT)
            self._stopped = True

    def describe(self) -> str:
        with self._lock:
            lines = list(self._log)
        return (
            f"127.0.0.1:{self.port} -> {self.target[0]}:{self.target[1]}; "
            f"forwarded {self.forwarded}, refused {self.refused}\n" + "\n".join(lines)
        )

    def _call(self, op: str) -> None:
        done = threading.Event()
        with self._lock:
            self._pending.append((op, done))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if not done.wait(PROXY_OP_TIMEOUT):
            raise RuntimeError(f"proxy did not carry out {op!r} within {PROXY_OP_TIMEOUT}s")

    # -- proxy thread ------------------------------------------------------------------------

    def _note(self, text: str) -> None:
        with self._lock:
            self._log.append(f"+{time.monotonic() - self._started:7.3f}s {text}")

    def _run(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        running = True
        try:
            while running:
                for key, _events in self._selector.select():
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        running = self._run_pending()
                    else:
                        self._pump(key.fileobj)  # type: ignore[arg-type]
        except Exception as error:  # never die silently: the log is in the failure report
            self._note(f"proxy thread crashed: {error!r}")
        finally:
            for sock in list(self._peers):
                _reset(sock)
            self._peers.clear()
            for sock in (self._listener, self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:  # release any waiter
                for _op, done in self._pending:
                    done.set()
                self._pending.clear()

    def _run_pending(self) -> bool:
        with contextlib.suppress(OSError):
            self._wake_r.recv(4096)
        with self._lock:
            pending, self._pending = self._pending, []
        running = True
        for op, done in pending:
            if op == "cut":
                self._up = False
                count = len(self._peers) // 2
                for sock in list(self._peers):
                    self._drop(sock, abort=True)
                self._note(f"cut: reset {count} connection(s); now refusing new ones")
            elif op == "hold":
                self._up = False
                self._note("hold: refusing new connections")
            elif op == "restore":
                self._up = True
                self._note("restore: forwarding new connections")
            elif op == "hold_client_data":
                self._holding = True
                self._note("holding client->server data (after the server's first bytes)")
            elif op == "release_client_data":
                self._holding = False
                held, self._held = self._held, {}
                for client, data in held.items():
                    upstream = self._peers.get(client)
                    if upstream is None:
                        continue
                    try:
                        upstream.sendall(data)
                    except OSError:
                        self._drop(client, abort=True)
                self._note(f"released {sum(map(len, held.values()))} held client byte(s)")
            elif op == "stop":
                running = False
            done.set()
        return running

    def _accept(self) -> None:
        try:
            client, address = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if not self._up:
            self.refused += 1
            _reset(client)
            self._note(f"refused (reset) a connection from port {address[1]}")
            return
        with self._lock:
            target = self.target
        try:
            upstream = socket.create_connection(target, timeout=PROXY_OP_TIMEOUT)
        except OSError as error:
            _reset(client)
            self._note(f"could not reach the server: {error!r}")
            return
        for sock in (client, upstream):
            sock.settimeout(PROXY_OP_TIMEOUT)  # bounds sendall() to a peer that stopped reading
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._peers[client] = upstream
        self._peers[upstream] = client
        self._clients.add(client)
        self._selector.register(client, selectors.EVENT_READ, "client")
        self._selector.register(upstream, selectors.EVENT_READ, "upstream")
        self.forwarded += 1
        self.forwarded_to.append(target[1])
        self._note(f"forwarding a connection from port {address[1]} to port {target[1]}")

    def _pump(self, sock: socket.socket) -> None:
        peer = self._peers.get(sock)
        if peer is None:  # dropped earlier in this round of select()
            return
        try:
            data = sock.recv(65536)
            if data:
                if sock in self._clients:
                    if self._holding and sock in self._server_spoke:
                        self._held.setdefault(sock, bytearray()).extend(data)
                        return
                else:
                    self._server_spoke.add(peer)
                peer.sendall(data)
                return
        except OSError:
            self._drop(sock, abort=True)
            return
        # Orderly end of one direction: pass the FIN on, keep the other direction open.
        self._selector.unregister(sock)
        self._eof.add(sock)
        with contextlib.suppress(OSError):
            peer.shutdown(socket.SHUT_WR)
        if peer in self._eof:
            self._drop(sock, abort=False)

    def _drop(self, sock: socket.socket, *, abort: bool) -> None:
        peer = self._peers.pop(sock, None)
        pair = [sock] if peer is None else [sock, peer]
        if peer is not None:
            self._peers.pop(peer, None)
        for one in pair:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(one)
            self._eof.discard(one)
            self._clients.discard(one)
            self._server_spoke.discard(one)
            self._held.pop(one, None)
            if abort:
                _reset(one)
            else:
                with contextlib.suppress(OSError):
                    one.close()


@pytest.fixture
def tcp_proxy(request: pytest.FixtureRequest) -> Iterator[Callable[[int], TcpProxy]]:
    """Factory: ``tcp_proxy(server.port)`` → a started ``TcpProxy``; stopped in teardown."""
    proxies: list[TcpProxy] = []

    def start(target_port: int) -> TcpProxy:
        proxy = TcpProxy(target_port)
        proxies.append(proxy)
        _attach_section(request, f"tcp proxy #{len(proxies)}", proxy.describe)
        return proxy

    try:
        yield start
    finally:
        for proxy in proxies:
            proxy.stop()


# --------------------------------------------------------------------------------------------
# Headless Chromium (test_browser.py, test_browser_anycable.py): Debian's chromium driven by playwright-core
# --------------------------------------------------------------------------------------------

BROWSER_DRIVER = INTEROP_DIR / "browser_driver.mjs"
BROWSER_PACKAGES = (
    "playwright-core",
    "@hotwired/turbo",
    "@hotwired/turbo-rails",
    "@anycable/turbo-stream",
)
# The browser binary: Debian's package (`apt-get install chromium`), never a downloaded one.
CHROMIUM_ENV = "CABLEWAY_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
REPO_ROOT = INTEROP_DIR.parent.parent
ARTIFACTS = REPO_ROOT / "artifacts" / "browser"  # git-ignored; CI keeps it as an artifact
BROWSER_STEP_TIMEOUT = 10.0


@pytest.fixture(scope="session")
def chromium_executable(node_executable: str) -> str:
    """The Chromium binary; skips (or fails with CABLEWAY_REQUIRE_INTEROP=1) when missing."""
    path = os.environ.get(CHROMIUM_ENV, "").strip() or DEFAULT_CHROMIUM
    missing = None
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        missing = f"no Chromium at {path} (apt-get install chromium, or set {CHROMIUM_ENV})"
    for package in BROWSER_PACKAGES:
        if missing is None and not (NODE_MODULES / package / "package.json").is_file():
            missing = f"{NODE_MODULES / package} is missing (run `npm ci` in {INTEROP_DIR})"
    if missing is not None:
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(f"browser prerequisites missing and {REQUIRE_ENV} is set: {missing}")
        pytest.skip(f"browser tests need headless Chromium: {missing}")
    return path


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process (Linux /proc)."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every live descendant of ``root``."""
    table = _process_table()
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, start) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = start
                frontier.append(pid)
    return found


def _alive(pid: int, start: str) -> bool:
    """The same process (same start time) still exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rpartition(")")[2].split()
    return fields[0] != "Z" and fields[19] == start


class BrowserClient(NodeClient):
    """``node browser_driver.mjs``: one headless Chromium with one page.

    ``call(op, **args)`` runs a driver command and returns its result (an ``AssertionError``
    with the transcript when it failed). Every Chromium process the driver started is
    tracked, and ``close()`` makes sure none survives (SIGKILL after a bounded wait).
    """

    def __init__(self, node: str, scenario: dict[str, Any]) -> None:
        super().__init__(node, BROWSER_DRIVER, scenario)
        self.browser_pids: dict[int, str] = {}
        launched = self.wait_for("launched", timeout=BROWSER_STEP_TIMEOUT * 2)
        self.version = str(launched.get("version"))
        self._track()

    def _track(self) -> None:
        if self.process.poll() is None:
            self.browser_pids.update(_descendants(self.process.pid))

    def call(self, op: str, *, timeout: float = BROWSER_STEP_TIMEOUT, **args: Any) -> Any:
        args.setdefault("timeout_ms", int(timeout * 1000))
        self.command(op, timeout=timeout + 5.0, **args)
        done = self.find("done", seq=self._seq)[0]
        self._track()
        if not done.get("ok"):
            raise AssertionError(
                f"browser command {op} {args} failed: {done.get('error')}\n{self.transcript()}"
            )
        return done.get("result")

    def requests(self) -> list[dict[str, Any]]:
        return self.find("request")

    def problems(self) -> list[dict[str, Any]]:
        """Page errors, console errors and failed requests."""
        return [
            ev
            for ev in self.events
            if ev.get("event") in ("pageerror", "requestfailed")
            or (ev.get("event") == "console" and ev.get("type") == "error")
        ]

    def close(self) -> None:
        self._track()
        process = self.process
        if process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert process.stdin is not None
                process.stdin.close()  # the driver closes the browser and exits on EOF
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(SERVER_STOP_TIMEOUT)
        super().close()
        deadline = time.monotonic() + SERVER_STOP_TIMEOUT
        pause = threading.Event()
        while any(_alive(pid, start) for pid, start in self.browser_pids.items()):
            if time.monotonic() > deadline:
                break
            pause.wait(0.05)  # poll interval, bounded by the deadline above
        leftovers = [pid for pid, start in self.browser_pids.items() if _alive(pid, start)]
        for pid in leftovers:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        if leftovers:
            raise AssertionError(f"Chromium processes outlived the driver (killed): {leftovers}")


@pytest.fixture
def browser(
    request: pytest.FixtureRequest, node_executable: str, chromium_executable: str
) -> Iterator[Callable[..., BrowserClient]]:
    """Factory: ``browser()`` → a ``BrowserClient`` (headless Chromium, one page), closed and
    checked for leftover processes in teardown."""
    clients: list[BrowserClient] = []

    def start(**scenario: Any) -> BrowserClient:
        scenario.setdefault("executable", chromium_executable)
        scenario.setdefault("timeout_ms", 60_000)
        scenario.setdefault("step_timeout_ms", int(BROWSER_STEP_TIMEOUT * 1000))
        if os.environ.get("CABLEWAY_INTEROP_DEBUG"):
            scenario.setdefault("debug", True)
        client = BrowserClient(node_executable, scenario)
        clients.append(client)
        _attach_section(request, f"browser_driver.mjs #{len(clients)}", client.transcript)
        return client

    try:
        yield start
    finally:
        errors: list[BaseException] = []
        for client in clients:
            try:
                client.close()
            except AssertionError as error:
                errors.append(error)
        if errors:
            raise errors[0]


def screenshot_path(request: pytest.FixtureRequest) -> Path:
    """``artifacts/browser/<test name>.png`` (the folder is created; it is git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    return ARTIFACTS / f"{name}.png"


# Packages a static site may serve from node_modules (under /node_modules/<package>/...).
SITE_PACKAGES = (
    "@hotwired/turbo",
    "@hotwired/turbo-rails",
    "@rails/actioncable",
    # @anycable/turbo-stream's page (test_browser_anycable.py); nanoevents is @anycable/core's
    # one dependency
    "@anycable/turbo-stream",
    "@anycable/web",
    "@anycable/core",
    "nanoevents",
)


class StaticSite:
    """A tiny HTTP server on its own 127.0.0.1 port (so: another origin than the Cableway
    server) serving fixed pages plus the files of ``SITE_PACKAGES`` from node_modules."""

    def __init__(self, pages: dict[str, bytes]) -> None:
        self.pages = dict(pages)
        self.log: list[str] = []
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = site.lookup(self.path.partition("?")[0])
                site.log.append(f"GET {self.path} -> {200 if found else 404}")
                if found is None:
                    self.send_error(404)
                    return
                body, content_type = found
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # kept in site.log instead of stderr

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def lookup(self, path: str) -> tuple[bytes, str] | None:
        if path in self.pages:
            return self.pages[path], "text/html; charset=utf-8"
        prefix = "/node_modules/"
        if not path.startswith(prefix):
            return None
        relative = path[len(prefix) :]
        if not any(relative.startswith(f"{package}/") for package in SITE_PACKAGES):
            return None
        file = (NODE_MODULES / relative).resolve()
        if not file.is_relative_to(NODE_MODULES.resolve()) or not file.is_file():
            return None
        content_type = "text/javascript" if file.suffix in (".js", ".mjs") else None
        content_type = content_type or mimetypes.guess_type(file.name)[0] or "text/plain"
        return file.read_bytes(), f"{content_type}; charset=utf-8"

    def describe(self) -> str:
        return f"{self.origin}\n" + "\n".join(self.log)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(SERVER_STOP_TIMEOUT)


@pytest.fixture
def static_site(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[dict[str, bytes]], StaticSite]]:
    """Factory: ``static_site({"/index.html": b"..."})`` → a started ``StaticSite``; stopped
    in teardown."""
    sites: list[StaticSite] = []

    def start(pages: dict[str, bytes]) -> StaticSite:
        site = StaticSite(pages)
        sites.append(site)
        _attach_section(request, f"static site #{len(sites)}", site.describe)
        return site

    try:
        yield start
    finally:
        for site in sites:
            site.stop()
