"""The extended protocol on application channels (rpc.md §2.2, §4.4, §4.6 step 7): the
node's rules driven with plain calls. A channel's istate ``$w`` names the stream its
client whispers to, ``$p`` the stream of its presence set, and a Command answer's
``presence`` joins or leaves it, as AnyCable-Go does (node/node.go ``Whisper``,
``handlePresenceReply``)."""

from __future__ import annotations

import json

from cableway.node.rpc import RpcSession
from cableway.protocol.broker import SessionSnapshot
from cableway.protocol.connection import CableConnection, SessionSettings
from cableway.protocol.events import (
    CommandIgnored,
    Delegate,
    Event,
    PresenceRequest,
    Publish,
    SendMessage,
)
from cableway.rpc import (
    CommandResponse,
    ConnectionResponse,
    EnvResponse,
    PresenceResponse,
    Status,
)

IDENT = '{"channel":"chat","room":"42"}'
CONFIRM = json.dumps({"identifier": IDENT, "type": "confirm_subscription"})


def connected(*, presence: bool = True) -> tuple[RpcSession, CableConnection]:
    settings = SessionSettings(delegate=True, presence=presence, extended=True)
    core = CableConnection(sid="s1", settings=settings, now=0.0)
    state = RpcSession("s1", "http://localhost/cable", {})
    answer = ConnectionResponse(status=Status.SUCCESS, identifiers='{"user":"alice"}')
    state.apply_connect(core, answer)
    core.events()
    return state, core


def subscribe(
    state: RpcSession, core: CableConnection, answer: CommandResponse, identifier: str = IDENT
) -> list[Event]:
    request = state.command_request("subscribe", identifier)
    assert request is not None
    state.apply_command(core, request, answer)
    core.delegated_answered()  # as the driver does (answer_delegated)
    return core.events()


def command(core: CableConnection, **message: object) -> list[Event]:
    core.receive_message(json.dumps({"identifier": IDENT, **message}), now=1.0)
    return core.events()


def ok(**fields: object) -> CommandResponse:
    return CommandResponse(status=Status.SUCCESS, transmissions=[CONFIRM], **fields)  # type: ignore[arg-type]


def test_a_whisper_goes_to_the_stream_named_by_w_except_the_sender() -> None:
    state, core = connected()
    subscribe(state, core, ok(streams=["room:42"], env=EnvResponse(istate={"$w": "room:42"})))
    [event] = command(core, command="whisper", data={"typing": "alice"})
    assert isinstance(event, Publish)
    publication = event.publication
    assert publication.stream == "room:42"
    assert json.loads(publication.data) == {"typing": "alice"}
    assert publication.exclude_socket == "s1"
    assert publication.transient
    assert not any(isinstance(e, Delegate) for e in [event])  # no RPC call


def test_without_w_a_whisper_is_ignored_and_no_call_is_made() -> None:
    state, core = connected()
    subscribe(state, core, ok(streams=["room:42"]))
    [event] = command(core, command="whisper", data={"typing": "alice"})
    assert isinstance(event, CommandIgnored)
    # and on a channel never subscribed, neither a whisper nor a call
    [event] = command(core, command="whisper", data={"x": 1}, identifier='{"channel":"other"}')
    assert isinstance(event, CommandIgnored)


def test_a_later_answer_may_set_or_clear_w() -> None:
    state, core = connected()
    subscribe(state, core, ok(streams=["room:42"]))
    request = state.command_request("message", IDENT, '{"action":"allow"}')
    assert request is not None
    state.apply_command(
        core, request, CommandResponse(status=Status.SUCCESS, env=EnvResponse(istate={"$w": "w"}))
    )
    core.events()
    [event] = command(core, command="whisper", data={"a": 1})
    assert isinstance(event, Publish)
    assert event.publication.stream == "w"
    request = state.command_request("message", IDENT, '{"action":"deny"}')
    assert request is not None
    state.apply_command(
        core, request, CommandResponse(status=Status.SUCCESS, env=EnvResponse(istate={"$w": ""}))
    )
    core.events()
    [event] = command(core, command="whisper", data={"a": 1})
    assert isinstance(event, CommandIgnored)


def test_the_answers_presence_joins_after_the_istate_merge_and_the_transmissions() -> None:
    state, core = connected()
    answer = ok(
        streams=["room:42"],
        env=EnvResponse(istate={"$p": "room:42"}),
        presence=PresenceResponse(type="join", id="alice", info='{"name":"Alice"}'),
    )
    events = subscribe(state, core, answer)
    assert events[-2:] == [
        SendMessage(CONFIRM),
        PresenceRequest("join", IDENT, "room:42", presence_id="alice", info={"name": "Alice"}),
    ]
    assert core.presence == {IDENT: ("alice", "room:42")}


def test_presence_info_that_is_not_json_stays_a_string() -> None:
    state, core = connected()
    answer = ok(
        env=EnvResponse(istate={"$p": "p"}),
        presence=PresenceResponse(type="join", id="7", info="not json"),
    )
    events = subscribe(state, core, answer)
    assert events[-1] == PresenceRequest("join", IDENT, "p", presence_id="7", info="not json")


def test_presence_without_p_is_ignored() -> None:
    state, core = connected()
    answer = ok(presence=PresenceResponse(type="join", id="alice", info="{}"))
    events = subscribe(state, core, answer)
    assert not any(isinstance(e, PresenceRequest) for e in events)
    assert isinstance(events[-1], CommandIgnored)
    assert core.presence == {}


def test_a_rejected_subscribe_never_joins() -> None:
    state, core = connected()
    answer = CommandResponse(
        status=Status.FAILURE,
        env=EnvResponse(istate={"$p": "p"}),
        presence=PresenceResponse(type="join", id="alice"),
    )
    events = subscribe(state, core, answer)
    assert not any(isinstance(e, PresenceRequest) for e in events)


def test_client_join_leave_and_info_use_p_and_the_answer_may_leave() -> None:
    state, core = connected()
    subscribe(state, core, ok(streams=["room:42"], env=EnvResponse(istate={"$p": "room:42"})))
    [join] = command(core, command="join", presence={"id": "bob", "info": {"n": 1}})
    assert join == PresenceRequest("join", IDENT, "room:42", presence_id="bob", info={"n": 1})
    [info] = command(core, command="presence")
    assert info == PresenceRequest("info", IDENT, "room:42")
    core.presence_result(IDENT, [("bob", {"n": 1})])
    [reply] = core.events()
    assert isinstance(reply, SendMessage)
    assert json.loads(reply.text)["type"] == "presence"
    [leave] = command(core, command="leave")
    assert leave == PresenceRequest("leave", IDENT, "room:42")
    command(core, command="join", presence={"id": "bob"})
    request = state.command_request("message", IDENT, '{"action":"away"}')
    assert request is not None
    answer = CommandResponse(status=Status.SUCCESS, presence=PresenceResponse(type="leave"))
    state.apply_command(core, request, answer)
    assert core.events() == [PresenceRequest("leave", IDENT, "room:42")]


def test_without_a_broker_join_is_ignored_and_info_answers_an_error() -> None:
    state, core = connected(presence=False)
    subscribe(state, core, ok(env=EnvResponse(istate={"$p": "p"})))
    [event] = command(core, command="join", presence={"id": "bob"})
    assert isinstance(event, CommandIgnored)
    [event] = command(core, command="presence")
    assert isinstance(event, SendMessage)
    assert json.loads(event.text)["message"]["type"] == "error"


def test_unsubscribe_leaves_the_presence_set_and_ends_whispers() -> None:
    state, core = connected()
    subscribe(state, core, ok(streams=["s"], env=EnvResponse(istate={"$p": "s", "$w": "s"})))
    command(core, command="join", presence={"id": "bob"})
    request = state.command_request("unsubscribe", IDENT)
    assert request is not None
    state.apply_command(core, request, CommandResponse(status=Status.SUCCESS, stop_streams=True))
    assert PresenceRequest("leave", IDENT, "s") in core.events()
    assert core.presence == {}
    [event] = command(core, command="whisper", data={"a": 1})
    assert isinstance(event, CommandIgnored)


def test_a_closed_session_keeps_its_presence_for_the_broker_to_expire() -> None:
    state, core = connected()
    subscribe(state, core, ok(env=EnvResponse(istate={"$p": "s"})))
    command(core, command="join", presence={"id": "bob"})
    core.close_delegated(1011, "gone")
    assert core.presence == {IDENT: ("bob", "s")}  # the driver expires it (presence_ttl)


def test_a_restored_session_whispers_to_its_restored_w() -> None:
    settings = SessionSettings(delegate=True, extended=True, resumable=True)
    state, core = connected()
    subscribe(state, core, ok(streams=["s"], env=EnvResponse(istate={"$w": "s"})))
    app = core._apps.state
    restored = CableConnection(sid="s2", settings=settings, now=0.0)
    snapshot = SessionSnapshot('{"user":"alice"}', (), delegated=(IDENT,), app=app)
    restored.restore(snapshot)
    again = RpcSession("s2", "http://localhost/cable", {})
    again.restore(restored, snapshot)
    restored.events()
    restored.receive_message(
        json.dumps({"command": "whisper", "identifier": IDENT, "data": {"a": 1}}), now=1.0
    )
    [event] = restored.events()
    assert isinstance(event, Publish)
    assert event.publication.stream == "s"


def delegated_subscribe(core: CableConnection, **extra: object) -> None:
    core.receive_message(json.dumps({"command": "subscribe", "identifier": IDENT, **extra}), now=1)
    [event] = core.events()
    assert event == Delegate("subscribe", IDENT)


def test_the_presence_a_subscribe_carries_joins_once_the_app_confirms() -> None:
    state, core = connected()
    delegated_subscribe(core, presence={"id": "bob", "info": {"n": 1}})
    events = subscribe(state, core, ok(streams=["s"], env=EnvResponse(istate={"$p": "s"})))
    assert events[-2:] == [
        SendMessage(CONFIRM),
        PresenceRequest("join", IDENT, "s", presence_id="bob", info={"n": 1}),
    ]


def test_a_rejected_subscribes_presence_is_not_kept_for_a_later_subscribe() -> None:
    state, core = connected()
    delegated_subscribe(core, presence={"id": "bob"})
    subscribe(state, core, CommandResponse(status=Status.FAILURE))
    delegated_subscribe(core)  # again, without presence
    events = subscribe(state, core, ok(env=EnvResponse(istate={"$p": "s"})))
    assert not any(isinstance(e, PresenceRequest) for e in events)
