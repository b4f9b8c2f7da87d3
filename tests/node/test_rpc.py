"""The RPC rules of the node layer (rpc.md §4), driven with plain calls: requests built as
AnyCable-Go builds them (the spec's §6 vectors), answers applied in its order."""

from __future__ import annotations

import itertools
import json
from collections import deque

import trio
import trio.testing

from cableway.node.registry import Registry
from cableway.node.rpc import (
    RpcSession,
    answer_delegated,
    connect_needed,
    release_delegated,
    request_url,
)
from cableway.protocol.connection import CableConnection, SessionSettings, SessionState
from cableway.protocol.events import (
    CloseConnection,
    CommandIgnored,
    Delegate,
    SendMessage,
    StreamAdded,
    StreamRemoved,
)
from cableway.protocol.handshake import AuthPolicy
from cableway.rpc import (
    CommandMessage,
    CommandResponse,
    ConnectionResponse,
    DisconnectRequest,
    EnvResponse,
    Status,
)
from cableway.transport.rpc_client import DisconnectQueue

URL = "http://localhost:8080/cable?user=alice"
HEADERS = {"REMOTE_ADDR": "127.0.0.1", "cookie": "_session_id=abc"}
IDENT = '{"channel":"chat","room":"42"}'
WELCOME = '{"type":"welcome","sid":"s1d-test"}'


def session(mode: str = "auto") -> tuple[RpcSession, CableConnection]:
    core = CableConnection(sid="s1d-test", settings=SessionSettings(delegate=True), now=0.0)
    return RpcSession("s1d-test", URL, dict(HEADERS), disconnect_mode=mode), core


def connected(mode: str = "auto") -> tuple[RpcSession, CableConnection]:
    state, core = session(mode)
    answer = ConnectionResponse(
        status=Status.SUCCESS,
        identifiers='{"user":"alice"}',
        transmissions=[WELCOME],
        env=EnvResponse(cstate={"visits": "1"}),
    )
    state.apply_connect(core, answer)
    core.events()
    return state, core


def test_connect_request_is_the_spec_vector() -> None:
    state, _ = session()
    assert json.loads(state.connect_request().to_json()) == {
        "env": {"url": URL, "headers": HEADERS}
    }


def test_accepted_connect_sends_the_apps_transmissions_and_no_welcome_of_its_own() -> None:
    state, core = session()
    answer = ConnectionResponse(
        status=Status.SUCCESS, identifiers='{"user":"alice"}', transmissions=[WELCOME]
    )
    assert state.apply_connect(core, answer) is Status.SUCCESS
    assert core.events() == [SendMessage(WELCOME)]
    assert core.state is SessionState.OPEN
    assert core.identifiers == '{"user":"alice"}'


def test_rejected_connect_sends_the_rejection_then_closes_1000() -> None:
    state, core = session()
    rejection = '{"type":"disconnect","reason":"unauthorized","reconnect":false}'
    answer = ConnectionResponse(status=Status.FAILURE, transmissions=[rejection])
    assert state.apply_connect(core, answer) is Status.FAILURE
    assert core.events() == [SendMessage(rejection), CloseConnection(1000, "Auth Failed")]
    assert state.disconnect_request() is None  # never connected: no Disconnect


def test_failed_or_error_connect_sends_nothing_and_closes_1011() -> None:
    for answer in (None, ConnectionResponse(status=Status.ERROR, transmissions=[WELCOME])):
        state, core = session()
        state.apply_connect(core, answer)
        assert core.events() == [CloseConnection(1011, "Auth Error")]


def test_command_requests_carry_identifiers_cstate_and_the_flat_istate() -> None:
    state, core = connected()
    subscribe = state.command_request("subscribe", IDENT)
    assert subscribe is not None
    assert json.loads(subscribe.to_json()) == {
        "command": "subscribe",
        "identifier": IDENT,
        "connection_identifiers": '{"user":"alice"}',
        "env": {"url": URL, "headers": HEADERS, "cstate": {"visits": "1"}},
    }
    state.apply_command(
        core, subscribe, CommandResponse(status=Status.SUCCESS, streams=["room:42"])
    )
    assert core.events() == [StreamAdded(IDENT, "room:42")]
    data = '{"action":"remember","message":"hi"}'
    message = state.command_request("message", IDENT, data)
    assert message is not None
    state.apply_command(
        core,
        message,
        CommandResponse(status=Status.SUCCESS, env=EnvResponse(istate={"last": "hi"})),
    )
    again = state.command_request("message", IDENT, data)
    assert again is not None
    assert json.loads(again.to_json())["env"]["istate"] == {"last": "hi"}
    disconnect = state.disconnect_request()
    assert disconnect is not None
    assert json.loads(disconnect.to_json()) == {
        "identifiers": '{"user":"alice"}',
        "subscriptions": [IDENT],
        "env": {
            "url": URL,
            "headers": HEADERS,
            "cstate": {"visits": "1"},
            "istate": {IDENT: '{"last":"hi"}'},
        },
    }


def test_no_command_for_a_double_subscribe_or_an_unknown_unsubscribe() -> None:
    state, core = connected()
    assert state.command_request("unsubscribe", IDENT) is None
    assert state.command_request("message", IDENT, "{}") is None
    request = state.command_request("subscribe", IDENT)
    assert request is not None
    state.apply_command(core, request, CommandResponse(status=Status.SUCCESS))
    assert state.command_request("subscribe", IDENT) is None


def test_answer_order_stop_streams_then_streams_then_transmissions_then_disconnect() -> None:
    state, core = connected()
    subscribe = state.command_request("subscribe", IDENT)
    assert subscribe is not None
    state.apply_command(core, subscribe, CommandResponse(status=Status.SUCCESS, streams=["a", "b"]))
    core.events()
    message = state.command_request("message", IDENT, "{}")
    assert message is not None
    answer = CommandResponse(
        status=Status.SUCCESS,
        stop_streams=True,
        stopped_streams=["ignored"],
        streams=["c"],
        transmissions=["t1", "t2"],
        disconnect=True,
    )
    state.apply_command(core, message, answer)
    events = core.events()
    assert events[:3] == [
        StreamRemoved(IDENT, "a"),
        StreamRemoved(IDENT, "b"),
        StreamAdded(IDENT, "c"),
    ]
    assert events[3:5] == [SendMessage("t1"), SendMessage("t2")]
    assert events[-1] == CloseConnection(1011, "Command Failed")


def test_rejected_subscribe_keeps_no_stream_and_no_state() -> None:
    state, core = connected()
    request = state.command_request("subscribe", IDENT)
    assert request is not None
    reject = f'{{"identifier":{json.dumps(IDENT)},"type":"reject_subscription"}}'
    answer = CommandResponse(
        status=Status.FAILURE,
        streams=["leak"],
        transmissions=[reject],
        env=EnvResponse(istate={"k": "v"}),
    )
    state.apply_command(core, request, answer)
    assert core.events() == [SendMessage(reject)]
    assert state.channels == {}
    assert state.istate == {}


def test_a_failed_command_sends_nothing_and_changes_nothing() -> None:
    state, core = connected()
    request = state.command_request("subscribe", IDENT)
    assert request is not None
    for answer in (None, CommandResponse(status=Status.ERROR, transmissions=["x"], streams=["s"])):
        assert state.apply_command(core, request, answer) is Status.ERROR
        assert core.events() == []
    assert state.channels == {}


def test_unsubscribe_stops_every_stream_even_on_failure() -> None:
    state, core = connected()
    request = state.command_request("subscribe", IDENT)
    assert request is not None
    state.apply_command(core, request, CommandResponse(status=Status.SUCCESS, streams=["s"]))
    core.events()
    unsubscribe = state.command_request("unsubscribe", IDENT)
    assert unsubscribe is not None
    state.apply_command(core, unsubscribe, CommandResponse(status=Status.FAILURE))
    assert core.events() == [StreamRemoved(IDENT, "s")]
    assert state.channels == {}


def test_disconnect_modes() -> None:
    state, _ = session("auto")
    state.identified('{"sid":"x"}')  # JWT/noauth: no interest until an RPC result
    assert state.disconnect_request() is None
    assert connected("auto")[0].disconnect_request() is not None
    always, _ = session("always")
    always.identified("{}")
    assert always.disconnect_request() is not None
    assert connected("never")[0].disconnect_request() is None


def test_connect_is_skipped_for_jwt_noauth_and_restored_sessions() -> None:
    jwt = AuthPolicy(jwt_secret="k")
    assert connect_needed(None, jwt, noauth=False, restored=False)
    assert not connect_needed("token", jwt, noauth=False, restored=False)
    assert connect_needed("token", AuthPolicy(), noauth=False, restored=False)  # JWT off
    assert not connect_needed(None, jwt, noauth=True, restored=False)
    assert not connect_needed(None, jwt, noauth=False, restored=True)


def test_the_core_delegates_only_application_channels_when_asked() -> None:
    core = CableConnection(sid="s", settings=SessionSettings(delegate=True), now=0.0)
    core.accept("{}")
    core.events()
    core.receive_message(json.dumps({"command": "subscribe", "identifier": IDENT}), now=0.0)
    data = {"command": "message", "identifier": IDENT, "data": '{"action":"x"}'}
    core.receive_message(json.dumps(data), now=0.0)
    bad = {"command": "message", "identifier": IDENT, "data": {"action": "x"}}
    core.receive_message(json.dumps(bad), now=0.0)
    pubsub = '{"channel":"$pubsub","stream_name":"x"}'
    core.receive_message(json.dumps({"command": "subscribe", "identifier": pubsub}), now=0.0)
    events = core.events()
    core.delegated_answered()  # each waits for the answer before it (answer_delegated)
    events += core.events()
    core.delegated_answered()
    events += core.events()
    assert events[0] == Delegate("subscribe", IDENT)
    assert events[1] == Delegate("message", IDENT, '{"action":"x"}')
    assert isinstance(events[2], CommandIgnored)
    assert events[3] == SendMessage(
        f'{{"type":"reject_subscription","identifier":{json.dumps(pubsub)}}}'
    )
    plain = CableConnection(sid="s", settings=SessionSettings(), now=0.0)
    plain.accept("{}")
    plain.events()
    plain.receive_message(json.dumps({"command": "subscribe", "identifier": IDENT}), now=0.0)
    assert [type(e) for e in plain.events()] == [SendMessage]  # rejected, as before


async def test_disconnect_queue_holds_the_rate_for_a_mass_disconnect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    started: list[float] = []

    async def call(sid: str, request: DisconnectRequest) -> None:
        started.append(trio.current_time())
        await trio.sleep(1.0)  # a slow application does not slow the rate down

    queue = DisconnectQueue(call, rate=100)
    for n in range(1000):
        assert queue.enqueue(f"s{n}", DisconnectRequest())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue.run)
        await trio.sleep(5.0)
        # 100 per second: calls start 10 ms apart, never faster
        assert 490 <= len(started) <= 501
        gaps = [b - a for a, b in itertools.pairwise(started)]
        assert min(gaps) >= 0.01 - 1e-9
        await queue.finish()  # shutdown: the rest start at once
    assert len(started) == 1000


def test_a_full_disconnect_queue_drops_rather_than_blocks() -> None:
    async def call(sid: str, request: DisconnectRequest) -> None:
        return None

    queue = DisconnectQueue(call, rate=1, backlog=2)
    assert queue.enqueue("a", DisconnectRequest())
    assert queue.enqueue("b", DisconnectRequest())
    assert not queue.enqueue("c", DisconnectRequest())


def test_a_resumable_sessions_snapshot_carries_the_app_channels_and_state() -> None:
    from cableway.protocol.events import SessionChanged
    from cableway.transport.redis_broker import _dump_snapshot, _load_snapshot

    settings = SessionSettings(delegate=True, extended=True, resumable=True)
    core = CableConnection(sid="s1", settings=settings, now=0.0)
    state = RpcSession("s1", URL, dict(HEADERS))
    answer = ConnectionResponse(
        status=Status.SUCCESS, identifiers='{"u":1}', env=EnvResponse(cstate={"v": "1"})
    )
    state.apply_connect(core, answer)
    request = state.command_request("subscribe", IDENT)
    assert request is not None
    state.apply_command(
        core,
        request,
        CommandResponse(status=Status.SUCCESS, streams=["r"], env=EnvResponse(istate={"k": "x"})),
    )
    snapshots = [e.snapshot for e in core.events() if isinstance(e, SessionChanged)]
    snapshot = snapshots[-1]
    assert snapshot.delegated == (IDENT,)
    assert _load_snapshot(_dump_snapshot(snapshot).encode()) == snapshot  # through Redis
    # restored: no Connect; identifiers, state and streams come back
    again = CableConnection(sid="s2", settings=settings, now=0.0)
    again.restore(snapshot)
    restored = RpcSession("s2", URL, dict(HEADERS))
    restored.identified(snapshot.identifiers)
    restored.restore(again, snapshot)
    events = again.events()
    assert '"restored_ids":["{\\"channel\\":\\"chat\\",\\"room\\":\\"42\\"}"]' in events[0].text  # type: ignore[union-attr]
    assert StreamAdded(IDENT, "r") in events
    assert (restored.cstate, restored.istate) == ({"v": "1"}, {IDENT: {"k": "x"}})
    assert restored.disconnect_request() is not None


class _Delegating:
    """A driver's session as answer_delegated sees it (no sockets)."""

    def __init__(self, core: CableConnection) -> None:
        self.sid = core.sid
        self.core = core
        self.closing = False
        self.ignored: list[str] = []
        self.applied = 0

    def command_ignored(self, command: str, detail: str) -> None:
        self.ignored.append(command)

    def apply(self) -> None:
        self.applied += 1


class _App:
    """The application: records the calls; ``close_on`` closes the session meanwhile."""

    def __init__(self, session: _Delegating, close_on: int | None = None) -> None:
        self.session = session
        self.close_on = close_on
        self.calls: list[str] = []

    async def connect(self, sid: str, request: object) -> None:
        raise AssertionError("not called")

    async def command(self, sid: str, request: CommandMessage) -> CommandResponse:
        self.calls.append(f"{request.command}:{request.identifier}")
        if self.close_on is not None and len(self.calls) == self.close_on:
            self.session.closing = True  # the client went away while the app answered
        return CommandResponse(status=Status.SUCCESS, streams=["room"])


async def test_delegated_commands_are_asked_in_order_and_stop_once_the_session_closes() -> None:
    state, core = connected()
    session = _Delegating(core)
    app = _App(session)
    other = '{"channel":"chat","room":"43"}'
    pending = deque(
        [
            Delegate("subscribe", IDENT, ""),
            Delegate("subscribe", IDENT, ""),  # already subscribed: no call
            Delegate("subscribe", other, ""),
        ]
    )
    await answer_delegated(app, state, session, pending)
    assert app.calls == [f"subscribe:{IDENT}", f"subscribe:{other}"]
    assert session.ignored == ["subscribe"]
    # every command is followed by applying what the core did next (the commands after it)
    assert (session.applied, set(state.channels)) == (3, {IDENT, other})

    state, core = connected()
    session = _Delegating(core)
    app = _App(session, close_on=1)
    pending = deque([Delegate("subscribe", IDENT, ""), Delegate("subscribe", other, "")])
    await answer_delegated(app, state, session, pending)
    assert app.calls == [f"subscribe:{IDENT}"]  # nothing more is asked for a closed session
    assert session.applied == 0  # and the answer that came late is discarded
    assert state.channels == {}


def test_a_released_session_leaves_the_registry_and_queues_its_disconnect() -> None:
    state, core = connected()
    state.apply_command(
        core,
        CommandMessage(command="subscribe", identifier=IDENT),
        CommandResponse(status=Status.SUCCESS, streams=["room"]),
    )
    registry: Registry[str] = Registry()
    registry.add("room", IDENT, "me")
    queued: list[tuple[str, DisconnectRequest]] = []

    class Sink:
        def enqueue(self, sid: str, request: DisconnectRequest) -> None:
            queued.append((sid, request))

    release_delegated(registry, "me", state, Sink())
    assert len(registry) == 0
    assert [sid for sid, _ in queued] == ["s1d-test"]


def test_env_url_is_http_host_path_and_query_with_a_default_host() -> None:
    assert request_url("example.com:8080", "/cable", "a=1", default_host="h") == (
        "http://example.com:8080/cable?a=1"
    )
    assert request_url(None, "/cable", "", default_host="localhost") == "http://localhost/cable"
    assert request_url("", "/x/cable", "", default_host="0.0.0.0") == "http://0.0.0.0/x/cable"
