"""cableway.demo (the pure parts of ``cableway --demo``) and its transport, handle_demo.

The page in a real browser is tested in tests/interop/test_browser.py.
"""

from __future__ import annotations

import functools
import hashlib
import html.parser
import json
import re
import shlex
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import jwt
import pytest
import trio
import trio.testing

from cableway import demo
from cableway.auth.keys import derive_broadcast_key
from cableway.config import Config, load_config
from cableway.streams import verify_signed_stream_name
from cableway.transport.demo import handle_demo, load_asset
from cableway.transport.httpconn import Conn, Request

from .integration.helpers import SseClient, cable, recv_json, running, subscribe, welcome

SECRET = "0123456789abcdef0123456789abcdef"
TURBO_SHA256 = "4867205861f604ded25a2e3ebeb9f1de7313ee7e7d211678e66102d418e550b1"


def demo_of(*argv: str, secret: str = SECRET) -> tuple[Config, str | None]:
    return demo.demo_config(load_config(["--demo", *argv], {}), new_secret=lambda: secret)


# --- demo_config ----------------------------------------------------------------------------


def test_without_secrets_one_is_generated_as_if_given_with_secret() -> None:
    config, generated = demo_of()
    assert generated == SECRET
    as_if, nothing = demo.demo_config(load_config(["--demo", f"--secret={SECRET}"], {}))
    assert nothing is None
    assert config == as_if
    assert config.secret == config.jwt_secret == config.streams_secret == SECRET
    assert config.turbo_streams_secret == SECRET
    assert config.broadcast_key == derive_broadcast_key(SECRET)
    assert config.turbo_streams is True
    assert config.http_broadcast_port == config.port == 8080  # the page posts to its origin
    assert config.enforce_jwt is False  # the demo's visitors stay anonymous


def test_configured_secrets_are_kept() -> None:
    config, generated = demo_of("--secret=mine", "--broadcast_key=k", "--port=9000")
    assert generated is None
    assert (config.secret, config.turbo_streams_secret, config.broadcast_key) == ("mine",) * 2 + (
        "k",
    )
    assert config.http_broadcast_port == 9000
    config, generated = demo_of("--broadcast_key=k", "--turbo_streams_secret=t")
    assert generated == SECRET
    assert (config.broadcast_key, config.turbo_streams_secret) == ("k", "t")


def test_public_mode_keeps_broadcasting_without_a_key() -> None:
    config, generated = demo_of("--public")
    assert generated == SECRET
    assert config.broadcast_key is None
    assert config.turbo_streams_secret == SECRET


def test_broadcasting_over_http_is_turned_on_and_moved_to_the_main_port() -> None:
    base = replace(Config(demo=True), broadcast_adapters=(), http_broadcast_port=8090)
    config, _ = demo.demo_config(base, new_secret=lambda: SECRET)
    assert config.broadcast_adapters == ("http",)
    assert config.http_broadcast_port == config.port


def test_an_empty_generated_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        demo.demo_config(Config(demo=True), new_secret=lambda: "")


def test_generated_secrets_are_random_and_long() -> None:
    first, second = (demo.demo_config(Config(demo=True))[1] for _ in range(2))
    assert first is not None
    assert second is not None
    assert first != second
    assert re.fullmatch(r"[0-9a-f]{32}", first)


# --- who may see it -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "host_header", "bind_host", "allowed"),
    [
        ("127.0.0.1", "localhost:8080", "localhost", True),
        ("127.0.0.1", "127.0.0.1:8080", "localhost", True),
        ("127.5.6.7", "127.0.0.1", "127.0.0.1", True),
        ("::1", "[::1]:8080", "::1", True),
        ("::ffff:127.0.0.1", "localhost", "localhost", True),
        ("127.0.0.1", "app.localhost:8080", "localhost", True),
        ("127.0.0.1", "LOCALHOST.", "localhost", True),
        # a non-loopback peer, or no peer address at all
        ("192.168.1.20", "localhost:8080", "localhost", False),
        (None, "localhost:8080", "localhost", False),
        ("10.0.0.1", "localhost", "127.0.0.1", False),
        # DNS rebinding: a loopback peer, but a page of another domain
        ("127.0.0.1", "evil.example:8080", "localhost", False),
        ("127.0.0.1", "evil.example", "localhost", False),
        ("127.0.0.1", None, "localhost", False),
        ("127.0.0.1", "localhost.evil.example", "localhost", False),
        # bound to every interface on purpose: shared with everyone who can reach it
        ("192.168.1.20", "myhost.lan:8080", "0.0.0.0", True),
        (None, None, "0.0.0.0", True),
        ("10.0.0.1", "10.0.0.2", "10.0.0.2", True),
        ("10.0.0.1", "x", "", True),
    ],
)
def test_access(peer: str | None, host_header: str | None, bind_host: str, allowed: bool) -> None:
    refusal = demo.access_refusal(peer=peer, host_header=host_header, bind_host=bind_host)
    assert (refusal is None) is allowed, refusal


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("dev.localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("example.com", False),
        ("192.168.0.1", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert demo.is_loopback_host(host) is loopback


# --- the page -------------------------------------------------------------------------------


class _Parsed(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs: str) -> dict[str, str | None]:
        for name, found in self.elements:
            if name == tag and all(found.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                return found
        raise AssertionError(f"no <{tag}> with {attrs}")

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [found for name, found in self.elements if name == tag]


def parse(page: bytes) -> _Parsed:
    parsed = _Parsed()
    parsed.feed(page.decode("utf-8"))
    return parsed


def test_the_page_subscribes_both_panes_with_names_the_server_accepts() -> None:
    config, _ = demo_of()
    page = parse(demo.render_page(demo.demo_page(config)))
    assert page.find("meta", name="action-cable-url")["content"] == "/cable"
    assert page.find("meta", name="cableway-broadcast-url")["content"] == "/_broadcast"
    assert page.find("meta", name="cableway-broadcast-key")["content"] == config.broadcast_key
    source = page.find("turbo-cable-stream-source", channel="Turbo::StreamsChannel")
    assert verify_signed_stream_name(str(source["signed-stream-name"]), SECRET) == (
        "cableway-demo:websocket"
    )
    sse = urlsplit(str(page.find("turbo-stream-source")["src"]))
    assert sse.path == "/events"
    [signed] = parse_qs(sse.query)["turbo_signed_stream_name"]
    assert verify_signed_stream_name(signed, SECRET) == "cableway-demo:sse"
    page.find("ul", id="websocket-messages")
    page.find("ul", id="sse-messages")
    form = page.find("form", id="demo-form")
    assert form["data-turbo"] == "false"
    assert json.loads(str(form["data-panes"])) == [
        {"name": "websocket", "stream": "cableway-demo:websocket", "target": "websocket-messages"},
        {"name": "sse", "stream": "cableway-demo:sse", "target": "sse-messages"},
    ]


def test_the_page_loads_nothing_from_elsewhere() -> None:
    config, _ = demo_of()
    page = parse(demo.render_page(demo.demo_page(config)))
    urls = [str(attrs.get("src") or attrs.get("href")) for _, attrs in page.elements]
    urls = [url for url in urls if url != "None"]
    assert "/demo/demo.js" in urls
    assert "/demo/demo.css" in urls
    assert all(url.startswith(("/", "data:")) for url in urls), urls
    assert b"https://" not in load_asset("demo.js")
    assert b"http://" not in load_asset("demo.js")
    assert b'import "./turbo.js"' in load_asset("demo.js")


def test_the_page_escapes_what_it_interpolates() -> None:
    page = demo.DemoPage(
        cable_url='/cable?x="><script>',
        websocket_signed_stream='"><b>',
        sse_url="/events?a=<b>&c=\"'",
        broadcast_url="/_broadcast",
        broadcast_key='k"><script>alert(1)</script>',
        curl="curl '<x>'",
    )
    text = demo.render_page(page).decode()
    assert "<script>alert" not in text
    assert "<b>" not in text
    assert "&quot;&gt;&lt;b&gt;" in text
    parsed = parse(demo.render_page(page))
    assert parsed.find("meta", name="cableway-broadcast-key")["content"] == page.broadcast_key
    assert parsed.find("turbo-stream-source")["src"] == page.sse_url
    assert parsed.find("turbo-cable-stream-source")["signed-stream-name"] == '"><b>'


def test_without_a_key_or_sse_the_page_says_so() -> None:
    config, _ = demo_of("--public", "--sse=false")
    page = demo.demo_page(config)
    assert page.broadcast_key is None
    assert page.sse_url is None
    text = demo.render_page(page)
    parsed = parse(text)
    assert not [m for m in parsed.all("meta") if m.get("name") == "cableway-broadcast-key"]
    assert not parsed.all("turbo-stream-source")
    assert b"--sse=false" in text
    assert json.loads(str(parsed.find("form", id="demo-form")["data-panes"]))[0]["name"] == (
        "websocket"
    )
    assert len(json.loads(str(parsed.find("form", id="demo-form")["data-panes"]))) == 1


def test_an_enforced_jwt_puts_a_token_on_both_transports() -> None:
    config, _ = demo_of("--enforce_jwt", "--jwt_param=token")
    page = demo.demo_page(config)
    cable = parse_qs(urlsplit(page.cable_url).query)
    sse = parse_qs(urlsplit(str(page.sse_url)).query)
    assert cable["token"] == sse["token"]
    claims = jwt.decode(cable["token"][0], SECRET, algorithms=["HS256"])
    assert json.loads(claims["ext"]) == {"user": "demo"}
    assert "?" not in demo.demo_page(demo_of()[0]).cable_url  # anonymous otherwise


def test_cleartext_turbo_names_are_not_signed() -> None:
    config, _ = demo_of("--turbo_rails_cleartext", "--secret=s", "--turbo_streams_secret=none")
    assert config.turbo_streams_secret is None
    assert demo.demo_page(config).websocket_signed_stream == "cableway-demo:websocket"


def test_curl_example_appends_to_both_panes() -> None:
    config, _ = demo_of()
    words = shlex.split(demo.curl_example(config, "http://localhost:8080"))
    assert words[:5] == ["curl", "-sS", "-X", "POST", "http://localhost:8080/_broadcast"]
    assert words[words.index("-H") + 1] == f"Authorization: Bearer {config.broadcast_key}"
    batch = json.loads(words[words.index("--data") + 1])
    assert batch == [
        {
            "stream": "cableway-demo:websocket",
            "data": '<turbo-stream action="append" target="websocket-messages">'
            "<template><li>Hello from curl</li></template></turbo-stream>",
        },
        {
            "stream": "cableway-demo:sse",
            "data": '<turbo-stream action="append" target="sse-messages">'
            "<template><li>Hello from curl</li></template></turbo-stream>",
        },
    ]
    public, _ = demo_of("--public")
    assert "Authorization" not in demo.curl_example(public, "http://x")
    assert "&lt;b&gt;" in demo.curl_example(config, "http://x", text="<b>")


def test_banner_prints_the_url_the_secret_the_key_and_the_curl_once() -> None:
    config, generated = demo_of("--port=9001")
    banner = demo.startup_banner(config, generated)
    assert "open http://localhost:9001/ in a browser" in banner
    assert f"Secret generated for this run: {SECRET} (restart with --secret={SECRET}" in banner
    assert f"\nBroadcast key: {config.broadcast_key}\n" in banner
    assert f"\n  {demo.curl_example(config, 'http://localhost:9001')}\n" in banner
    assert "loopback clients only" in banner
    assert banner.count(SECRET) == 2
    given, none = demo_of("--secret=mine")
    assert "generated" not in demo.startup_banner(given, none)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("localhost", "http://localhost:8080/"),
        ("127.0.0.1", "http://127.0.0.1:8080/"),
        ("::1", "http://[::1]:8080/"),
        ("0.0.0.0", "http://localhost:8080/"),
    ],
)
def test_banner_url(host: str, url: str) -> None:
    config, generated = demo_of(f"--host={host}")
    assert f"open {url} in a browser" in demo.startup_banner(config, generated)


def test_banner_warns_when_bound_beyond_loopback() -> None:
    config, generated = demo_of("--host=0.0.0.0")
    banner = demo.startup_banner(config, generated)
    assert "WARNING: --host=0.0.0.0 is not a loopback address" in banner
    public, _ = demo_of("--public")
    assert "Broadcast key: none (public mode" in demo.startup_banner(public, None)


def test_routes() -> None:
    assert demo.owns("/")
    for path in ("/demo/turbo.js", "/demo/demo.js", "/demo/demo.css", "/demo/LICENSE.md"):
        assert demo.owns(path)
    for path in ("/cable", "/events", "/health", "/_broadcast", "/demo/", "/demo/../x", "/x"):
        assert not demo.owns(path)


def test_assets_ship_with_the_package() -> None:
    files = resources.files("cableway").joinpath("demo_assets")
    for asset in demo.ASSETS.values():
        assert files.joinpath(asset.file).is_file(), asset.file
    turbo = load_asset("turbo.js")
    assert hashlib.sha256(turbo).hexdigest() == TURBO_SHA256  # see demo_assets/LICENSE.md
    assert turbo.startswith(b"/*!\nTurbo 8.0.23\n")
    assert b"export { Turbo$1 as Turbo, cable };" in turbo
    assert TURBO_SHA256 in load_asset("LICENSE.md").decode()


# --- handle_demo, on its own ----------------------------------------------------------------


@dataclass
class _FakeServer:
    config: Config


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@asynccontextmanager
async def demo_listener(config: Config) -> AsyncIterator[tuple[int, list[bool]]]:
    """A TCP server on 127.0.0.1 that reads one request and hands it to handle_demo (a 404
    when it returns False); yields (port, what handle_demo returned per request)."""
    returned: list[bool] = []
    server: Any = _FakeServer(config)

    async def serve_one(stream: trio.SocketStream) -> None:
        conn = Conn(stream, 16384)
        async with stream:
            event = await conn.next_event()
            assert isinstance(event, h11.Request)
            handled = await handle_demo(server.config, conn, Request(event))
            returned.append(handled)
            if not handled:
                await conn.respond(404, b"not the demo's")

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(
            functools.partial(trio.serve_tcp, serve_one, 0, host="127.0.0.1")
        )
        yield listener.socket.getsockname()[1], returned
        nursery.cancel_scope.cancel()


async def ask(port: int, method: str, target: str, host: str | None = None) -> Answer:
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            headers = [("host", host or f"127.0.0.1:{port}"), ("connection", "close")]
            request = h11.Request(method=method, target=target, headers=headers)
            await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
            response: h11.Response | None = None
            body = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    body += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            assert response is not None
            headers_out = {k.decode(): v.decode() for k, v in response.headers}
            return Answer(response.status_code, headers_out, body)


async def test_handle_demo_serves_the_page_and_the_assets() -> None:
    config, _ = demo_of("--host=127.0.0.1")
    async with demo_listener(config) as (port, returned):
        page = await ask(port, "GET", "/")
        assert page.status == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-anycable-version"].startswith("cableway-")
        assert f'content="{config.broadcast_key}"'.encode() in page.body
        assert f"curl -sS -X POST http://127.0.0.1:{port}/_broadcast".encode() in page.body
        for path, asset in demo.ASSETS.items():
            answer = await ask(port, "GET", path)
            assert answer.status == 200
            assert answer.headers["content-type"] == asset.content_type
            assert answer.body == load_asset(asset.file)
        head = await ask(port, "HEAD", "/demo/turbo.js")
        assert head.status == 200
        assert head.body == b""
        assert head.headers["content-length"] == str(len(load_asset("turbo.js")))
        assert (await ask(port, "POST", "/")).status == 405
        assert (await ask(port, "GET", "/cable")).status == 404
        assert (await ask(port, "GET", "/demo/../demo/demo.js")).status == 404
    assert returned == [True] * (3 + len(demo.ASSETS)) + [False, False]


async def test_handle_demo_refuses_other_host_names_on_a_loopback_bind() -> None:
    config, _ = demo_of("--host=127.0.0.1")
    async with demo_listener(config) as (port, _):
        for path in ("/", "/demo/demo.js"):
            refused = await ask(port, "GET", path, host="rebound.example:8080")
            assert refused.status == 403
            assert b"only answers to localhost" in refused.body
            assert b"broadcast" not in refused.body
        assert (await ask(port, "GET", "/", host=f"localhost:{port}")).status == 200


async def test_handle_demo_serves_anyone_on_a_non_loopback_bind() -> None:
    config, _ = demo_of("--host=0.0.0.0")
    async with demo_listener(config) as (port, _):
        assert (await ask(port, "GET", "/", host="myhost.lan")).status == 200


async def test_handle_demo_refuses_a_stream_without_a_peer_address() -> None:
    config, _ = demo_of("--host=localhost")
    client, server_side = trio.testing.memory_stream_pair()
    conn = Conn(server_side, 16384)
    await client.send_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
    event = await conn.next_event()
    assert isinstance(event, h11.Request)
    server: Any = _FakeServer(config)
    assert await handle_demo(server.config, conn, Request(event))
    with trio.fail_after(5):
        data = await client.receive_some(65536)
    assert data.startswith(b"HTTP/1.1 403 ")


# --- the whole server (cableway --demo) -----------------------------------------------------


@pytest.fixture
def demo_server_config() -> Config:
    config, _ = demo_of("--host=127.0.0.1", "--port=8080")
    return replace(config, port=0, http_broadcast_port=0, broker="none")


async def test_the_page_posts_to_the_real_endpoint_and_both_transports_deliver(
    demo_server_config: Config,
) -> None:
    """What demo.js does, without a browser: read the page, subscribe like its two stream
    sources, POST the batch with the page's key, and see each transport deliver its part."""
    async with running(demo_server_config) as server:
        port = server.main_port
        page = parse((await ask(port, "GET", "/")).body)
        key = str(page.find("meta", name="cableway-broadcast-key")["content"])
        signed = str(page.find("turbo-cable-stream-source")["signed-stream-name"])
        identifier = json.dumps(
            {"channel": "Turbo::StreamsChannel", "signed_stream_name": signed},
            separators=(",", ":"),
        )
        sse_url = str(page.find("turbo-stream-source")["src"])
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream, cable(server) as ws:
            await welcome(ws)
            assert (await subscribe(ws, identifier))["type"] == "confirm_subscription"
            sse = SseClient(stream)
            h11_request = h11.Request(
                method="GET", target=sse_url, headers=[("host", f"127.0.0.1:{port}")]
            )
            await stream.send_all(sse.conn.send(h11_request) + sse.conn.send(h11.EndOfMessage()))
            await sse.start()
            assert sse.status == 200
            batch = json.loads(shlex.split(demo.curl_example(server.config, "x"))[-1])
            body = json.dumps(batch).encode()
            answer = await _post(port, body, key)
            assert answer == 201
            message = await recv_json(ws)
            assert message["message"] == batch[0]["data"]
            while True:
                event = await sse.event()
                assert event is not None
                if "event" not in event:
                    break
            assert event["data"] == batch[1]["data"]
            assert await _post(port, body, "wrong-key") == 401


async def _post(port: int, body: bytes, key: str) -> int:
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            headers = [
                ("host", f"127.0.0.1:{port}"),
                ("content-type", "application/json"),
                ("authorization", f"Bearer {key}"),
                ("content-length", str(len(body))),
            ]
            request = h11.Request(method="POST", target="/_broadcast", headers=headers)
            await stream.send_all(conn.send(request) + conn.send(h11.Data(data=body)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    return int(event.status_code)
