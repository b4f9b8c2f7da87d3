"""What every session of a node shares, without a driver: the held-message buffer and the
core settings (one home for both drivers)."""

from __future__ import annotations

from cableway.config import Config
from cableway.node.backend import MemoryBackend, NoBackend
from cableway.node.held import HeldMessages
from cableway.node.node import Node
from cableway.node.opening import SessionRules
from cableway.node.rpc import RpcSession
from cableway.node.session import NodeSession
from cableway.protocol.broker import MemoryBroker
from cableway.protocol.connection import CableConnection, SessionSettings
from cableway.protocol.sse import Refusal
from cableway.rpc import ConnectionResponse, Status


def test_release_sends_what_is_newer_than_the_history_in_order() -> None:
    held: HeldMessages[str] = HeldMessages(max_bytes=0)
    for offset, item in [(3, "c"), (4, "d"), (None, "x"), (5, "e")]:
        assert held.hold("id", offset, item, 1)
    assert held.hold("other", 1, "o", 1)
    assert held.release("id", after=4) == ["x", "e"]
    assert "id" not in held
    assert held.size == 1  # what "other" holds
    assert held.release("other", after=None) == ["o"]
    assert held.size == 0


def test_unsubscribing_forgets_what_was_held() -> None:
    held: HeldMessages[bytes] = HeldMessages(max_bytes=100)
    held.hold("id", 1, b"abc", 3)
    assert held.drop("id") == [(1, b"abc")]
    assert held.release("id", after=None) == []
    assert held.size == 0


def test_the_bound_counts_what_is_already_held_and_then_drops_everything() -> None:
    held: HeldMessages[bytes] = HeldMessages(max_bytes=10)
    assert held.hold("a", 1, b"x" * 6, 6)
    assert held.hold("b", 1, b"y" * 6, 6)  # 6 held: within the bound
    assert not held.hold("a", 2, b"z", 1)  # 12 held: over it, the client is too slow
    assert held.size == 0
    assert ("a" in held, "b" in held) == (False, False)


def _rules(
    backend: NoBackend | MemoryBackend, *, native_pings: bool, **options: object
) -> SessionRules:
    config = Config(pong_timeout=4.0, **options)  # type: ignore[arg-type]
    return SessionRules.from_config(config, backend, native_pings=native_pings)


class Counters:
    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def inc(self, name: str, n: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + n

    def delivered(self, broadcasts: int, messages: int, data: int) -> None:
        self.inc("broadcast_msg_total", broadcasts)
        self.inc("server_msg_total", messages)
        self.inc("data_sent_total", data)


def test_sessions_offer_history_presence_and_restore_only_with_a_backend_that_keeps_state() -> None:
    settings = _rules(NoBackend(), native_pings=True).settings(2.5, "ms", extended=True)
    assert (settings.ping_interval, settings.ping_precision, settings.extended) == (2.5, "ms", True)
    assert (settings.pong_timeout, settings.native_pings) == (4.0, True)
    assert (settings.history, settings.presence, settings.resumable) == (False, False, False)
    memory = MemoryBackend(MemoryBroker(epoch="e"))
    settings = _rules(memory, native_pings=False).settings(3, "s", extended=False)
    assert (settings.history, settings.presence, settings.resumable) == (True, True, True)
    assert not settings.native_pings


def test_a_websocket_without_the_required_token_is_rejected_and_counted() -> None:
    rules = _rules(NoBackend(), native_pings=False, jwt_secret="s", enforce_jwt=True)
    opening = rules.websocket_open(
        headers={}, query="", subprotocols=["actioncable-v1-json"], fresh_sid="abc"
    )
    core = rules.websocket_core(opening, now=0.0, ping_jitter=0.0)
    assert isinstance(core, CableConnection)
    metrics = Counters()
    outcome = rules.identify(core, opening, None, now=0.0, unix_time=0.0, metrics=metrics)
    assert outcome.__class__.__name__ == "Rejected"
    assert metrics.values == {"failed_auths_total": 1}


def test_an_event_stream_without_the_required_token_is_refused_with_401_and_counted() -> None:
    rules = _rules(NoBackend(), native_pings=False, jwt_secret="s", enforce_jwt=True)
    metrics = Counters()
    opening = rules.sse_open(
        "GET",
        query="stream=chat",
        headers={},
        body=b"",
        fresh_sid="abc",
        unix_time=0.0,
        metrics=metrics,
    )
    assert isinstance(opening, Refusal)
    assert opening.status == 401
    assert metrics.values == {"failed_auths_total": 1}


def test_a_websocket_from_a_foreign_or_doubled_origin_is_refused_before_the_upgrade() -> None:
    rules = _rules(NoBackend(), native_pings=False, allowed_origins=("example.com",))
    assert rules.origin_refusal([b"https://example.com"]) is None
    assert rules.origin_refusal([b"https://evil.test"]) == (403, b"Forbidden")
    assert rules.origin_refusal([]) == (403, b"Forbidden")
    doubled = [b"https://example.com", b"https://example.com"]
    assert rules.origin_refusal(doubled) == (400, b"Bad Request: several Origin headers")
    assert _rules(NoBackend(), native_pings=False).origin_refusal([b"https://any.test"]) is None


def test_an_event_stream_request_is_screened_by_method_before_its_body_is_read() -> None:
    rules = _rules(NoBackend(), native_pings=False, max_message_size=4096)
    assert rules.sse_request("OPTIONS") == Refusal(200, b"")
    assert rules.sse_request("GET") is None  # a GET's body is not read
    assert rules.sse_request("POST") == 4096
    for method in ("PUT", "DELETE", "PATCH", "get"):
        assert rules.sse_request(method) == Refusal(405, b"Method Not Allowed")


class _Connects:
    """The application's Connect call: records it, answers ``answer``."""

    def __init__(self, answer: ConnectionResponse | None) -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def connect(self, sid: str, request: object) -> ConnectionResponse | None:
        self.asked.append(sid)
        return self.answer

    async def command(self, sid: str, request: object) -> None:
        raise AssertionError("not called")


async def test_opening_a_websocket_asks_the_application_only_when_it_decides() -> None:
    rules = _rules(NoBackend(), native_pings=False)
    for noauth, answer, asked, failed in [
        (False, None, ["abc"], 1),  # the call failed: closed 1011, counted
        (False, ConnectionResponse(status=Status.SUCCESS, identifiers='{"u":1}'), ["abc"], 0),
        (True, None, [], 0),  # --noauth: no Connect, identified by the node
    ]:
        opening = rules.websocket_open(
            headers={}, query="", subprotocols=["actioncable-v1-json"], fresh_sid="abc"
        )
        core = rules.websocket_core(opening, now=0.0, ping_jitter=0.0, delegate=True)
        state = RpcSession("abc", "http://h/cable", {})
        app = _Connects(answer)
        metrics = Counters()
        await rules.open_websocket(
            core,
            opening,
            application=(app, state),
            noauth=noauth,
            clock=lambda: 0.0,
            wall_clock=lambda: 1_700_000_000.0,
            metrics=metrics,
        )
        assert app.asked == asked
        assert metrics.values.get("failed_auths_total", 0) == failed
        assert state.connected is (failed == 0)


def test_a_session_joins_and_leaves_the_node_and_its_kinds_gauge_once() -> None:
    metrics = Counters()
    node: Node[NodeSession[str], object] = Node(
        NoBackend(), metrics, lambda *_: (0, 0), wall_clock=lambda: 0.0
    )

    class Stream(NodeSession[str]):
        wire_kind = "sse"
        gauge = "sse_clients_num"

        def __init__(self) -> None:
            self.node = node
            self.counters = metrics
            self.core = CableConnection(sid="s", settings=SessionSettings(), now=0.0)
            self.sid = "s"
            self.held = HeldMessages(0)
            self.snapshot = None

    session = Stream()
    session.join()
    assert session in node.sessions
    assert metrics.values == {"sse_clients_num": 1}
    session.leave()
    session.leave()  # a second leave changes nothing
    assert not node.sessions
    assert metrics.values == {"sse_clients_num": 0}
