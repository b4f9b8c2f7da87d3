"""History on application channels (rpc.md §4.4-4.6, anycable.md §7.4): a channel whose
streams come from the application's Command answers is replayed over all of them, as
AnyCable-Go does (node/node.go ``Subscribe`` serves the history a subscribe carried after
the confirmation, ``History``/``retreiveHistory`` read each stream in turn, one
``confirm_history`` follows; an unknown epoch rejects the whole request). Live messages
that arrive while the history is pending are held and released without those replayed,
per stream."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping
from typing import Any

from cableway.node.backend import Answer, MemoryBackend
from cableway.node.dispatch import dispatch
from cableway.node.fanout import fan_out
from cableway.node.held import HeldMessages
from cableway.node.node import Node
from cableway.node.rpc import RpcSession
from cableway.node.session import NodeSession
from cableway.protocol.broadcast import Publication
from cableway.protocol.broker import HistoryEntry, HistoryQuery, MemoryBroker, SessionSnapshot
from cableway.protocol.connection import CableConnection, SessionSettings
from cableway.protocol.events import (
    CommandIgnored,
    Delegate,
    Event,
    HistoryRequest,
    PresenceRequest,
    ReleaseHeld,
    SendMessage,
)
from cableway.rpc import (
    CommandResponse,
    ConnectionResponse,
    EnvResponse,
    Status,
)

IDENT = '{"channel":"chat","room":"42"}'
CONFIRM = json.dumps({"identifier": IDENT, "type": "confirm_subscription"})
NOW = 1_700_000_000.0
SETTINGS = SessionSettings(
    delegate=True, extended=True, history=True, presence=True, resumable=True, ping_interval=0
)


def connected(sid: str = "s1") -> tuple[RpcSession, CableConnection]:
    core = CableConnection(sid=sid, settings=SETTINGS, now=0.0)
    state = RpcSession(sid, "http://localhost/cable", {})
    answer = ConnectionResponse(status=Status.SUCCESS, identifiers='{"user":"alice"}')
    state.apply_connect(core, answer)
    core.events()
    return state, core


def send(core: CableConnection, **message: object) -> list[Event]:
    core.receive_message(json.dumps({"identifier": IDENT, **message}), now=1.0)
    return core.events()


def confirm(state: RpcSession, core: CableConnection, answer: CommandResponse) -> list[Event]:
    request = state.command_request("subscribe", IDENT)
    assert request is not None
    state.apply_command(core, request, answer)
    core.delegated_answered()  # as the driver does (answer_delegated)
    return core.events()


def two_streams(**fields: Any) -> CommandResponse:
    return CommandResponse(
        status=Status.SUCCESS, transmissions=[CONFIRM], streams=["room:b", "room:a"], **fields
    )


def texts(events: list[Event]) -> list[dict[str, Any]]:
    return [json.loads(e.text) for e in events if isinstance(e, SendMessage)]


def replayed(message: Mapping[str, Any]) -> tuple[str, int, object]:
    return message["stream_id"], message["offset"], message["message"]


# -- the core: what a history request asks for, and its answer --------------------------


def test_the_history_a_subscribe_carries_is_asked_after_the_confirmation_for_every_stream() -> None:
    state, core = connected()
    [delegate] = send(core, command="subscribe", history={"since": 1000})
    assert delegate == Delegate("subscribe", IDENT)  # the application decides first
    events = confirm(state, core, two_streams())
    requests = [e for e in events if isinstance(e, HistoryRequest)]
    assert requests == [
        HistoryRequest(
            IDENT, (HistoryQuery("room:a", since=1000.0), HistoryQuery("room:b", since=1000.0))
        )
    ]
    confirm_at = events.index(SendMessage(CONFIRM))
    assert confirm_at < events.index(requests[0])
    assert core.held == {IDENT}  # live messages wait for the history


def test_positions_are_read_per_stream_and_since_covers_the_others() -> None:
    state, core = connected()
    confirm(state, core, two_streams())
    history = {"since": 50, "streams": {"room:b": {"epoch": "e", "offset": 7}}}
    [request] = send(core, command="history", history=history)
    assert request == HistoryRequest(
        IDENT, (HistoryQuery("room:a", since=50.0), HistoryQuery("room:b", epoch="e", offset=7))
    )
    # positions only: a stream without one is not read; a stream the channel does not read
    # is not either
    history = {"streams": {"room:a": {"epoch": "e", "offset": 2}, "elsewhere": {"epoch": "e"}}}
    [request] = send(core, command="history", history=history)
    assert request == HistoryRequest(IDENT, (HistoryQuery("room:a", epoch="e", offset=2),))


def test_the_answer_replays_both_streams_then_confirms_once_and_releases_per_stream() -> None:
    state, core = connected()
    confirm(state, core, two_streams())
    send(core, command="history", history={"since": 1})
    entries = [
        HistoryEntry("room:a", 1, '"a1"', 0),
        HistoryEntry("room:a", 2, '"a2"', 0),
        HistoryEntry("room:b", 1, '"b1"', 0),
    ]
    core.history_result(IDENT, entries, epoch="e")
    events = core.events()
    messages = texts(events)
    assert [replayed(m) for m in messages[:3]] == [
        ("room:a", 1, "a1"),
        ("room:a", 2, "a2"),
        ("room:b", 1, "b1"),
    ]
    assert all(m["identifier"] == IDENT and m["epoch"] == "e" for m in messages[:3])
    assert messages[3:] == [{"type": "confirm_history", "identifier": IDENT}]
    assert events[-1] == ReleaseHeld(IDENT, {"room:a": 2, "room:b": 1})
    assert core.held == set()


def test_an_unknown_epoch_rejects_the_whole_request() -> None:
    broker = MemoryBroker(epoch="e1")
    for stream in ("room:a", "room:b"):
        broker.add(stream, '"x"', now=NOW)
    state, core = connected()
    confirm(state, core, two_streams())
    history = {"streams": {"room:a": {"epoch": "e1", "offset": 0}, "room:b": {"epoch": "old"}}}
    assert texts(send(core, command="history", history=history)) == [
        {"type": "reject_history", "identifier": IDENT}  # a malformed position
    ]
    history["streams"]["room:b"] = {"epoch": "old", "offset": 0}
    [request] = send(core, command="history", history=history)
    assert isinstance(request, HistoryRequest)
    MemoryBackend(broker).history(core, request, now=NOW)
    events = core.events()
    assert texts(events) == [{"type": "reject_history", "identifier": IDENT}]
    assert events[-1] == ReleaseHeld(IDENT, None)  # nothing replayed: everything held goes


def test_a_rejected_subscribe_asks_no_history_and_the_next_one_asks_its_own() -> None:
    state, core = connected()
    send(core, command="subscribe", history={"since": 1})
    assert not any(
        isinstance(e, HistoryRequest | SendMessage)
        for e in confirm(state, core, CommandResponse(status=Status.FAILURE))
    )
    send(core, command="subscribe", history={"since": 2})  # again
    events = confirm(state, core, two_streams())
    assert [e.queries[0].since for e in events if isinstance(e, HistoryRequest)] == [2.0]


def test_history_then_the_presence_a_subscribe_carries() -> None:
    state, core = connected()
    send(core, command="subscribe", history={"since": 1}, presence={"id": "bob"})
    events = confirm(state, core, two_streams(env=EnvResponse(istate={"$p": "room:a"})))
    kinds = [type(e) for e in events if isinstance(e, HistoryRequest | PresenceRequest)]
    assert kinds == [HistoryRequest, PresenceRequest]  # AnyCable-Go's order


def test_without_a_history_broker_the_request_is_rejected_and_unsubscribed_is_ignored() -> None:
    settings = SessionSettings(delegate=True, extended=True, ping_interval=0)
    core = CableConnection(sid="s", settings=settings, now=0.0)
    state = RpcSession("s", "http://localhost/cable", {})
    state.apply_connect(core, ConnectionResponse(status=Status.SUCCESS, identifiers="{}"))
    core.events()
    confirm(state, core, two_streams())
    assert texts(send(core, command="history", history={"since": 1})) == [
        {"type": "reject_history", "identifier": IDENT}
    ]
    request = state.command_request("unsubscribe", IDENT)
    assert request is not None
    state.apply_command(core, request, CommandResponse(status=Status.SUCCESS))
    core.events()
    [event] = send(core, command="history", history={"since": 1})
    assert isinstance(event, CommandIgnored)


def test_held_messages_are_released_per_stream() -> None:
    held: HeldMessages[str] = HeldMessages(max_bytes=0)
    for stream, offset, item in [
        ("room:a", 2, "a2"),
        ("room:b", 2, "b2"),
        ("room:b", 3, "b3"),
        ("room:a", 3, "a3"),
        ("room:c", 1, "c1"),
        ("", None, "whisper"),
    ]:
        assert held.hold(IDENT, offset, item, 1, stream)
    # replayed up to a:2 and b:3; c was not replayed at all
    assert held.release(IDENT, {"room:a": 2, "room:b": 3}) == ["a3", "c1", "whisper"]
    assert held.size == 0


# -- the node: a session whose history is answered later (as Redis does) -----------------


class LaterBackend(MemoryBackend):
    """The memory broker, but a history is fetched when asked and answered later (a
    broker over the network): live messages published meanwhile are held."""

    def history(
        self, core: CableConnection, request: HistoryRequest, *, now: float
    ) -> Awaitable[Answer] | None:
        entries = self.broker.fetch_history(request.queries, now=now)
        epoch = self.broker.epoch

        async def later() -> Answer:
            return lambda c: c.history_result(request.identifier, entries, epoch=epoch)

        return later()


class Client(NodeSession[str]):
    wire_kind = "ws"

    def __init__(self, node: Node[Any, Any], core: CableConnection) -> None:
        self.node = node
        self.counters = node.counters
        self.core = core
        self.sid = core.sid
        self.held = HeldMessages(0)
        self.snapshot = None
        self.sent: list[str] = []
        self.pending: list[Awaitable[Answer]] = []

    def encode(self, text: str) -> str | None:
        return text

    def push_frame(self, frame: str) -> None:
        self.sent.append(frame)

    def send_message(self, text: str) -> bool:
        self.sent.append(text)
        return True

    def wire_size(self, frame: str) -> int:
        return len(frame)

    def answer_later(self, pending: Awaitable[Answer]) -> None:
        self.pending.append(pending)

    def answer(self) -> None:
        """The backend's answer arrives."""
        for pending in self.pending:
            coroutine: Any = pending
            try:
                coroutine.send(None)
            except StopIteration as done:
                done.value(self.core)
        self.pending.clear()
        dispatch(self.core, self)

    def received(self) -> list[tuple[str, int, object] | str]:
        out: list[tuple[str, int, object] | str] = []
        for text in self.sent:
            message = json.loads(text)
            if "stream_id" in message:
                out.append(replayed(message))
            elif message.get("type") in ("confirm_history", "reject_history"):
                out.append(message["type"])
        self.sent.clear()
        return out


class Counters:
    def inc(self, name: str, n: int = 1) -> None:
        pass

    def delivered(self, broadcasts: int, messages: int, data: int) -> None:
        self.inc("broadcast_msg_total", broadcasts)
        self.inc("server_msg_total", messages)
        self.inc("data_sent_total", data)


def test_a_restored_app_channel_gets_what_it_missed_once_in_order_and_then_live() -> None:
    broker = MemoryBroker(epoch="e", sessions_ttl=300)
    node: Node[Any, object] = Node(
        LaterBackend(broker), Counters(), fan_out, wall_clock=lambda: NOW
    )

    def publish(stream: str, data: str) -> None:
        node.publish([Publication(stream, json.dumps(data))])

    state, core = connected("old")
    first = Client(node, core)
    request = state.command_request("subscribe", IDENT)
    assert request is not None
    state.apply_command(core, request, two_streams())
    dispatch(core, first)  # its streams are registered
    first.sent.clear()
    publish("room:a", "a1")
    publish("room:b", "b1")
    assert first.received() == [("room:a", 1, "a1"), ("room:b", 1, "b1")]
    snapshot = first.snapshot
    assert isinstance(snapshot, SessionSnapshot)
    first.leave()  # the socket is lost
    for stream, data in [("room:a", "a2"), ("room:b", "b2"), ("room:a", "a3"), ("room:a", "a4")]:
        publish(stream, data)  # while the client is away

    core = CableConnection(sid="new", settings=SETTINGS, now=0.0)
    core.restore(snapshot, now=0.0)
    again = RpcSession("new", "http://localhost/cable", {})
    again.identified(snapshot.identifiers)
    again.restore(core, snapshot)
    client = Client(node, core)
    dispatch(core, client)
    assert json.loads(client.sent.pop(0))["restored_ids"] == [IDENT]
    publish("room:b", "b3")  # live, before the client asks for its history: held
    assert client.sent == []
    positions = {stream: {"epoch": "e", "offset": 1} for stream in ("room:a", "room:b")}
    client.take_message(
        json.dumps({"command": "history", "identifier": IDENT, "history": {"streams": positions}}),
        now=1.0,
    )
    dispatch(core, client)
    publish("room:b", "b4")  # after the broker read the history: held, and new (its
    publish("room:a", "a5")  # offset is below room:a's last replayed one: per stream)
    assert client.sent == []
    client.answer()
    assert client.received() == [
        ("room:a", 2, "a2"),
        ("room:a", 3, "a3"),
        ("room:a", 4, "a4"),
        ("room:b", 2, "b2"),
        ("room:b", 3, "b3"),
        "confirm_history",
        ("room:b", 4, "b4"),  # held, not replayed: released once
        ("room:a", 5, "a5"),
    ]
    publish("room:b", "b5")
    assert client.received() == [("room:b", 5, "b5")]
