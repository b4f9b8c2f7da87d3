"""Endpoint path patterns (``--path=/accounts/{tenant}/cable``, ``/admin/cable/*``) routed as
AnyCable-Go's chi router does, refused where chi refuses them; on the trio server and in ASGI.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from trio_websocket import open_websocket_url

from cableway.asgi import CablewayApp
from cableway.config import Config, ConfigError, load_config
from cableway.protocol.routes import Router, endpoint_routes, parse_path_pattern
from cableway.transport import http as http_driver
from cableway.transport.server import Server

from .asgi.test_asgi_unit import FakeClient, ws_scope
from .integration.helpers import config, http, recv_json, running

# --- the matcher -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/cable", "/cable", True),
        ("/cable", "/cable/", False),
        ("/cable", "/Cable", False),
        ("/cable", "/cable/x", False),
        ("/accounts/{tenant}/cable", "/accounts/acme/cable", True),
        ("/accounts/{tenant}/cable", "/accounts/acme%2Fco/cable", True),  # raw path, as chi
        ("/accounts/{tenant}/cable", "/accounts//cable", True),  # chi: empty inside the path
        ("/v{n:[0-9]*}/cable", "/v/cable", False),  # ... but a regexp value is never empty
        ("/accounts/{tenant}/cable", "/accounts/a/b/cable", False),  # never a /
        ("/accounts/{tenant}/cable", "/accounts/acme/cable/", False),
        ("/accounts/{tenant}", "/accounts/acme", True),
        ("/accounts/{tenant}", "/accounts/", False),
        ("/accounts/{tenant}", "/accounts/a/b", False),
        ("/cable/{id}.json", "/cable/7.json", True),
        ("/cable/{id}.json", "/cable/7.8.json", False),  # the value ends at the first "."
        ("/cable/{id}.json", "/cable/7", False),
        ("/v{n:[0-9]+}/cable", "/v12/cable", True),
        ("/v{n:[0-9]+}/cable", "/vx/cable", False),
        ("/v{n:[0-9]+}/cable", "/v/cable", False),
        ("/{a}/{b}", "/x/y", True),
        ("/admin/cable/*", "/admin/cable/", True),
        ("/admin/cable/*", "/admin/cable/a/b", True),
        ("/admin/cable/*", "/admin/cable", False),
        ("/admin/cable/*", "/admin/cablex", False),
        ("/*", "/", True),
        ("/*", "/anything/at/all", True),
        ("/t/{tenant}/*", "/t/acme/x/y", True),
        ("/t/{tenant}/*", "/t/acme", False),
    ],
)
def test_patterns_match_as_chi_matches(pattern: str, path: str, matches: bool) -> None:
    assert parse_path_pattern(pattern).matches(path) is matches


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("cable", "must start with /"),
        ("/admin/*/cable", "a * is only allowed as the last character"),
        ("/a/*{x}", "a * is only allowed as the last character"),
        ("/a/{tenant", "a { has no closing }"),
        ("/a/{x}/b/{x}", "the placeholder {x} is used twice"),
        ("/a/{x:[0-9}", "invalid regular expression in {x:...}"),
        ("/a b", "must not contain a space or tab"),
    ],
)
def test_patterns_chi_refuses_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("{", r"\{").replace("*", r"\*")):
        parse_path_pattern(pattern)


@pytest.mark.parametrize(
    ("routes", "path", "expected"),
    [
        # literal text beats a placeholder, which beats a regexp, which beats *
        ([("/cable/*", "ws"), ("/cable/health", "health")], "/cable/health", "health"),
        ([("/{a}/health", "ws"), ("/cable/*", "sse")], "/cable/health", "sse"),
        ([("/x/*", "ws"), ("/x/{id}", "sse")], "/x/1", "sse"),
        ([("/x/*", "ws"), ("/x/{id}", "sse")], "/x/1/2", "ws"),
        ([("/x/{id:[0-9]+}", "ws"), ("/x/{name}", "sse")], "/x/1", "sse"),
        ([("/x/*", "ws"), ("/x/{id:[0-9]+}", "sse")], "/x/1", "sse"),
        # equal patterns: the first one listed
        ([("/x/{a}", "ws"), ("/x/{b}", "sse")], "/x/1", "ws"),
        ([("/cable", "ws"), ("/cable", "broadcast")], "/cable", "ws"),
        ([("/cable", "ws")], "/nope", None),
    ],
)
def test_the_router_prefers_what_chi_tries_first(
    routes: list[tuple[str, str]], path: str, expected: str | None
) -> None:
    assert Router(routes).lookup(path) == expected


# --- configuration: accepted or refused at start-up, never accepted and ignored ---------------


@pytest.mark.parametrize(
    "flag", ["--path", "--sse_path", "--health-path", "--http_broadcast_path", "--metrics_http"]
)
def test_every_endpoint_option_takes_a_pattern(flag: str) -> None:
    value = "/t/{tenant}/x" if flag != "--path" else "/t/{tenant}/x,/admin/cable/*"
    load_config([f"{flag}={value}"], {})


@pytest.mark.parametrize(
    "flag", ["--path", "--sse_path", "--health-path", "--http_broadcast_path", "--metrics_http"]
)
def test_a_pattern_chi_refuses_is_a_start_up_error_naming_the_option(flag: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config([f"{flag}=/admin/*/cable"], {})
    assert f"for {flag}: " in str(caught.value)
    assert "a * is only allowed as the last character" in str(caught.value)


# --- the trio server ---------------------------------------------------------------------------


async def test_the_server_routes_websocket_placeholders_and_wildcards() -> None:
    cfg = config(
        path=("/accounts/{tenant}/cable", "/admin/cable/*"),
        health_path="/up/{node}",
        sse_path="/sse/{tenant}",
        sse=True,
    )
    async with running(cfg) as server:
        port = server.main_port
        for path in ("/accounts/acme/cable", "/admin/cable/", "/admin/cable/x/y"):
            url = f"ws://127.0.0.1:{port}{path}"
            async with open_websocket_url(url, subprotocols=["actioncable-v1-json"]) as ws:
                assert (await recv_json(ws))["type"] == "welcome"
                await ws._stream.aclose()
        # a plain GET on a WebSocket path is refused as such (400), not unknown (404)
        assert (await http(port, "GET", "/accounts/acme/cable")).status == 400
        for unknown in ("/accounts/cable", "/accounts/a/b/cable", "/admin/cable", "/cable"):
            assert (await http(port, "GET", unknown)).status == 404, unknown
        assert (await http(port, "GET", "/up/node-1")).status == 200
        assert (await http(port, "GET", "/up/")).status == 404
        # the SSE endpoint: no channel asked for is its own 400, not a 404
        sse = await http(port, "GET", "/sse/acme", headers=[("accept", "text/event-stream")])
        assert sse.status == 400
        assert (await http(port, "GET", "/sse/")).status == 404


async def test_the_server_routes_a_metrics_path_pattern() -> None:
    async with running(config(metrics_http="/metrics/{format}")) as server:
        response = await http(server.main_port, "GET", "/metrics/prometheus")
        assert response.status == 200
        assert b"anycable_go_" in response.body
        assert (await http(server.main_port, "GET", "/metrics")).status == 404


async def test_the_server_routes_a_broadcast_path_pattern() -> None:
    cfg = config(http_broadcast_path="/_broadcast/{app}", http_broadcast_port=0)
    async with running(cfg) as server:
        body = b'{"stream":"s","data":"1"}'
        key = [("authorization", f"Bearer {cfg.broadcast_key}")]
        assert (await http(server.broadcast_port, "POST", "/_broadcast/a", body, key)).status == 201
        assert (await http(server.broadcast_port, "POST", "/_broadcast", body, key)).status == 404


# --- the ASGI app ------------------------------------------------------------------------------


async def _asgi_status(app: CablewayApp, path: str) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": []}
    await app(scope, receive, send)  # type: ignore[arg-type]
    return int(sent[0]["status"])


def test_the_asgi_app_routes_patterns() -> None:
    cfg = Config(path=("/accounts/{tenant}/cable", "/admin/cable/*"), health_path="/up/{node}")

    async def scenario() -> None:
        app = CablewayApp(cfg)
        assert await _asgi_status(app, "/accounts/acme/cable") == 400  # the WebSocket path
        assert await _asgi_status(app, "/admin/cable/x") == 400
        assert await _asgi_status(app, "/accounts/cable") == 404
        assert await _asgi_status(app, "/up/n1") == 200
        client = FakeClient(app, ws_scope("/accounts/acme/cable"))
        client.incoming.put_nowait({"type": "websocket.connect"})
        client.start()
        await client.wait_until(lambda: bool(client.texts()))
        assert client.texts()[0]["type"] == "welcome"
        client.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await client.finished()
        refused = FakeClient(app, ws_scope("/accounts/a/b/cable"))
        refused.incoming.put_nowait({"type": "websocket.connect"})
        refused.start()
        await refused.finished()
        assert refused.sent[0]["type"] == "websocket.close"
        await app.aclose()

    asyncio.run(scenario())


# --- the route table: one home for both drivers ----------------------------------------------


def test_the_route_table_of_each_listener() -> None:
    """Config -> (path, endpoint) in registration order; what a listener serves is asked."""
    cfg = Config(
        path=("/cable", "/admin/cable/*"),
        sse=True,
        metrics_http="/metrics",
        api_path="/api",
        health_path="/up",
        http_broadcast_path="/_broadcast",
    )
    everything = endpoint_routes(cfg, lambda _what: True, main=True)
    assert everything == (
        ("/cable", "ws"),
        ("/admin/cable/*", "ws"),
        ("/_broadcast", "broadcast"),
        ("/events", "sse"),
        ("/metrics", "metrics"),
        ("/up", "health"),
        ("/api/publish", "api_publish"),
        ("/api/presence/*", "api_presence"),
    )
    # a listener of its own (say the broadcast port) serves only what it is asked to
    broadcast_only = endpoint_routes(cfg, lambda what: what == "broadcast", main=False)
    assert broadcast_only == (("/_broadcast", "broadcast"),)
    # no --metrics_http, no --sse: no such routes, whatever the listener serves
    plain = endpoint_routes(
        dataclasses.replace(cfg, metrics_http=None, sse=False), lambda _what: False, main=True
    )
    assert plain == (("/cable", "ws"), ("/admin/cable/*", "ws"), ("/up", "health"))


def test_both_drivers_route_a_config_alike() -> None:
    """The trio server's main listener and the ASGI app send each path to the same endpoint
    (the API has a port of its own; the ASGI app serves no API)."""
    cfg = Config(
        path=("/accounts/{tenant}/cable",),
        sse=True,
        sse_path="/sse/*",
        metrics_http="/metrics/{node}",
        health_path="/up",
        broadcast_key="k",
        port=8080,
        http_broadcast_port=8080,  # the broadcast endpoint on the main listener, as in ASGI
    )
    server = Server(cfg)
    trio_router = http_driver._router(server, "main")
    app = CablewayApp(cfg)
    paths = ["/accounts/a/cable", "/sse/x/y", "/metrics/n1", "/up", "/_broadcast", "/nothing"]
    assert [app.router.lookup(p) for p in paths] == [trio_router.lookup(p) for p in paths]
    assert [app.router.lookup(p) for p in paths] == [
        "ws",
        "sse",
        "metrics",
        "health",
        "broadcast",
        None,
    ]
