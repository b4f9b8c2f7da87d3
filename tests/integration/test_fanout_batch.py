"""Fan-out of a batch: publications on one stream reach each subscriber in one write.

Consecutive publications on one stream (a batch POSTed as an array) are framed once per
identifier and kind of session, and each subscriber gets all of them in one write.
Order, ``exclude_socket``, held messages, the outbox bound and the metrics are the same
as when every publication is delivered on its own.
"""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from typing import Any

import pytest
from trio_websocket import WebSocketConnection

from cableway.auth.signed_streams import sign_stream_name
from cableway.protocol.broadcast import Publication
from cableway.transport import fanout as fanout_module
from cableway.transport import output as output_module
from cableway.transport import timers as timers_module
from cableway.transport.server import Server
from cableway.transport.session import Session

from .helpers import (
    TURBO_KEY,
    cable,
    config,
    recv_json,
    running,
    subscribe,
    turbo_identifier,
    welcome,
)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """How many writes the sessions made, per descriptor: a socket ``send`` made at once
    (the fan-out's, the timer's and ``_push``'s, through ``output.send_bytes``) or an
    ``os.write`` / ``os.writev`` (the outbox's writer)."""
    counts: Counter[int] = Counter()
    real_send, real_write, real_writev = output_module.send_bytes, os.write, os.writev

    def counting_send(sock: socket.socket | None, data: Any) -> int:
        assert sock is not None
        counts[sock.fileno()] += 1
        return real_send(sock, data)

    def counting_write(fd: int, data: Any) -> int:
        counts[fd] += 1
        return real_write(fd, data)

    def counting_writev(fd: int, buffers: Any) -> int:
        counts[fd] += 1
        return real_writev(fd, buffers)

    for module in (output_module, fanout_module, timers_module):
        monkeypatch.setattr(module, "send_bytes", counting_send)
    monkeypatch.setattr(os, "write", counting_write)
    monkeypatch.setattr(os, "writev", counting_writev)
    return counts


def _by_sid(server: Server) -> dict[str, Session]:
    return {session.sid: session for session in server.sessions}


async def _messages(ws: WebSocketConnection, n: int) -> list[Any]:
    return [(await recv_json(ws))["message"] for _ in range(n)]


def _batch(stream: str, values: list[int], **meta: Any) -> list[Publication]:
    return [Publication(stream, json.dumps({"n": v}), **meta) for v in values]


async def test_a_batch_reaches_each_subscriber_in_one_write_in_order(
    writes: Counter[int],
) -> None:
    async with running() as server, cable(server) as one, cable(server) as two:
        sids = [await welcome(one), await welcome(two)]
        for ws in (one, two):
            assert (await subscribe(ws, turbo_identifier("s")))["type"] == "confirm_subscription"
        sessions = _by_sid(server)
        delivered = server.metrics.value("server_msg_total")
        sent = server.metrics.value("data_sent_total")
        writes.clear()
        server.publish(_batch("s", list(range(10))))
        for sid in sids:
            assert writes[sessions[sid]._fd] == 1
        for ws in (one, two):
            assert await _messages(ws, 10) == [{"n": v} for v in range(10)]
        assert server.metrics.value("server_msg_total") - delivered == 20
        assert server.metrics.value("data_sent_total") > sent


async def test_data_sent_counts_every_byte_of_a_batch() -> None:
    async with running() as server, cable(server) as ws:
        sid = await welcome(ws)
        identifier = turbo_identifier("s")
        await subscribe(ws, identifier)
        session = _by_sid(server)[sid]
        batch = _batch("s", [1, 2, 3])
        expected = 0
        for publication in batch:
            text = '{"identifier":' + json.dumps(identifier) + ',"message":'
            expected += len(session.encode(text + publication.data + "}"))
        sent = server.metrics.value("data_sent_total")
        server.publish(batch)
        assert await _messages(ws, 3) == [{"n": 1}, {"n": 2}, {"n": 3}]
        assert server.metrics.value("data_sent_total") - sent == expected


async def test_exclude_socket_applies_per_publication_of_a_batch(
    writes: Counter[int],
) -> None:
    async with running() as server, cable(server) as one, cable(server) as two:
        sid_one, sid_two = await welcome(one), await welcome(two)
        for ws in (one, two):
            await subscribe(ws, turbo_identifier("s"))
        sessions = _by_sid(server)
        delivered = server.metrics.value("server_msg_total")
        writes.clear()
        batch = [
            *_batch("s", [0]),
            *_batch("s", [1], exclude_socket=sid_one),
            *_batch("s", [2]),
            *_batch("s", [3], exclude_socket=sid_two),
        ]
        server.publish(batch)
        assert await _messages(one, 3) == [{"n": 0}, {"n": 2}, {"n": 3}]
        assert await _messages(two, 3) == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert writes[sessions[sid_one]._fd] == 1
        assert writes[sessions[sid_two]._fd] == 1
        assert server.metrics.value("server_msg_total") - delivered == 6


async def test_a_batch_over_several_streams_keeps_its_order() -> None:
    async with running() as server, cable(server) as ws:
        await welcome(ws)
        await subscribe(ws, turbo_identifier("a"))
        await subscribe(ws, turbo_identifier("b"))
        batch = [*_batch("a", [0]), *_batch("b", [1]), *_batch("a", [2, 3]), *_batch("b", [4])]
        server.publish(batch)
        assert await _messages(ws, 5) == [{"n": v} for v in range(5)]


async def test_one_stream_under_two_identifiers_keeps_the_interleaving() -> None:
    signed = sign_stream_name("s", TURBO_KEY)
    compact = turbo_identifier("s")
    spaced = json.dumps({"channel": "Turbo::StreamsChannel", "signed_stream_name": signed})
    assert compact != spaced
    async with running() as server, cable(server) as ws, cable(server) as other:
        await welcome(ws)
        await welcome(other)
        await subscribe(ws, compact)
        await subscribe(ws, spaced)
        await subscribe(other, compact)
        server.publish(_batch("s", [0, 1]))
        got = [await recv_json(ws) for _ in range(4)]
        assert [(m["identifier"], m["message"]["n"]) for m in got] == [
            (compact, 0),
            (spaced, 0),
            (compact, 1),
            (spaced, 1),
        ]
        assert await _messages(other, 2) == [{"n": 0}, {"n": 1}]


async def test_a_held_subscription_holds_a_batch_until_its_history_is_in(
    writes: Counter[int],
) -> None:
    async with running(config(broker="memory")) as server, cable(server) as ws:
        sid = await welcome(ws)
        identifier = turbo_identifier("s")
        await subscribe(ws, identifier)
        session = _by_sid(server)[sid]
        # as while its history is fetched (the core's held set, and its public view)
        session.core.held = session.core._holding().held = {identifier}
        delivered = server.metrics.value("server_msg_total")
        writes.clear()
        server.publish(_batch("s", [0, 1, 2]))
        assert writes[session._fd] == 0
        held = session.held.held(identifier)
        offsets = [offset for offset, _ in held]
        assert len(held) == 3
        assert offsets == sorted(offsets)
        assert all(offset is not None for offset in offsets)
        assert server.metrics.value("server_msg_total") - delivered == 3
        assert server.broker is not None
        session.core.history_result(identifier, [], epoch=server.broker.epoch)
        session.apply()
        assert (await recv_json(ws))["type"] == "confirm_history"
        got = [await recv_json(ws) for _ in range(3)]
        assert [m["message"] for m in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert [m["offset"] for m in got] == offsets


async def test_a_batch_past_the_outbox_bound_drops_a_client_that_does_not_read_it() -> None:
    payload = "x" * 60_000
    async with running(config(ws_max_pending_size=200_000)) as server, cable(server) as ws:
        sid = await welcome(ws)
        await subscribe(ws, turbo_identifier("slow"))
        session = _by_sid(server)[sid]
        # the client reads no further than its one-message queue: the socket fills up
        for sent in range(500):  # pragma: no branch
            if session.outbox.size:
                break
            server.publish([Publication("slow", json.dumps([sent, payload]))])
        assert session.outbox.size
        assert server.metrics.value("disconnected_slow_clients_total") == 0
        # a batch past the bound is accepted whole: it does not count against itself
        server.publish([Publication("slow", json.dumps([v, payload])) for v in range(5)])
        assert server.metrics.value("disconnected_slow_clients_total") == 0
        assert session.outbox.backlog > 200_000
        # the next one finds more than the bound still unread: the client is too slow
        server.publish([Publication("slow", json.dumps([v, payload])) for v in range(5)])
        assert server.metrics.value("disconnected_slow_clients_total") == 1
        assert session._pending_close is not None
        assert session._pending_close[0] == "too_slow"
        # dropped whole, as for single publications (only a frame in flight is kept)
        assert not session.outbox.backlog
        server.publish([Publication("slow", json.dumps([v, payload])) for v in range(5)])
        assert server.metrics.value("disconnected_slow_clients_total") == 1
        assert not session.outbox.backlog
