"""cableway.fastapi: the pooled async broadcaster (asyncio and trio, no worker threads), the
publisher dependency, Jinja2Templates helpers and TurboStreamResponse."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any

import pytest

pytest.importorskip("httpx2")
pytest.importorskip("python_multipart")
fastapi = pytest.importorskip("fastapi")
jinja2 = pytest.importorskip("jinja2")

from fastapi import FastAPI, Form, Request  # noqa: E402
from fastapi.templating import Jinja2Templates  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from cableway.auth.keys import derive_broadcast_key  # noqa: E402
from cableway.fastapi import (  # noqa: E402
    AsyncBroadcaster,
    Cableway,
    Publisher,
    TurboStreamResponse,
)
from cableway.testing import BroadcastCapture  # noqa: E402
from cableway.toolkit import turbo_stream  # noqa: E402
from cableway.toolkit.broadcaster import BroadcastAuthError, BroadcastUnavailable  # noqa: E402
from cableway.toolkit.integration import IntegrationSettings  # noqa: E402
from tests.frameworks.pages import Page  # noqa: E402
from tests.frameworks.test_jinja_flask import PAGE, SECRET  # noqa: E402
from tests.toolkit.stub_http import closed_port  # noqa: E402

SETTINGS = IntegrationSettings(secret=SECRET, websocket_url="ws://127.0.0.1:8080/cable")


# --- the async broadcaster --------------------------------------------------------------------------------


class _KeepAlive:
    """An HTTP/1.1 keep-alive server on 127.0.0.1 counting connections and requests."""

    def __init__(self, status: int = 201) -> None:
        self.connections = 0
        self.requests: list[tuple[dict[str, str], bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                owner.connections += 1

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                owner.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/_broadcast"


@contextmanager
def keep_alive_server(status: int = 201) -> Iterator[_KeepAlive]:
    server = _KeepAlive(status)
    thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join(timeout=10)


def _no_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the async broadcaster must not use a worker thread")

    monkeypatch.setattr(asyncio, "to_thread", refuse)
    import trio

    monkeypatch.setattr(trio.to_thread, "run_sync", refuse)


async def _three_broadcasts(url: str) -> None:
    async with AsyncBroadcaster(url, secret=SECRET) as broadcaster:
        await broadcaster.broadcast("a", "<p>1</p>")
        await broadcaster.broadcast_many([("b", {"n": 2}), ("c", 3)])
        await broadcaster.disconnect({"user_id": 1})


def test_async_broadcaster_reuses_one_connection_on_asyncio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_threads(monkeypatch)
    with keep_alive_server() as server:
        asyncio.run(_three_broadcasts(server.url))
    assert server.connections == 1
    assert len(server.requests) == 3
    headers, body = server.requests[0]
    assert headers["authorization"] == f"Bearer {derive_broadcast_key(SECRET)}"
    assert json.loads(body) == {"stream": "a", "data": '"<p>1</p>"'}
    assert json.loads(server.requests[1][1]) == [
        {"stream": "b", "data": '{"n":2}'},
        {"stream": "c", "data": "3"},
    ]
    assert json.loads(server.requests[2][1])["command"] == "disconnect"


async def test_async_broadcaster_runs_on_trio(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_threads(monkeypatch)
    with keep_alive_server() as server:
        await _three_broadcasts(server.url)
    assert server.connections == 1
    assert len(server.requests) == 3


def test_async_broadcaster_errors_match_the_sync_ones() -> None:
    async def send(url: str) -> None:
        async with AsyncBroadcaster(url, key="k") as broadcaster:
            await broadcaster.broadcast("s", 1)

    with keep_alive_server(status=401) as server, pytest.raises(BroadcastAuthError):
        asyncio.run(send(server.url))
    with pytest.raises(BroadcastUnavailable):
        asyncio.run(send(f"http://127.0.0.1:{closed_port()}/_broadcast"))
    with pytest.raises(ValueError, match="http"):
        AsyncBroadcaster("ftp://x/")


def _fastapi_app(settings: IntegrationSettings) -> Any:
    cable = Cableway(settings, identifiers=lambda request: {"user_id": request.query_params["u"]})
    app = FastAPI(lifespan=cable.lifespan)
    cable.init_app(app)
    loader = jinja2.DictLoader({"page.html": PAGE})
    templates = cable.templates(
        Jinja2Templates(env=jinja2.Environment(loader=loader, autoescape=True))
    )

    @app.get("/rooms/{room_id}")
    async def room(request: Request, room_id: int) -> Any:
        context = {"room_id": room_id, "private": "p", "text": "<i>"}
        return templates.TemplateResponse(request, "page.html", context)

    @app.post("/rooms/{room_id}/messages")
    async def create(room_id: int, text: Annotated[str, Form()], live: Publisher) -> Any:
        html = turbo_stream.append("messages", f"<p>{turbo_stream.escape(text)}</p>")
        sent = await live.broadcast(("room", room_id, "messages"), html)
        return TurboStreamResponse(html, status_code=201 if sent else 202)

    return app


def test_fastapi_dependency_broadcast_reaches_the_page(
    cableway_broadcasts: BroadcastCapture,
) -> None:
    with TestClient(_fastapi_app(SETTINGS)) as client:
        page_html = client.get("/rooms/9", params={"u": "v"}).text
        assert "<p>&lt;i&gt;</p>" in page_html
        page = Page(page_html)
        browser = cableway_broadcasts.connect(page.token)
        assert browser.identifiers == {"user_id": "v"}
        assert browser.subscribe(page.signed_streams[0])
        response = client.post("/rooms/9/messages", data={"text": "<b>"})
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("text/vnd.turbo-stream.html")
    expected = turbo_stream.append("messages", "<p>&lt;b&gt;</p>")
    assert response.text == expected
    assert browser.turbo_streams == [expected]


def test_fastapi_broadcast_goes_to_the_endpoint_and_failures_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with keep_alive_server() as server:
        settings = IntegrationSettings(secret=SECRET, http_broadcast_url=server.url)
        with TestClient(_fastapi_app(settings)) as client:
            for text in ("one", "two"):
                assert client.post("/rooms/1/messages", data={"text": text}).status_code == 201
    assert [json.loads(body)["stream"] for _, body in server.requests] == ["room:1:messages"] * 2
    assert server.connections == 1  # one pooled connection across requests
    down = IntegrationSettings(
        secret=SECRET, http_broadcast_url=f"http://127.0.0.1:{closed_port()}/_broadcast"
    )
    with TestClient(_fastapi_app(down)) as client:
        assert client.post("/rooms/1/messages", data={"text": "x"}).status_code == 202
    assert "BroadcastUnavailable" in caplog.text
