"""The node layer without sockets, trio or asyncio: plain calls and fakes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cableway.node.backend import MemoryBackend, NoBackend
from cableway.node.intake import Invalid, account, judge
from cableway.node.node import Node
from cableway.node.registry import Registry
from cableway.protocol.broadcast import Publication, RemoteDisconnect
from cableway.protocol.broker import MemoryBroker, PresenceEvent

NOW = 1_700_000_000.0


class Counters:
    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def inc(self, name: str, n: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + n

    def delivered(self, broadcasts: int, messages: int, data: int) -> None:
        self.inc("broadcast_msg_total", broadcasts)
        self.inc("server_msg_total", messages)
        self.inc("data_sent_total", data)


@dataclass(eq=False)
class Core:
    identifiers: str | None = None
    sid: str = ""
    #: identifier -> (presence id, stream)
    presence: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(eq=False)
class FakeSession:
    sid: str
    core: Core = field(default_factory=Core)
    closed: list[tuple[str, bool]] = field(default_factory=list)

    def request_close(
        self, reason: str, *, reconnect: bool, code: int = 1000, close_reason: str = ""
    ) -> None:
        self.closed.append((reason, reconnect))


@dataclass
class FanOutLog:
    """A driver's fan-out that records every call."""

    calls: list[tuple[str, list[str], list[str], list[int | None]]] = field(default_factory=list)

    def __call__(
        self,
        sessions: Iterable[FakeSession],
        identifier: str,
        texts: Sequence[str],
        offsets: Sequence[int | None],
        excludes: Sequence[str | None] | None,
        /,
    ) -> tuple[int, int]:
        members = sorted(s.sid for s in sessions)
        self.calls.append((identifier, members, list(texts), list(offsets)))
        return len(members) * len(texts), 0


def _node(backend: MemoryBackend | NoBackend) -> tuple[Node[FakeSession, object], FanOutLog]:
    fan_out = FanOutLog()
    return Node(backend, Counters(), fan_out, wall_clock=lambda: NOW), fan_out


def _message(text: str) -> object:
    return json.loads(text)["message"]


def test_intake_judges_and_counts_every_kind_of_body() -> None:
    counters = Counters()
    for body in [b"not json", b'{"stream":"s"}']:
        verdict = judge(body)
        assert isinstance(verdict, Invalid)
        account(verdict, counters)
    command = judge(b'{"command":"disconnect","payload":{"identifier":"u","reconnect":false}}')
    assert command == RemoteDisconnect("u", False)
    account(command, counters)
    batch = judge(b'[{"stream":"a","data":"1"},{"stream":"b","data":"2"}]')
    assert isinstance(batch, list)
    assert [p.stream for p in batch] == ["a", "b"]
    account(batch, counters)
    assert counters.values == {
        "failed_broadcast_msg_total": 2,
        "remote_commands_total": 1,
        "publications_total": 2,
    }


def test_publish_calls_the_fan_out_once_per_identifier_per_run_of_one_stream() -> None:
    node, fan_out = _node(MemoryBackend(MemoryBroker(epoch="e1")))
    a, b, c = FakeSession("a"), FakeSession("b"), FakeSession("c")
    node.registry.add("room", "id-1", a)
    node.registry.add("room", "id-1", b)
    node.registry.add("room", "id-2", c)
    node.registry.add("other", "id-3", a)
    node.publish(
        [
            Publication("room", '"1"'),
            Publication("room", '"2"'),
            Publication("other", '"3"'),
            Publication("room", '"4"', transient=True),
        ]
    )
    calls = [(identifier, members, offsets) for identifier, members, _, offsets in fan_out.calls]
    assert calls == [
        ("id-1", ["a", "b"], [1, 2]),  # one run, encoded once for the identifier
        ("id-2", ["c"], [1, 2]),
        ("id-3", ["a"], [1]),
        ("id-1", ["a", "b"], [None]),  # transient: not in history
        ("id-2", ["c"], [None]),
    ]
    texts = fan_out.calls[0][2]
    assert [_message(text) for text in texts] == ["1", "2"]
    assert all(json.loads(text)["identifier"] == "id-1" for text in texts)
    counters = node.counters
    assert isinstance(counters, Counters)
    assert counters.values["broadcast_msg_total"] == 4
    assert counters.values["server_msg_total"] == 4 + 2 + 1 + 2 + 1


def test_a_session_under_two_identifiers_gets_each_publication_under_both_first() -> None:
    node, fan_out = _node(NoBackend())
    a = FakeSession("a")
    node.registry.add("room", "id-1", a)
    node.registry.add("room", "id-2", a)
    node.publish([Publication("room", '"1"'), Publication("room", '"2"')])
    order = [(identifier, _message(texts[0])) for identifier, _, texts, _ in fan_out.calls]
    assert order == [("id-1", "1"), ("id-2", "1"), ("id-1", "2"), ("id-2", "2")]


def test_with_a_relay_publications_go_to_every_node_and_none_is_delivered_here() -> None:
    relayed: list[tuple[str, int | None, str | None, object]] = []
    fan_out = FanOutLog()
    node: Node[FakeSession, object] = Node(
        MemoryBackend(MemoryBroker(epoch="e1")),
        Counters(),
        fan_out,
        wall_clock=lambda: NOW,
        relay=lambda pub, offset, epoch, confirmation: relayed.append(
            (pub.stream, offset, epoch, confirmation)
        ),
    )
    node.registry.add("room", "id", FakeSession("a"))
    token = object()
    node.publish([Publication("room", '"1"'), Publication("room", '"2"', transient=True)], token)
    assert relayed == [("room", 1, "e1", token), ("room", None, None, token)]
    assert fan_out.calls == []


def test_registry_reports_the_first_and_last_local_subscriber_of_a_stream() -> None:
    events: list[str] = []
    registry: Registry[str] = Registry(
        on_first=lambda s: events.append(f"+{s}"), on_last=lambda s: events.append(f"-{s}")
    )
    registry.add("room", "id-1", "a")
    registry.add("room", "id-2", "b")
    registry.remove("room", "id-1", "a")
    registry.remove("room", "id-2", "b")
    assert events == ["+room", "-room"]
    assert len(registry) == 0


def test_remote_disconnect_closes_only_the_matching_sessions() -> None:
    node, _ = _node(NoBackend())
    five, other = FakeSession("a", Core('{"u":5}')), FakeSession("b", Core('{"u":6}'))
    node.sessions.update({five, other})
    node.remote_disconnect(RemoteDisconnect('{"u":5}', reconnect=True))
    assert five.closed == [("remote", True)]
    assert other.closed == []


def test_presence_expiry_is_announced_through_the_node() -> None:
    broker = MemoryBroker(epoch="e1", presence_ttl=1)
    backend = MemoryBackend(broker)
    node, fan_out = _node(backend)
    node.registry.add("room", "id", FakeSession("watcher"))
    assert broker.presence_join("room", "sid-1", "alice", {"name": "Alice"}) is not None
    broker.presence_disconnect("room", "sid-1", now=NOW)
    events: list[PresenceEvent] = []

    def announce(event: PresenceEvent) -> None:
        events.append(event)
        node.publish_presence(event)

    while backend.sweep(NOW + 10, announce, lambda: ()):
        pass
    assert [(e.stream, e.kind, e.presence_id) for e in events] == [("room", "leave", "alice")]
    (_identifier, _, texts, offsets) = fan_out.calls[0]
    message = json.loads(texts[0])
    assert message["type"] == "presence"
    assert message["message"] == {"type": "leave", "id": "alice"}
    assert offsets == [None]


def test_the_node_sweeps_its_backend_and_announces_leaves_itself() -> None:
    broker = MemoryBroker(epoch="e1", presence_ttl=1)
    node, fan_out = _node(MemoryBackend(broker))
    node.registry.add("room", "id", FakeSession("watcher"))
    assert broker.presence_join("room", "sid-1", "alice", {"name": "Alice"}) is not None
    broker.presence_disconnect("room", "sid-1", now=NOW)
    for _ in range(10):  # bounded: a handful of slices at most
        if not node.sweep(NOW + 10):
            break
    (_identifier, _, texts, offsets) = fan_out.calls[0]
    message = json.loads(texts[0])
    assert message["type"] == "presence"
    assert message["message"] == {"type": "leave", "id": "alice"}
    assert offsets == [None]


def test_the_gauges_read_the_live_sessions_identifiers_and_streams() -> None:
    node, _ = _node(NoBackend())
    gauges: dict[str, Callable[[], int]] = {}

    class Gauges:
        def set(self, name: str, value: Callable[[], int]) -> None:
            gauges[name] = value

    node.serve_gauges(Gauges())
    a, b, c = (
        FakeSession(sid, Core(identifiers=who)) for sid, who in [("a", "x"), ("b", "x"), ("c", "y")]
    )
    node.sessions.update({a, b, c})
    node.registry.add("chat", "id", a)
    node.registry.add("news", "id", b)
    assert {name: read() for name, read in gauges.items()} == {
        "clients_num": 3,
        "clients_uniq_num": 2,
        "broadcast_streams_num": 2,
    }
    node.sessions.discard(c)
    node.registry.remove("news", "id", b)
    assert (gauges["clients_num"](), gauges["broadcast_streams_num"]()) == (2, 1)


def test_the_sweep_hands_the_backend_the_live_presence_of_every_session() -> None:
    seen: list[list[tuple[str, str]]] = []

    class Leasing(NoBackend):
        """A backend that leases presence (as Redis does) and records what it renews."""

        def sweep(
            self,
            now: float,
            on_event: Callable[[PresenceEvent], None],
            live_presence: Callable[[], Iterable[tuple[str, str]]],
        ) -> bool:
            seen.append(sorted(live_presence()))
            return False

    node, _ = _node(Leasing())
    here = FakeSession(
        "a", Core(sid="a", presence={"id-1": ("alice", "room"), "id-2": ("al", "x")})
    )
    there = FakeSession("b", Core(sid="b", presence={"id-1": ("bob", "room")}))
    node.sessions.update({here, there, FakeSession("c", Core(sid="c"))})
    assert node.sweep(NOW) is False
    assert seen == [[("room", "a"), ("room", "b"), ("x", "a")]]


def test_one_publication_per_request_is_stamped_unless_transient_or_no_broker() -> None:
    for backend, stamped in [
        (MemoryBackend(MemoryBroker(epoch="e1")), [1, None, 2]),
        (NoBackend(), [None, None, None]),
    ]:
        node, fan_out = _node(backend)
        node.registry.add("room", "id-1", FakeSession("a"))
        node.publish([Publication("room", '"1"')])
        node.publish([Publication("room", '"2"', transient=True)])
        node.publish([Publication("room", '"3"')])
        assert [offsets for _, _, _, offsets in fan_out.calls] == [[o] for o in stamped]
        assert [_message(texts[0]) for _, _, texts, _ in fan_out.calls] == ["1", "2", "3"]
        counters = node.counters
        assert isinstance(counters, Counters)
        assert counters.values["broadcast_msg_total"] == 3
        assert counters.values["server_msg_total"] == 3


def test_one_publication_for_one_subscriber_goes_to_the_drivers_fan_out_one() -> None:
    for backend, offset in [(MemoryBackend(MemoryBroker(epoch="e1")), 1), (NoBackend(), None)]:
        ones: list[tuple[str, str, str, int | None, str | None]] = []

        def one(
            session: FakeSession,
            identifier: str,
            text: str,
            offset: int | None,
            exclude: str | None,
            /,
            ones: list[tuple[str, str, str, int | None, str | None]] = ones,
        ) -> tuple[int, int]:
            ones.append((session.sid, identifier, text, offset, exclude))
            return 1, 5

        fan_out = FanOutLog()
        node: Node[FakeSession, object] = Node(
            backend, Counters(), fan_out, wall_clock=lambda: NOW, fan_out_one=one
        )
        node.registry.add("solo", "id-1", FakeSession("a"))
        node.registry.add("pair", "id-2", FakeSession("b"))
        node.registry.add("pair", "id-2", FakeSession("c"))
        node.publish([Publication("solo", '"1"', exclude_socket="x")])
        node.publish([Publication("pair", '"2"')])
        node.publish([Publication("nobody", '"3"')])
        assert [(sid, ident, _message(text), o, ex) for sid, ident, text, o, ex in ones] == [
            ("a", "id-1", "1", offset, "x")
        ]
        assert [(ident, members) for ident, members, _, _ in fan_out.calls] == [
            ("id-2", ["b", "c"])
        ]
        counters = node.counters
        assert isinstance(counters, Counters)
        assert counters.values["server_msg_total"] == 3
        assert counters.values["data_sent_total"] == 5
        # each publication counted once, whichever way it went (one, many, nobody)
        assert counters.values["broadcast_msg_total"] == 3
