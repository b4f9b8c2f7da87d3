"""The WebSocket upgrade fast path agrees with h11: the head it accepts is the request h11
parses, and its pre-built ``101`` is the bytes h11 writes.

(``fuzz/fuzz_upgrade_fast.py`` serves random requests with and without the fast path and
compares the answers; ``tests/test_fuzz_corpus.py`` replays its corpus.)
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence

import h11
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from cableway.protocol.handshake import WebSocketOpen, negotiate_deflate
from cableway.protocol.httphead import head_size, parse_upgrade_head
from cableway.transport.httpconn import Request
from cableway.transport.session import Session
from cableway.transport.upgrade import answer_101, handshake_refusal, upgrade_headers

from ..integration.helpers import cable, close_code, config, http, running

UPGRADE = (
    b"GET /cable?jid=x HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def h11_request(data: bytes) -> tuple[h11.Connection, h11.Request]:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    return conn, event


def test_the_pre_built_101_is_what_h11_writes() -> None:
    deflate = negotiate_deflate("permessage-deflate; client_max_window_bits")
    assert deflate is not None
    for subprotocol in (None, "actioncable-v1-json"):
        for offer in (None, deflate):
            opening = WebSocketOpen(
                subprotocol=subprotocol,
                sid="s",
                ping_interval=3.0,
                ping_precision="s",
                token=None,
                restore_sid=None,
                deflate=offer,
            )
            headers = upgrade_headers("dGhlIHNhbXBsZSBub25jZQ==", opening)
            conn, _ = h11_request(UPGRADE)
            wire = conn.send(
                h11.InformationalResponse(
                    status_code=101, headers=headers, reason=b"Switching Protocols"
                )
            )
            assert answer_101(headers) == wire
            assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in wire


def test_a_well_formed_upgrade_takes_the_fast_path_and_reads_as_h11_reads_it() -> None:
    size = head_size(UPGRADE + b"\x81", 8192)
    assert size == len(UPGRADE)
    head = parse_upgrade_head(UPGRADE + b"\x81", size)
    assert head is not None
    _, event = h11_request(UPGRADE)
    fast = Request.from_head(head.method, head.target, head.headers)
    general = Request(event)
    assert vars_of(fast) == vars_of(general)
    assert handshake_refusal(fast) is None


def vars_of(request: Request) -> tuple[object, ...]:
    return (request.method, request.path, request.query, request.raw_headers, request.headers)


_NAME = st.sampled_from(
    [
        b"Host",
        b"host",
        b"Upgrade",
        b"Connection",
        b"Origin",
        b"X-Thing",
        b"content-length",
        b"Transfer-Encoding",
        b"Expect",
        b"Sec-WebSocket-Key",
        b"Bad Name",
        b"X:Y",
        b"",
    ]
)
_VALUE = st.sampled_from(
    [b"", b"websocket", b" spaced  out ", b"a,b", b"\tx\t", b"5", b"chunked", b"\x80", b"a\x00b"]
)
_LINE_END = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"])


@given(
    method=st.sampled_from([b"GET", b"POST", b"get", b"G T", b""]),
    target=st.sampled_from([b"/cable", b"/cable?x=1&y", b"*", b"http://h/cable", b"/a b", b""]),
    version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2"]),
    lines=st.lists(st.tuples(_NAME, _VALUE, _LINE_END), max_size=6),
    tail=st.sampled_from([b"", b"\x81\x80abcd", b"GET / HTTP/1.1\r\n"]),
)
def test_every_head_the_fast_path_accepts_is_the_same_request_for_h11(
    method: bytes,
    target: bytes,
    version: bytes,
    lines: list[tuple[bytes, bytes, bytes]],
    tail: bytes,
) -> None:
    head = method + b" " + target + b" " + version + b"\r\n"
    head += b"".join(name + b":" + value + end for name, value, end in lines) + b"\r\n"
    data = head + tail
    size = head_size(data, 8192)
    parsed = parse_upgrade_head(data, size) if size > 0 else None
    if parsed is None:
        return  # h11's path serves it, as before
    assert size == len(head)
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    event = conn.next_event()  # h11 accepts it: no error raised
    assert isinstance(event, h11.Request)
    assert (event.method, event.target) == (parsed.method, parsed.target)
    assert list(event.headers) == parsed.headers
    assert isinstance(conn.next_event(), h11.EndOfMessage)  # no body
    assert conn.trailing_data[0] == tail


API_KEY = "api-key-of-at-least-thirty-two-bytes!!"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_an_answer_held_back_is_written_before_the_next_request_is_awaited() -> None:
    # the main listener has the upgrade fast path (broadcasts on their own port) and
    # serves the REST API, whose 201 is held back while pipelined requests may follow
    cfg = config(api_secret=API_KEY, http_broadcast_port=free_port(), broker="memory")
    body = json.dumps({"stream": "chat", "data": json.dumps("hi")}).encode()
    auth = [("authorization", f"Bearer {API_KEY}")]
    async with running(cfg) as server:
        answer = await http(server.main_port, "POST", "/api/publish", body, auth)
    assert answer.status == 201


def ws_text(payload: bytes) -> bytes:
    """A client's masked text frame (payload under 126 bytes)."""
    mask = b"\x01\x02\x03\x04"
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


async def test_the_101_and_the_welcome_leave_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    # a connection storm pays a system call per write: the fast path's 101 rides the
    # session's first write, with the welcome (and what a pipelined command answers)
    writes: list[bytes] = []
    write, writev = os.write, os.writev

    def record(fd: int, data: bytes) -> int:
        writes.append(bytes(data))
        return write(fd, data)

    def record_v(fd: int, chunks: Sequence[bytes]) -> int:
        writes.append(b"".join(bytes(chunk) for chunk in chunks))
        return writev(fd, chunks)

    monkeypatch.setattr(os, "write", record)
    monkeypatch.setattr(os, "writev", record_v)
    subscribe = {"command": "subscribe", "identifier": json.dumps({"channel": "Nope"})}
    # (the main listener has the upgrade fast path when broadcasts have their own port)
    cfg = config(broker="memory", http_broadcast_port=free_port())
    async with running(cfg) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.main_port)
        async with stream:
            await stream.send_all(
                UPGRADE.replace(b"?jid=x", b"") + ws_text(json.dumps(subscribe).encode())
            )
            received = b""
            with trio.fail_after(5):
                while b"reject_subscription" not in received:
                    received += await stream.receive_some(65536)
    first = next(data for data in writes if data.startswith(b"HTTP/1.1 101 "))
    assert b'"type":"welcome"' in first
    assert received.startswith(first)
    assert received.index(b"welcome") < received.index(b"reject_subscription")


async def test_a_bug_at_the_first_write_still_answers_101_then_1011(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the 101 waits in the outbox for the welcome: a session that fails before writing
    # it still tells its client (a bug costs that session only, with a 1011)
    def explode(self: Session) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Session, "_apply", explode)
    cfg = config(broker="memory", http_broadcast_port=free_port())
    async with running(cfg) as server, cable(server) as ws:
        assert await close_code(ws) == 1011
