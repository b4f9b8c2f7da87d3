"""``fan_out_one``: one message to the one subscriber of an identifier (a stream per
client) keeps every rule of ``fan_out``.

Each case builds the same session twice on a socket pair, in the state the case names
(excluded, held, closing, bytes pending, a ping due soon, a kind that drops the
message...), delivers one message with ``fan_out([session], ...)`` to one copy and with
``fan_out_one(session, ...)`` to the other, and compares everything a client or the node
can see: the counts returned, what reached the peer, what waits in the outbox or is held,
the ping schedule and a pending close. Then the node is checked to use it exactly for one
publication to one subscriber.
"""

from __future__ import annotations

import itertools
import json
import socket
from typing import Any

import pytest
import trio
import trio.testing

from cableway.protocol.broadcast import Publication
from cableway.protocol.wsframe import text_frame
from cableway.transport import fanout
from cableway.transport.fanout import PING_EARLY, fan_out, fan_out_one
from cableway.transport.server import Server
from cableway.transport.ws import WebSocketSession

from .helpers import (
    CONFIG,
    accepted_core,
    nonblocking_pair,
    read_available,
    server_texts,
    socket_stream,
)

IDENTIFIER = '{"channel":"X"}'
TEXT = '{"identifier":"{\\"channel\\":\\"X\\"}","message":{"n":1}}'


class _DropsNone(WebSocketSession):
    """A kind of session that does not get this message (``encode`` answers None, as
    an SSE kind does for a message it leaves out)."""

    def encode(self, text: str) -> bytes:
        return None if text == TEXT else super().encode(text)  # type: ignore[return-value]


def _session(
    server: Server, peers: list[socket.socket], kind: type[WebSocketSession]
) -> WebSocketSession:
    ours, _peer = nonblocking_pair(peers)
    core = accepted_core(server, sid="me")
    core.events()
    session = kind(server, socket_stream(ours), core)
    if kind is _DropsNone:
        session.wire_kind = "drops"
    server.schedule(session)
    return session


def _messages(data: bytes) -> list[str]:
    """The text messages in ``data``; a ping's timestamp left out (the wall clock)."""
    out = []
    for message in server_texts(data):
        if json.loads(message).get("type") == "ping":
            message = "ping"
        out.append(message)
    return out


EXCLUDES = ["none", "me", "other"]
HELD = [False, True]
CLOSING = ["open", "closing", "pending_close"]
OUTPUT = ["free", "pending", "writer", "over", "no_fd"]
WHEN = ["far", "soon"]
KINDS = [WebSocketSession, _DropsNone]


def _prepare(session: WebSocketSession, held: bool, closing: str, output: str) -> None:
    if held:
        session.core.held = {IDENTIFIER}  # as while its history is fetched
    if closing == "closing":
        session._closing = True
    elif closing == "pending_close":
        session._pending_close = ("remote", True, 1000, "")
    if output == "pending":
        session.outbox.push(session.encode('{"earlier":1}'))
    elif output == "writer":
        session._writer_active = True
        session.outbox.push(session.encode('{"earlier":1}'))
    elif output == "over":  # a writer waits on a socket that takes nothing
        session._writer_active = True
        session._fd = -1
        session.outbox.max_bytes = 8
        session.outbox.push(session.encode('{"earlier":"' + "x" * 64 + '"}'))
    elif output == "no_fd":
        session._fd = -1
    session._recheck()  # the "writable now" flag, as the session keeps it when these change


def _observe(session: WebSocketSession, peer: socket.socket) -> dict[str, Any]:
    outbox = session.outbox
    return {
        "peer": _messages(read_available(peer)),
        "outbox": _messages(b"".join(bytes(chunk) for chunk in outbox._chunks)),
        "held": session.held.held(IDENTIFIER),
        "next_deadline": session.timer_deadline(),  # (the cached pings given back)
        "pending_close": session._pending_close,
        "metrics": session.server.metrics.snapshot(),
    }


def _deliver(
    pairs: list[socket.socket],
    kind: type[WebSocketSession],
    exclude: str,
    held: bool,
    closing: str,
    output: str,
    when: str,
    one: bool,
) -> tuple[tuple[int, int], dict[str, Any], float]:
    server = Server(CONFIG)
    session = _session(server, pairs, kind)
    peer = pairs[-1]
    due = session.core.next_deadline()
    assert due is not None
    at = due - PING_EARLY - 0.2 if when == "far" else due - PING_EARLY + 0.1
    _prepare(session, held, closing, output)
    excluded = {"none": None, "me": session.sid, "other": "someone"}[exclude]

    async def main() -> tuple[int, int]:
        clock.jump(at - trio.current_time())
        if one:
            return fan_out_one(session, IDENTIFIER, TEXT, 7, excluded)
        return fan_out([session], IDENTIFIER, [TEXT], [7], None if excluded is None else [excluded])

    clock = trio.testing.MockClock()
    result = trio.run(main, clock=clock)
    return result, _observe(session, peer), session.scheduled_at


@pytest.mark.parametrize(
    ("kind", "exclude", "held", "closing", "output", "when"),
    list(itertools.product(KINDS, EXCLUDES, HELD, CLOSING, OUTPUT, WHEN)),
)
def test_one_subscriber_gets_exactly_what_fan_out_gives_it(
    pairs: list[socket.socket],
    kind: type[WebSocketSession],
    exclude: str,
    held: bool,
    closing: str,
    output: str,
    when: str,
) -> None:
    args = (kind, exclude, held, closing, output, when)
    batch = _deliver(pairs, *args, one=False)
    single = _deliver(pairs, *args, one=True)
    assert single == batch


def test_the_cases_cover_every_outcome(pairs: list[socket.socket]) -> None:
    """The grid above reaches each rule (so the comparison is not of empty outcomes)."""
    free = _deliver(pairs, WebSocketSession, "none", False, "open", "free", "far", one=True)
    assert free[0] == (1, len(TEXT) + 2)
    assert free[1]["peer"] == [TEXT]
    soon = _deliver(pairs, WebSocketSession, "none", False, "open", "free", "soon", one=True)
    assert soon[1]["peer"] == [TEXT, "ping"]
    assert soon[1]["next_deadline"] == pytest.approx(free[1]["next_deadline"] + 3.0)
    mine = _deliver(pairs, WebSocketSession, "me", False, "open", "free", "far", one=True)
    assert mine[0] == (0, 0)
    assert mine[1]["peer"] == []
    held = _deliver(pairs, WebSocketSession, "none", True, "open", "free", "far", one=True)
    assert held[0] == (1, 0)
    assert held[1]["held"] == [(7, text_frame(TEXT.encode()))]
    closing = _deliver(pairs, WebSocketSession, "none", False, "closing", "free", "far", one=True)
    assert closing[0] == (1, 0)
    assert closing[1]["peer"] == []
    pending = _deliver(pairs, WebSocketSession, "none", False, "open", "writer", "soon", one=True)
    assert pending[1]["outbox"] == ['{"earlier":1}', TEXT]  # in order, and no early ping
    over = _deliver(pairs, WebSocketSession, "none", False, "open", "over", "far", one=True)
    assert over[1]["pending_close"] is not None  # too slow
    dropped = _deliver(pairs, _DropsNone, "none", False, "open", "free", "far", one=True)
    assert dropped[0] == (0, 0)
    assert dropped[1]["peer"] == []


def test_the_node_delivers_one_publication_to_one_subscriber_through_fan_out_one(
    pairs: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Server(CONFIG)
    calls: list[str] = []
    node = server.node
    assert node.fan_out_one is fan_out_one
    batch, one = node.fan_out, node.fan_out_one

    def counting_batch(*args: Any) -> tuple[int, int]:
        calls.append("batch")
        return batch(*args)

    def counting_one(*args: Any) -> tuple[int, int]:
        calls.append("one")
        return one(*args)

    node.fan_out, node.fan_out_one = counting_batch, counting_one
    first = _session(server, pairs, WebSocketSession)
    node.registry.add("s1", IDENTIFIER, first)
    node.publish([Publication("s1", '{"n":1}', transient=True)])
    assert calls == ["one"]
    assert _messages(read_available(pairs[1])) == [TEXT]
    twice = Publication("s1", '{"n":1}', transient=True)
    node.publish([twice, twice])  # a run of two
    assert calls == ["one", "batch"]
    second = _session(server, pairs, WebSocketSession)
    node.registry.add("s1", IDENTIFIER, second)
    node.publish([Publication("s1", '{"n":1}', transient=True)])  # two subscribers
    assert calls == ["one", "batch", "batch"]
    metrics = server.metrics
    assert metrics.value("server_msg_total") == 1 + 2 + 2
    assert metrics.value("data_sent_total") == 5 * (len(TEXT) + 2)
    assert fanout.fan_out_one is fan_out_one
