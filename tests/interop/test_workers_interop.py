"""Real clients reconnect to ANOTHER worker (``cableway --workers N``) and lose nothing.

The issue's proof for ``--workers``: the reconnect scenarios of ``test_anycable_reliable.py``
(``@anycable/web`` session restore) and ``test_sse_eventsource.py`` (``EventSource`` with
``Last-Event-ID``) pass when the reconnect lands on another worker.

In production the workers share one listening socket and the kernel picks the worker of each
connection, so which worker a reconnect reaches is luck. Here it is made certain: the hub and
two servers in worker role run in this process (``tests/integration/workers.py``
``hub_and_workers``: each worker on its own port, linked to the hub over a real Unix socket
exactly as a worker process is), on a trio thread, and the client's one URL points at the
``tcp_proxy`` (a load balancer in front of the workers). The proxy forwards to worker A; the
test cuts every forwarded connection (RST both ways, as a network blip or a dying worker looks to
the client), keeps refusing connections while messages are published, then sends the next
connection to worker B (``TcpProxy.retarget``) — and, for the second drop, back to A.

Publications alternate between the workers' broadcast endpoints (``POST /_broadcast`` on A, then
B, then A, ...) in every phase: while the client is connected, while it is away, after it came
back. The clients' behaviour these tests rely on is listed in the docstrings of
``test_anycable_reliable.py`` and ``test_sse_eventsource.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import trio

from cableway.cli import parse_args
from cableway.config import Config
from cableway.transport.server import Server
from cableway.transport.workhub import Hub

from ..integration.workers import hub_and_workers
from .conftest import SERVER_ENV, _attach_section
from .test_anycable_reliable import DROPS as ANYCABLE_DROPS
from .test_anycable_reliable import RECONNECT, run_drops_and_restores
from .test_sse_eventsource import (
    DROPS,
    RECONNECT_TIMEOUT,
    TYPED_EVENTS,
    assert_resumed_exactly_once,
    drop_and_resume,
    text,
)

if TYPE_CHECKING:  # fixtures come from conftest.py; imported for annotations only
    from .conftest import NodeClient, TcpProxy

    ClientFactory = Callable[..., NodeClient]
    ProxyFactory = Callable[[int], TcpProxy]

pytestmark = pytest.mark.interop

T = TypeVar("T")

STREAM = "chat"
WORKERS_START_TIMEOUT = 20.0
WORKERS_STOP_TIMEOUT = 10.0
BROADCAST_TIMEOUT = 10.0
# Public mode, memory broker and SSE: the flags of conftest's "public" mode (broadcasts on the
# main port), through the CLI's own parser. The port is then set to 0 (which the CLI refuses):
# each in-process worker binds a free port of its own.
PUBLIC = [
    "--host", "127.0.0.1",
    "--port", "8080",
    "--public",
    "--broker=memory",
    "--sse",
    "--http_broadcast_port", "8080",
    "--workers", "2",
]  # fmt: skip


def worker_config(argv: list[str]) -> Config:
    config = parse_args(argv, {})
    assert config.workers == 2, config.workers
    assert config.http_broadcast_port == config.port, "broadcasts must share the main port"
    return dataclasses.replace(config, port=0, http_broadcast_port=0)


class _LogLines(logging.Handler):
    """Every ``cableway`` log record of the in-process hub and workers, formatted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self.lines.append(line)
        if record.levelno >= logging.ERROR or record.exc_info:
            self.errors.append(line)


class InProcessWorkers:
    """``hub_and_workers(config, count)`` on a trio thread, driven from the (sync) test.

    ``ports[i]`` is worker i's port (WebSocket, SSE and ``/_broadcast``: public mode serves
    them all on the main port); ``broadcast(stream, data)`` posts each call to the next
    worker in turn (A, B, A, ...), ``accepted[i]`` counts what worker i accepted.
    """

    def __init__(self, config: Config, count: int, log: _LogLines) -> None:
        self.config = config
        self.count = count
        self.log = log
        self.hub: Hub | None = None
        self.servers: list[Server] = []
        self.ports: list[int] = []
        self.accepted = [0] * count
        self.failure: BaseException | None = None
        self._calls = 0
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cableway-workers", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(WORKERS_START_TIMEOUT):
            raise RuntimeError(f"the hub and workers did not start in {WORKERS_START_TIMEOUT}s")
        if self.failure is not None or not self.ports:
            raise RuntimeError(f"the hub and workers did not start: {self.failure!r}")

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as error:  # reported by start() / stop()
            self.failure = error
        finally:
            self._ready.set()

    async def _main(self) -> None:
        async with hub_and_workers(self.config, self.count) as (hub, servers):
            self.hub = hub
            self.servers = servers
            self.ports = [server.main_port for server in servers]
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self._token is not None and self._stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(WORKERS_STOP_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"the hub and workers did not stop in {WORKERS_STOP_TIMEOUT}s")
        if self.failure is not None:
            raise RuntimeError(f"the hub and workers failed: {self.failure!r}") from self.failure

    # -- test API ----------------------------------------------------------------------------

    def error_lines(self) -> list[str]:
        """Log lines of the hub and workers at error level or with a traceback."""
        return list(self.log.errors)

    def on_trio(self, function: Callable[[], T]) -> T:
        """``function()`` called on the trio thread (the hub's and workers' state is theirs)."""
        assert self._token is not None
        return trio.from_thread.run_sync(function, trio_token=self._token)

    def session_counts(self) -> list[int]:
        """Live sessions per worker."""
        return self.on_trio(lambda: [len(server.sessions) for server in self.servers])

    def wait_until(self, what: str, predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
        """Poll ``predicate`` (on the trio thread) until it holds; bounded by ``timeout``."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while not self.on_trio(predicate):
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout}s: {what}")
            pause.wait(0.02)  # poll interval, bounded by the deadline above

    def wait_sessions(self, expected: list[int], *, timeout: float = 5.0) -> None:
        self.wait_until(
            f"sessions per worker {expected} (now {self.session_counts()})",
            lambda: [len(server.sessions) for server in self.servers] == expected,
            timeout=timeout,
        )

    def shut_down(self, worker: int) -> None:
        """Begin worker ``worker``'s graceful shutdown (what SIGTERM does to a worker process)."""
        self.on_trio(self.servers[worker].shutdown)

    def broadcast(
        self,
        stream: str,
        data: str,
        *,
        timeout: float = BROADCAST_TIMEOUT,
        worker: int | None = None,
    ) -> int:
        """POST a publication to ``worker``'s /_broadcast (default: the next worker in turn);
        returns the HTTP status."""
        if worker is None:
            worker = self._calls % self.count
            self._calls += 1
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ports[worker]}/_broadcast",
            data=json.dumps({"stream": stream, "data": data}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as error:
            error.close()
            status = int(error.code)
        if status == 201:
            self.accepted[worker] += 1
        return status


@pytest.fixture
def workers(request: pytest.FixtureRequest) -> Iterator[Callable[[list[str]], InProcessWorkers]]:
    """Factory: ``workers(argv)`` → a hub and two in-process workers configured by ``argv``
    (the CLI's flags); stopped in teardown. Their log is in the failure report."""
    if os.environ.get(SERVER_ENV, "").strip():
        pytest.skip(f"Cableway's own hub and workers run in process ({SERVER_ENV}: another server)")
    handler = _LogLines()
    logger = logging.getLogger("cableway")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    _attach_section(request, "in-process hub and workers log", lambda: "\n".join(handler.lines))
    started: list[InProcessWorkers] = []

    def start(argv: list[str]) -> InProcessWorkers:
        node = InProcessWorkers(worker_config(argv), count=2, log=handler)
        started.append(node)
        node.start()
        return node

    try:
        yield start
    finally:
        try:
            for node in started:
                node.stop()
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)


class Balancer:
    """The proxy as a load balancer: ``restore()`` sends the next connection to the other
    worker (A, then B, then A, ...); ``cut()`` is a network failure on the live connection."""

    def __init__(self, proxy: TcpProxy, ports: list[int]) -> None:
        self.proxy = proxy
        self.ports = ports
        self.current = 0
        proxy.retarget(ports[0])

    def cut(self) -> None:
        self.proxy.cut()

    def restore(self) -> None:
        self.current = (self.current + 1) % len(self.ports)
        self.proxy.retarget(self.ports[self.current])
        self.proxy.restore()


def chat_through_balancer(
    workers: Callable[[list[str]], InProcessWorkers],
    tcp_proxy: ProxyFactory,
    anycable_client: ClientFactory,
) -> tuple[InProcessWorkers, Balancer, Any]:
    """Two workers behind the balancer (sending to worker A), and an ``@anycable/web``
    client connected through it to the channel ``chat``."""
    node = workers(PUBLIC)
    proxy = tcp_proxy(node.ports[0])
    balancer = Balancer(proxy, node.ports)
    client = anycable_client(
        url=f"ws://127.0.0.1:{proxy.port}/cable",
        streams=[{"name": "chat", "stream": STREAM}],
        reconnect=RECONNECT,
    )
    client.wait_for("channel_connect", name="chat")
    return node, balancer, client


def test_anycable_web_restores_its_session_on_another_worker(
    workers: Callable[[list[str]], InProcessWorkers],
    tcp_proxy: ProxyFactory,
    anycable_client: ClientFactory,
) -> None:
    # `cable.streamFrom("chat")` through the balancer, connected to worker A. Twice: the network
    # fails mid-stream (broadcasts flowing, alternately accepted by A and B), more is published
    # (through A and B) while the balancer refuses connections, then the client comes back by its
    # own backoff with ?sid= — on the OTHER worker (A → B, then B → A: the second restore is of a
    # session restored on another worker). Everything test_anycable_reliable.py asserts holds:
    # restored: true with the old identifier, no re-subscribe, `history` from the last position
    # seen, exactly the missed offsets replayed, then live; the app sees 1..N once, in order.
    node, balancer, client = chat_through_balancer(workers, tcp_proxy, anycable_client)
    a, b = node.ports
    node.wait_sessions([1, 0])

    run_drops_and_restores(node, balancer, client, drop=balancer.cut)  # type: ignore[arg-type]

    # Each connection went to the worker the balancer chose: A, B, A.
    assert balancer.proxy.forwarded_to == [(a, b)[i % 2] for i in range(ANYCABLE_DROPS + 1)], (
        balancer.proxy.describe()
    )
    # Both workers accepted publications (alternately), in every phase.
    assert min(node.accepted) > 0, node.accepted
    assert sum(node.accepted) == len(client.find("message", name="chat"))


def test_eventsource_resumes_from_last_event_id_on_another_worker(
    workers: Callable[[list[str]], InProcessWorkers],
    tcp_proxy: ProxyFactory,
    sse_client: ClientFactory,
) -> None:
    # GET /events?stream=chat through the balancer, served by worker A. Twice: the network fails
    # mid-stream (broadcasts flowing through A and B), more is published while the balancer
    # refuses connections, then EventSource reconnects by itself (3 s) with `Last-Event-ID` = the
    # last id it saw — served by the OTHER worker (A → B, then B → A), which replays exactly what
    # followed that id (`confirm_history`). As in test_sse_eventsource.py: `onmessage` sees 1..N
    # exactly once, in order, with one offset sequence and one epoch across the workers.
    node = workers(PUBLIC)
    a, b = node.ports
    proxy = tcp_proxy(a)
    balancer = Balancer(proxy, node.ports)
    client = sse_client(
        url=f"http://127.0.0.1:{proxy.port}/events?stream={STREAM}", events=TYPED_EVENTS
    )
    client.wait_for("typed", type="confirm_subscription")
    node.wait_sessions([1, 0])

    def broadcast_text(n: int) -> None:
        status = node.broadcast(STREAM, json.dumps(text(n)), timeout=BROADCAST_TIMEOUT)
        assert status == 201, f"broadcast {n}: HTTP {status}"

    def served_by_the_other_worker(round_no: int) -> None:
        # the reconnection is served by the other worker (and the old one let the dead one go)
        node.wait_sessions([1, 0] if round_no % 2 == 0 else [0, 1])

    total, last_ids_before_drop = drop_and_resume(
        client,
        broadcast_text,
        cut=balancer.cut,
        restore=balancer.restore,
        after_restore=served_by_the_other_worker,
    )
    # Each request went to the worker the balancer chose: A, B, A (refused attempts never reach
    # a worker). Counted before close(): on close() Node's fetch opens one more connection to the
    # balancer and sends nothing on it (seen in the proxy's byte log; no request is reported).
    assert balancer.proxy.forwarded_to == [(a, b)[i % 2] for i in range(DROPS + 1)], (
        balancer.proxy.describe()
    )
    client.command("close")
    assert client.wait_exit() == 0
    idle = client.wait_for("idle_exit")

    # Every message exactly once, in order; each reconnection carried the last id seen
    # before its drop (the single-server test's assertions)
    assert_resumed_exactly_once(client, total, last_ids_before_drop, idle)
    assert min(node.accepted) > 0, node.accepted
    assert node.error_lines() == []


def test_anycable_web_resubscribes_with_its_positions_on_another_worker_after_server_restart(
    workers: Callable[[list[str]], InProcessWorkers],
    tcp_proxy: ProxyFactory,
    anycable_client: ClientFactory,
) -> None:
    # The other way a client leaves a worker: the worker shuts down gracefully (what the
    # supervisor's SIGTERM or a replaced worker does) and tells it
    # `{"type":"disconnect","reason":"server_restart","reconnect":true}`. Relies on
    # (`@anycable/core` 1.1.7): on a `disconnect` message the extended protocol forgets its
    # session id (no ?sid= next time: no restore), the cable reconnects by its backoff and
    # re-subscribes each channel with `history: {since, streams: {<stream>: {epoch, offset}}}`
    # (its last position per stream); it does not deduplicate. The balancer refuses connections
    # until worker A is gone and messages were published through B, then sends the reconnection
    # to B, which must confirm the subscription and replay exactly what was missed, once, in order.
    node, balancer, client = chat_through_balancer(workers, tcp_proxy, anycable_client)
    a, b = node.ports
    identifier = client.wait_for("channel_created", name="chat")["identifier"]

    def payload(n: int) -> dict[str, Any]:
        return {"n": n, "text": f"message {n}"}

    def broadcast(n: int, worker: int | None = None) -> None:
        status = node.broadcast(STREAM, json.dumps(payload(n)), worker=worker)
        assert status == 201, f"broadcast {n}: HTTP {status}"

    for n in range(1, 6):  # through A, B, A, ...
        broadcast(n)
    client.wait_for("message", name="chat", message=payload(5))

    balancer.proxy.hold()  # the reconnection waits until A is gone and the "away" messages are out
    node.shut_down(0)
    restart = client.wait_frame(lambda f: f.get("type") == "disconnect")
    assert restart["data"] == {"type": "disconnect", "reason": "server_restart", "reconnect": True}
    client.wait_for("socket_close", socket=1)
    hub = node.hub
    assert hub is not None
    node.wait_until("worker A left the hub", lambda: len(hub.joined) == 1)
    for n in range(6, 11):  # while away: only B is left
        broadcast(n, worker=1)
    balancer.restore()  # to B

    client.wait_for("message", name="chat", message=payload(10), timeout=RECONNECT_TIMEOUT)
    node.wait_sessions([0, 1])
    for n in range(11, 16):
        broadcast(n, worker=1)
    client.wait_for("message", name="chat", message=payload(15))
    assert client.disconnect() == 0

    events = client.find("message", name="chat")
    assert [ev["message"] for ev in events] == [payload(n) for n in range(1, 16)]
    metas = [ev["meta"] for ev in events]
    assert [m["offset"] for m in metas] == list(range(1, 16)), metas
    assert {m["epoch"] for m in metas} == {metas[0]["epoch"]}

    # How: a fresh session on B (no sid: the client forgot it), a subscribe carrying the
    # position of the last message seen on A, the missed offsets replayed, then live.
    assert balancer.proxy.forwarded_to == [a, b], balancer.proxy.describe()
    second = client.find("socket_created", socket=2)[0]["url"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(second).query, keep_blank_values=True)
    assert query.get("sid", [""]) == [""], second  # the library sets it to "" (setSessionId(''))
    welcome = client.find("frame", socket=2)[0]["data"]
    assert welcome["type"] == "welcome", welcome
    assert not welcome.get("restored"), welcome
    subscribes = [s["data"] for s in client.find("sent", socket=2)]
    subscribes = [s for s in subscribes if s.get("command") == "subscribe"]
    assert len(subscribes) == 1, subscribes
    assert subscribes[0]["identifier"] == identifier
    assert subscribes[0]["history"]["streams"] == {
        STREAM: {"epoch": metas[0]["epoch"], "offset": 5}
    }, subscribes
    frames = [ev["data"] for ev in client.find("frame", socket=2)]
    confirm = next(i for i, f in enumerate(frames) if f.get("type") == "confirm_subscription")
    history_end = next(i for i, f in enumerate(frames) if f.get("type") == "confirm_history")
    assert confirm < history_end, frames
    assert [f["offset"] for f in frames[confirm:history_end] if "offset" in f] == list(
        range(6, 11)
    ), frames
    assert [f["offset"] for f in frames[history_end:] if "offset" in f] == list(range(11, 16))
    assert not client.find("timeout")
    assert node.error_lines() == []
