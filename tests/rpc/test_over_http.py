"""A whole session over real HTTP, sent the way AnyCable-Go sends it (rpc.md §3.2: one
keep-alive connection, the spec's headers, Go's User-Agent and Accept-Encoding): the ASGI
app under uvicorn and the WSGI app under wsgiref, both on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from cableway.testing import capture_broadcasts
from tests.asgi.host import hosted

from .chat import IDENT, KEY, SID, GoSession, make_app

GO_HEADERS = {
    "Content-Type": "application/json",
    "Authorization": f"Bearer {KEY}",
    "X-Anycable-Meta-Sid": SID,
    "X-Anycable-Meta-Protov": "v1",
    "User-Agent": "Go-http-client/1.1",
    "Accept-Encoding": "gzip",
}


def go_client(
    port: int,
) -> tuple[http.client.HTTPConnection, Callable[[str, bytes], tuple[int, Any]]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def post(path: str, body: bytes) -> tuple[int, Any]:
        conn.request("POST", path, body=body, headers=GO_HEADERS)
        response = conn.getresponse()
        data = response.read()
        assert response.getheader("Content-Length") == str(len(data))
        if response.status != 200:
            return response.status, data.decode()
        assert response.getheader("Content-Type") == "application/json"
        return 200, json.loads(data)

    return conn, post


def run_session(post: Callable[[str, bytes], tuple[int, Any]], events: list[Any]) -> None:
    session = GoSession(make_app(events), post=post)
    with capture_broadcasts() as broadcasts:
        assert session.connect().status == 1
        session.command("subscribe")
        session.command("message", data={"action": "speak", "message": "hi"})
        session.command("message", data={"action": "remember", "message": "again"})
        session.command("message", data={"action": "typing"})
    assert session.received == [
        {"type": "welcome", "sid": SID},
        {"type": "confirm_subscription", "identifier": IDENT},
        {"identifier": IDENT, "message": {"echo": "hi"}},
    ]
    assert broadcasts.on("room:42") == [{"message": "hi", "from": "alice"}, {"typing": "alice"}]
    assert session.disconnect().status == 1
    assert events[-2:] == [
        ("unsubscribed", {"room": "42"}, {"last": "again"}),
        ("disconnect", {"user": "alice"}),
    ]
    assert post("/_anycable/ping", b"{}")[0] == 404


def test_asgi_app_under_uvicorn() -> None:
    events: list[Any] = []
    # the app object is only used for its ASGI form here; GoSession posts over HTTP
    with hosted(make_app(events).asgi()) as host:
        conn, post = go_client(host.port)
        try:
            run_session(post, events)
        finally:
            conn.close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def wsgi_server(app: Any) -> Iterator[int]:
    server = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_wsgi_app_under_wsgiref() -> None:
    events: list[Any] = []
    with wsgi_server(make_app(events).wsgi()) as port:

        def post(path: str, body: bytes) -> tuple[int, Any]:
            # wsgiref answers HTTP/1.0 and closes: one connection per call
            conn, send = go_client(port)
            try:
                return send(path, body)
            finally:
                conn.close()

        run_session(post, events)
