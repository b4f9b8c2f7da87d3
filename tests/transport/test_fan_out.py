"""``fan_out``: wire bytes per kind of session, one queued chunk per subscriber."""

from __future__ import annotations

import trio

from cableway.config import Config
from cableway.protocol.connection import CableConnection
from cableway.transport.fanout import fan_out
from cableway.transport.server import Server
from cableway.transport.session import Session


class _Stream(trio.abc.Stream):
    """A stream without a descriptor: everything goes through the outbox."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        raise AssertionError("not started")  # pragma: no cover

    async def wait_send_all_might_not_block(self) -> None:
        raise AssertionError("not started")  # pragma: no cover

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        raise AssertionError("not started")  # pragma: no cover

    async def aclose(self) -> None:
        pass  # pragma: no cover


class _Upper(Session):
    wire_kind = "upper"

    def encode(self, text: str) -> bytes | None:
        return None if "skip" in text else text.upper().encode() + b";"


class _Lower(Session):
    wire_kind = "lower"

    def encode(self, text: str) -> bytes | None:
        return text.encode() + b";"


def _session(server: Server, kind: type[Session], sid: str) -> Session:
    settings = server.session_settings(0, "seconds", extended=False)
    return kind(server, _Stream(), CableConnection(sid=sid, settings=settings, now=0.0))


def test_each_kind_gets_its_own_bytes_in_one_chunk_in_order() -> None:
    server = Server(Config(host="127.0.0.1", port=0, public=True))
    sessions = [
        _session(server, _Upper, "u1"),
        _session(server, _Lower, "l1"),
        _session(server, _Upper, "u2"),
        _session(server, _Lower, "l2"),
    ]
    texts = ["a", "skip b", "c"]
    delivered, sent = fan_out(sessions, "id", texts, [1, 2, 3], ["l2", None, None])
    # u1, u2: "a" and "c" (their kind drops "skip b"); l1: all three; l2: excluded from "a"
    assert delivered == 2 + 3 + 2 + 2
    assert sent == 0  # no descriptor: nothing written at once
    assert [len(session.outbox._chunks) for session in sessions] == [1, 1, 1, 1]
    chunks = [session.outbox.take_nowait() for session in sessions]
    assert chunks == [b"A;C;", b"a;skip b;c;", b"A;C;", b"skip b;c;"]


def test_a_held_subscription_keeps_each_message_with_its_offset() -> None:
    server = Server(Config(host="127.0.0.1", port=0, public=True))
    held, live = _session(server, _Lower, "h"), _session(server, _Lower, "l")
    held.core.held = {"id"}  # as while its history is fetched
    delivered, _ = fan_out([held, live], "id", ["a", "b"], [7, 8], None)
    assert delivered == 4
    assert held._held == {"id": [(7, b"a;"), (8, b"b;")]}
    assert not held.outbox.size
    assert live.outbox.take_nowait() == b"a;b;"
