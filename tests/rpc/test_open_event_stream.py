"""``cableway.node.rpc.open_event_stream``: the opening of an event stream with the
application in the loop (AnyCable-Go's ``sse/handler.go``), driven with a scripted caller:
which calls are made, in which order, and what each answer means for the stream."""

from __future__ import annotations

import json
from typing import Any

from cableway.node.rpc import RpcSession, open_event_stream
from cableway.protocol.channels import StreamPolicy
from cableway.protocol.connection import CableConnection, SessionSettings, SessionState
from cableway.protocol.events import SendMessage, StreamAdded
from cableway.protocol.sse import SseOpen
from cableway.rpc import (
    CommandMessage,
    CommandResponse,
    ConnectionRequest,
    ConnectionResponse,
    Status,
)

IDENT = '{"channel":"chat","room":"42"}'
OTHER = '{"channel":"chat","room":"7"}'
PUBLIC = '{"channel":"$pubsub","stream_name":"news"}'
POLICY = StreamPolicy(public_streams=True)
WELCOME = '{"type":"welcome","sid":"s1"}'


class Caller:
    """Answers from a script; records the calls."""

    def __init__(
        self, connect: ConnectionResponse | None, commands: dict[str, CommandResponse | None]
    ) -> None:
        self.connect_answer = connect
        self.commands = commands
        self.calls: list[tuple[str, str]] = []

    async def connect(self, sid: str, request: ConnectionRequest) -> ConnectionResponse | None:
        self.calls.append(("connect", sid))
        return self.connect_answer

    async def command(self, sid: str, request: CommandMessage) -> CommandResponse | None:
        self.calls.append((request.command, request.identifier))
        return self.commands[request.identifier]


def confirmed(identifier: str, stream: str) -> CommandResponse:
    return CommandResponse(
        status=Status.SUCCESS,
        streams=[stream],
        transmissions=[json.dumps({"identifier": identifier, "type": "confirm_subscription"})],
    )


ACCEPTED = ConnectionResponse(status=Status.SUCCESS, identifiers='{"u":1}', transmissions=[WELCOME])


def opening(*identifiers: str, token: str | None = None) -> SseOpen:
    commands = tuple({"command": "subscribe", "identifier": i} for i in identifiers)
    return SseOpen("s1", "", commands, unwrap=True, raw=False, ping_interval=3.0,
                   ping_precision="s", token=token)  # fmt: skip


def stream() -> tuple[RpcSession, CableConnection]:
    core = CableConnection(sid="s1", settings=SessionSettings(delegate=True, policy=POLICY), now=0)
    return RpcSession("s1", "http://localhost/events", {"REMOTE_ADDR": "127.0.0.1"}), core


async def open_with(caller: Caller, request: SseOpen, *, connect: bool = True) -> Any:
    state, core = stream()
    refusal = await open_event_stream(
        caller, state, core, request, connect=connect, policy=POLICY, now=0.0
    )
    return refusal, state, core


async def test_connect_then_each_subscription_in_order() -> None:
    caller = Caller(ACCEPTED, {IDENT: confirmed(IDENT, "room:42"), OTHER: confirmed(OTHER, "r7")})

    refusal, state, core = await open_with(caller, opening(IDENT, PUBLIC, OTHER, IDENT))

    assert refusal is None
    # the public stream is the server's own; the repeated identifier is subscribed once
    assert caller.calls == [("connect", "s1"), ("subscribe", IDENT), ("subscribe", OTHER)]
    assert core.state is SessionState.OPEN
    assert PUBLIC in core.subscriptions
    assert set(state.channels) == {IDENT, OTHER}
    events = core.events()
    sent = [json.loads(e.text) for e in events if isinstance(e, SendMessage)]
    assert sent[0] == json.loads(WELCOME)  # the application's welcome, first
    assert {"identifier": IDENT, "type": "confirm_subscription"} in sent
    assert StreamAdded(IDENT, "room:42") in events


async def test_a_rejected_client_is_401_and_nothing_is_subscribed() -> None:
    rejected = ConnectionResponse(status=Status.FAILURE, transmissions=[])
    caller = Caller(rejected, {})

    refusal, state, _ = await open_with(caller, opening(IDENT))

    assert (refusal.status, caller.calls) == (401, [("connect", "s1")])
    assert state.disconnect_request() is None  # never connected: no Disconnect


async def test_a_failed_connect_is_400() -> None:
    refusal, _, _ = await open_with(Caller(None, {}), opening(IDENT))

    assert refusal.status == 400


async def test_a_rejected_subscription_is_400_and_a_disconnect_is_due() -> None:
    reject = CommandResponse(status=Status.FAILURE, transmissions=[])
    caller = Caller(ACCEPTED, {IDENT: reject, OTHER: confirmed(OTHER, "r7")})

    refusal, state, _ = await open_with(caller, opening(IDENT, OTHER))

    assert refusal.status == 400
    assert caller.calls == [("connect", "s1"), ("subscribe", IDENT)]  # stops at the first
    assert state.disconnect_request() is not None


async def test_a_failed_command_is_400() -> None:
    refusal, _, _ = await open_with(Caller(ACCEPTED, {IDENT: None}), opening(IDENT))

    assert refusal.status == 400


async def test_without_connect_the_tokens_identifiers_are_taken() -> None:
    caller = Caller(None, {IDENT: confirmed(IDENT, "room:42")})
    request = SseOpen("s1", '{"u":2}', ({"command": "subscribe", "identifier": IDENT},),
                      unwrap=True, raw=False, ping_interval=3.0, ping_precision="s",
                      token="t")  # fmt: skip

    refusal, state, core = await open_with(caller, request, connect=False)

    assert refusal is None
    assert caller.calls == [("subscribe", IDENT)]  # no Connect
    assert core.identifiers == '{"u":2}'
    assert state.command_request("message", IDENT, "{}").connection_identifiers == '{"u":2}'
