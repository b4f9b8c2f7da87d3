"""A refusal never breaks the client's next request (issue 12.1), over real sockets.

A keep-alive client (h11, as Node's agent, nginx or Envoy upstream keep-alive behave)
sends a request the server refuses, then ``GET /health`` on the same socket. Every
answer must either leave the connection usable (the ``/health`` answer comes back on
it) or say ``Connection: close`` and then close it. Status lines carry their reason
phrases, as Go's ``net/http`` (AnyCable-Go) sends them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass

import h11
import pytest
import trio

from cableway.auth.jwt import encode_token

from .helpers import BROADCAST_KEY, JWT_KEY, config, running

HEALTH_BODY = b"Ah, ha, ha, ha, stayin' alive, stayin' alive."
UPGRADE = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]
CFG = config(allowed_origins=("https://app.example",), max_broadcast_body=4096)
REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Request Entity Too Large",
    422: b"Unprocessable Entity",
    426: b"Upgrade Required",
    431: b"Request Header Fields Too Large",
}


@dataclass
class Answer:
    status: int
    reason: bytes
    close: bool
    #: the server closed the connection after a ``Connection: close`` answer
    closed_after: bool
    #: the ``/health`` answer on the same socket (None after ``Connection: close``)
    health: int | None


async def _receive(conn: h11.Connection, stream: trio.SocketStream) -> h11.Response:
    response = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            return response
        elif isinstance(event, h11.ConnectionClosed):
            raise AssertionError("the server closed the connection before answering")


async def refused_then_health(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    send_body: bool = True,
) -> Answer:
    """``method target`` on a fresh connection, then ``GET /health`` on the same one."""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            hdrs = [("Host", f"127.0.0.1:{port}"), *(headers or [])]
            if method in ("POST", "PUT") or body:
                hdrs.append(("Content-Length", str(len(body))))
            data = conn.send(h11.Request(method=method, target=target, headers=hdrs))
            if send_body:
                data += conn.send(h11.Data(data=body)) if body else b""
                data += conn.send(h11.EndOfMessage())
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(data)
            response = await _receive(conn, stream)
            close = any(
                name == b"connection" and b"close" in value.lower()
                for name, value in response.headers
            )
            if close:
                # it said so: the server must now close (EOF, or a reset after EOF)
                rest = b""
                with contextlib.suppress(trio.BrokenResourceError):
                    while chunk := await stream.receive_some(65536):
                        rest += chunk
                return Answer(response.status_code, response.reason, True, rest == b"", None)
            assert conn.our_state is h11.DONE, "the refused request was not sent whole"
            conn.start_next_cycle()
            await stream.send_all(
                conn.send(h11.Request(method="GET", target="/health", headers=hdrs[:1]))
                + conn.send(h11.EndOfMessage())
            )
            health = await _receive(conn, stream)
            return Answer(response.status_code, response.reason, False, False, health.status_code)


def _check(answer: Answer, status: int) -> None:
    assert answer.status == status, answer
    assert answer.reason == REASONS[status], answer
    if answer.close:
        assert answer.closed_after, "said Connection: close but kept the connection open"
    else:
        assert answer.health == 200, answer


MAIN_CASES = [
    pytest.param("GET", "/events", [], b"", 400, id="events-400-no-channel"),
    pytest.param(
        "GET", "/events?turbo_signed_stream_name=forged--00", [], b"", 400, id="events-400-sig"
    ),
    pytest.param("GET", "/events?stream=s&jid=forged", [], b"", 401, id="events-401-jid"),
    pytest.param(
        "GET",
        f"/events?stream=s&jid={encode_token({'user': 1}, JWT_KEY, exp=1)}",
        [],
        b"",
        401,
        id="events-401-expired",
    ),
    pytest.param("PUT", "/events", [], b"{}", 405, id="events-405"),
    pytest.param("POST", "/events", [], b"x" * 70_000, 413, id="events-413"),
    pytest.param("POST", "/events", [], b"not json\n", 400, id="events-400-post-body"),
    pytest.param("GET", "/nope", [], b"", 404, id="404"),
    pytest.param("POST", "/nope", [], b"a body to drop", 404, id="404-with-body"),
    pytest.param("GET", "/health", [("X-Big", "a" * 20_000)], b"", 431, id="431"),
    pytest.param("GET", "/cable", [], b"", 400, id="ws-400-no-upgrade"),
    pytest.param(
        "GET", "/cable", [*UPGRADE, ("Origin", "https://evil.example")], b"", 403, id="ws-403"
    ),
    pytest.param(
        "GET",
        "/cable",
        [*UPGRADE[:3], ("Sec-WebSocket-Version", "8"), ("Origin", "https://app.example")],
        b"",
        426,
        id="ws-426",
    ),
]


@pytest.mark.parametrize(("method", "target", "headers", "body", "status"), MAIN_CASES)
async def test_a_refusal_on_the_main_port_keeps_the_next_request_working(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes, status: int
) -> None:
    async with running(CFG) as server:
        answer = await refused_then_health(server.main_port, method, target, headers, body)
        _check(answer, status)


AUTH = [("Authorization", f"Bearer {BROADCAST_KEY}")]
GOOD = json.dumps({"stream": "s", "data": "x"}).encode()

BROADCAST_CASES = [
    pytest.param("POST", [("Authorization", "Bearer wrong")], GOOD, 401, True, id="401"),
    pytest.param("POST", [], GOOD, 401, True, id="401-no-key"),
    pytest.param("GET", AUTH, b"", 422, True, id="422"),
    pytest.param("POST", AUTH, b"{not json", 400, True, id="400-bad-json"),
    pytest.param("POST", AUTH, b"x" * 5000, 413, True, id="413"),
    pytest.param("POST", AUTH, b"x" * 5000, 413, False, id="413-body-not-sent"),
]


@pytest.mark.parametrize(("method", "headers", "body", "status", "send_body"), BROADCAST_CASES)
async def test_a_refusal_on_the_broadcast_port_keeps_the_next_request_working(
    method: str, headers: list[tuple[str, str]], body: bytes, status: int, send_body: bool
) -> None:
    async with running(CFG) as server:
        path = server.config.http_broadcast_path
        answer = await refused_then_health(
            server.broadcast_port, method, path, headers, body, send_body=send_body
        )
        if answer.health == 404:  # no /health on the broadcast port: still answered
            answer.health = 200
        _check(answer, status)


API_KEY = "api-key-of-at-least-thirty-two-bytes!!"
API_AUTH = [("Authorization", f"Bearer {API_KEY}")]
USERS = "/api/presence/chat/users"

API_CASES = [
    pytest.param("POST", "/api/publish", [("Authorization", "Bearer no")], GOOD, 401, id="401"),
    pytest.param("POST", "/api/publish", AUTH, GOOD, 401, id="401-broadcast-key"),
    pytest.param("GET", "/api/publish", API_AUTH, b"", 422, id="422-publish"),
    pytest.param("POST", "/api/publish", API_AUTH, b"{not json", 400, id="400-bad-json"),
    pytest.param("POST", "/api/publish", API_AUTH, b"x" * 5000, 413, id="413"),
    pytest.param("GET", USERS, [], b"", 401, id="401-presence"),
    pytest.param("GET", USERS, [("Authorization", "Bearer no")], b"a body", 401, id="401-body"),
    pytest.param("POST", USERS, API_AUTH, b"{}", 422, id="422-presence"),
    pytest.param("POST", USERS, API_AUTH, b"x" * 70_000, 422, id="422-presence-big-body"),
    pytest.param("GET", "/api/presence/chat", API_AUTH, b"", 404, id="404-presence"),
    pytest.param("GET", USERS, API_AUTH, b"", 200, id="200-presence"),
    pytest.param("GET", USERS, API_AUTH, b"a body to drop", 200, id="200-presence-with-body"),
]


@pytest.mark.parametrize(("method", "target", "headers", "body", "status"), API_CASES)
async def test_a_rest_api_answer_keeps_the_next_request_working(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes, status: int
) -> None:
    cfg = dataclasses.replace(CFG, api_secret=API_KEY, broker="memory")
    async with running(cfg) as server:
        answer = await refused_then_health(server.main_port, method, target, headers, body)
        _check(answer, status)


async def test_the_broadcast_fast_path_and_h11_send_reason_phrases() -> None:
    async with running(CFG) as server:
        path = server.config.http_broadcast_path
        ok = await refused_then_health(server.broadcast_port, "POST", path, AUTH, GOOD)
        assert (ok.status, ok.reason, ok.close) == (201, b"Created", False)
        health = await refused_then_health(server.main_port, "GET", "/health")
        assert (health.status, health.reason, health.health) == (200, b"OK", 200)


async def test_the_raw_status_lines_read_as_go_writes_them() -> None:
    async with running(CFG) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.broadcast_port)
        async with stream:
            head = (
                f"POST {server.config.http_broadcast_path} HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {BROADCAST_KEY}\r\nContent-Length: {len(GOOD)}\r\n\r\n"
            ).encode()
            await stream.send_all(head + GOOD)
            with trio.fail_after(5):
                answer = await stream.receive_some(65536)
        assert answer.startswith(b"HTTP/1.1 201 Created\r\n"), answer


async def test_an_sse_refusal_then_a_stream_on_the_same_connection() -> None:
    cfg = config(public_streams=True)
    async with running(cfg) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.main_port)
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            host = [("Host", "127.0.0.1")]
            await stream.send_all(
                conn.send(h11.Request(method="GET", target="/events", headers=host))
                + conn.send(h11.EndOfMessage())
            )
            with trio.fail_after(5):
                refused = await _receive(conn, stream)
            assert refused.status_code == 400
            conn.start_next_cycle()
            target = "/events?stream=s"
            await stream.send_all(
                conn.send(h11.Request(method="GET", target=target, headers=host))
                + conn.send(h11.EndOfMessage())
            )
            with trio.fail_after(5):
                while not isinstance(event := conn.next_event(), h11.Response):
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(65536))
            assert event.status_code == 200
            assert event.reason == b"OK"
            assert dict(event.headers)[b"content-type"].startswith(b"text/event-stream")


async def test_an_event_stream_says_connection_close() -> None:
    """An SSE response ends by closing the connection (the stream is the whole exchange),
    so its head says so: a keep-alive client never reuses the socket after the stream."""
    from cableway.auth.signed_streams import sign_stream_name

    from .helpers import TURBO_KEY

    signed = sign_stream_name("room", TURBO_KEY)
    token = encode_token({"user": 1}, JWT_KEY)
    async with running(CFG) as server:
        port = server.main_port
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                conn = h11.Connection(h11.CLIENT)
                target = f"/events?turbo_signed_stream_name={signed}&jid={token}"
                await stream.send_all(
                    conn.send(h11.Request(method="GET", target=target, headers=[("Host", "t")]))
                    + conn.send(h11.EndOfMessage())
                )
                event = conn.next_event()
                while event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                    event = conn.next_event()
                assert isinstance(event, h11.Response)
                assert event.status_code == 200
                assert dict(event.headers)[b"content-type"].startswith(b"text/event-stream")
                assert (b"connection", b"close") in event.headers
