"""Turbo in a real browser: Debian's headless Chromium, driven by playwright-core.

* A page served by **another origin** (a static site on its own port) loads the published ESM
  builds of ``@hotwired/turbo`` and ``@hotwired/turbo-rails`` (plus ``@rails/actioncable``,
  which turbo-rails imports) and subscribes with both Turbo stream sources:
  ``<turbo-cable-stream-source>`` over WebSocket and ``<turbo-stream-source>`` over SSE.
  Broadcasts built with ``cableway.toolkit.turbo_stream`` and sent with ``cableway.toolkit.broadcaster``
  ``append``, ``replace`` and ``remove`` elements; the test asserts the DOM.
* ``cableway --demo``: the page the server serves itself; the form goes through the real
  ``/_broadcast`` and the message shows up in both panes.

Screenshots are saved under ``artifacts/browser/`` (git-ignored) and their paths printed.
"""

from __future__ import annotations

import json
import os
import shlex
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from cableway.toolkit import turbo_stream
from cableway.toolkit.broadcaster import Broadcaster
from cableway.toolkit.turbo_stream import escape

from .conftest import (
    NODE_MODULES,
    REPO_ROOT,
    SERVER_ENV,
    BrowserClient,
    CablewayServer,
    StaticSite,
)
from .conftest import screenshot_path as _screenshot_path

pytestmark = pytest.mark.interop

PANES = ("ws", "sse")


def _import_map() -> dict[str, str]:
    """Bare specifiers as a bundler resolves them, pointing at the installed packages' own
    ESM files (no build step). turbo-rails' sources import their siblings without the
    ``.js`` extension, which a bundler adds; the map does the same for those URLs."""
    turbo_rails = "/node_modules/@hotwired/turbo-rails/app/javascript/turbo"
    imports = {
        "@hotwired/turbo": "/node_modules/@hotwired/turbo/dist/turbo.es2017-esm.js",
        "@hotwired/turbo-rails": f"{turbo_rails}/index.js",
        "@rails/actioncable/src": (
            "/node_modules/@rails/actioncable/app/assets/javascripts/actioncable.esm.js"
        ),
    }
    sources = NODE_MODULES / "@hotwired/turbo-rails/app/javascript/turbo"
    for source in sorted(sources.glob("*.js")):
        imports[f"{turbo_rails}/{source.stem}"] = f"{turbo_rails}/{source.name}"
    return imports


def _turbo_page(*, cable_url: str, signed_stream: str, events_url: str | None) -> bytes:
    """The page; without ``events_url``, no SSE source (its list stays)."""
    sse_source = (
        f'<turbo-stream-source src="{escape(events_url)}"></turbo-stream-source>'
        if events_url is not None
        else ""
    )
    return f"""<!doctype html>
<html>
<head>
  <meta charset="utf-8">
  <title>Cableway interop: Turbo in Chromium</title>
  <link rel="icon" href="data:,">
  <meta name="action-cable-url" content="{escape(cable_url)}">
  <script type="importmap">{json.dumps({"imports": _import_map()})}</script>
  <script type="module">import "@hotwired/turbo-rails"</script>
  <style>body {{ font-family: sans-serif }} section {{ display: inline-block; width: 45%;
    vertical-align: top }} .replaced {{ color: darkgreen }}</style>
</head>
<body>
  <section>
    <h2>WebSocket: turbo-cable-stream-source</h2>
    <turbo-cable-stream-source channel="Turbo::StreamsChannel"
      signed-stream-name="{escape(signed_stream)}"></turbo-cable-stream-source>
    <ul id="ws-list"><li id="ws-item-0">initial</li></ul>
  </section>
  <section>
    <h2>SSE: turbo-stream-source</h2>
    {sse_source}
    <ul id="sse-list"><li id="sse-item-0">initial</li></ul>
  </section>
</body>
</html>
""".encode()


def _sse_ready(url_part: str) -> Callable[[dict[str, Any]], bool]:
    def ready(event: dict[str, Any]) -> bool:
        return (
            event.get("event") == "response"
            and url_part in str(event.get("url"))
            and event.get("status") == 200
        )

    return ready


def _save_screenshot(client: BrowserClient, request: pytest.FixtureRequest) -> None:
    path = _screenshot_path(request)
    client.call("screenshot", path=str(path))
    assert path.is_file()
    assert path.stat().st_size > 0
    print(f"\nscreenshot: {path}")


def test_turbo_stream_sources_over_websocket_and_sse_update_a_page_of_another_origin(
    cableway_factory: Callable[[str], CablewayServer],
    static_site: Callable[[dict[str, bytes]], StaticSite],
    browser: Callable[..., BrowserClient],
    request: pytest.FixtureRequest,
) -> None:
    # Client behaviours relied on:
    # * turbo-rails' <turbo-cable-stream-source> subscribes to Turbo::StreamsChannel with its
    #   signed-stream-name through the consumer of <meta name="action-cable-url"> and sets its
    #   `connected` attribute when the subscription is confirmed;
    # * Turbo's <turbo-stream-source src="http://..."> opens an EventSource (cross-origin: the
    #   browser sends `Origin` and needs Access-Control-Allow-Origin on the stream);
    # * both hand each `message` whose data is a string of <turbo-stream> elements to Turbo's
    #   StreamObserver, which applies append/replace/remove to the document.
    server = cableway_factory("turbo_sse")
    token = server.token({"user_id": 7})
    streams = {"ws": "browser:websocket", "sse": "browser:sse"}
    events_url = f"{server.http_url}/events?" + urlencode(
        {"turbo_signed_stream_name": server.signed_turbo_stream(streams["sse"]), "jid": token}
    )
    page = _turbo_page(
        cable_url=server.ws_url(token),
        signed_stream=server.signed_turbo_stream(streams["ws"]),
        events_url=events_url,
    )
    site = static_site({"/index.html": page})
    assert site.origin != server.http_url  # another port: another origin

    client = browser()
    assert client.call("goto", url=f"{site.origin}/index.html")["status"] == 200
    client.call("wait_selector", selector="turbo-cable-stream-source[connected]")
    # the server answers 200 once the SSE subscription is confirmed: from then on it delivers
    client.wait_event(_sse_ready(f"{server.http_url}/events?"), what="the SSE stream's 200")

    broadcaster = Broadcaster(f"{server.http_url}/_broadcast", key=server.broadcast_key)

    def to_both(build: Callable[[str], str]) -> None:
        broadcaster.broadcast_many([(streams[pane], build(pane)) for pane in PANES])

    user_text = "<b>not bold</b> & more"
    to_both(
        lambda p: turbo_stream.append(f"{p}-list", f'<li id="{p}-item-1">{escape(user_text)}</li>')
    )
    for pane in PANES:
        client.call("wait_text", selector=f"#{pane}-list > #{pane}-item-1", text=user_text)
        assert client.call("html", selector=f"#{pane}-item-1") == (
            f'<li id="{pane}-item-1">&lt;b&gt;not bold&lt;/b&gt; &amp; more</li>'
        )

    to_both(
        lambda p: turbo_stream.replace(
            f"{p}-item-1", f'<li id="{p}-item-1" class="replaced">replaced over {p}</li>'
        )
    )
    for pane in PANES:
        client.call("wait_selector", selector=f"#{pane}-list > #{pane}-item-1.replaced")

    to_both(lambda p: turbo_stream.remove(f"{p}-item-0"))
    for pane in PANES:
        client.call("wait_selector", selector=f"#{pane}-item-0", state="detached")
        assert client.call("texts", selector=f"#{pane}-list > li") == [f"replaced over {pane}"]

    _save_screenshot(client, request)

    # it really was cross-origin, over both transports
    sse_request = client.wait_event(
        lambda ev: ev.get("event") == "request_headers" and "/events?" in str(ev.get("url")),
        what="the SSE request's headers",
    )
    assert sse_request["origin"] == site.origin
    sockets = client.find("websocket")
    assert [ev["url"] for ev in sockets] == [server.ws_url(token)]
    subscribe = json.loads(
        client.wait_event(
            lambda ev: (
                ev.get("event") == "ws_frame"
                and ev.get("dir") == "out"
                and '"subscribe"' in str(ev.get("payload"))
            ),
            what="the subscribe frame",
        )["payload"]
    )
    assert json.loads(subscribe["identifier"]) == {
        "channel": "Turbo::StreamsChannel",
        "signed_stream_name": server.signed_turbo_stream(streams["ws"]),
    }
    assert client.problems() == []
    assert server.error_lines() == []


def _header(headers: dict[str, str] | None, name: str) -> str | None:
    """A header of a CDP headers object (names as sent, any case)."""
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def test_chromium_gets_compressed_turbo_stream_broadcasts(
    cableway_factory: Callable[[str], CablewayServer],
    static_site: Callable[[dict[str, bytes]], StaticSite],
    browser: Callable[..., BrowserClient],
    request: pytest.FixtureRequest,
) -> None:
    # Client behaviours relied on: Chromium offers "permessage-deflate; client_max_window_bits"
    # on every WebSocket, accepts a response asking for client_no_context_takeover, and
    # inflates RSV1 frames before turbo-rails sees them (CDP shows the inflated payloads and
    # the handshake's headers as the network stack sent and received them).
    server = cableway_factory("turbo_deflate")
    token = server.token({"user_id": 7})
    stream = "browser:deflate"
    page = _turbo_page(
        cable_url=server.ws_url(token),
        signed_stream=server.signed_turbo_stream(stream),
        events_url=None,
    )
    client = browser()
    site = static_site({"/index.html": page})
    assert client.call("goto", url=f"{site.origin}/index.html")["status"] == 200
    client.call("wait_selector", selector="turbo-cable-stream-source[connected]")

    [handshake] = client.find("ws_handshake")
    assert handshake["status"] == 101
    offer = _header(handshake["request"], "sec-websocket-extensions") or ""
    assert offer.startswith("permessage-deflate")
    assert _header(handshake["response"], "sec-websocket-extensions") == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    )

    broadcaster = Broadcaster(f"{server.http_url}/_broadcast", key=server.broadcast_key)

    def rows(first: int) -> str:
        return "".join(
            f'<li id="ws-item-{i}" class="message flex items-start gap-3"><span class="author">'
            f'user {i}</span> <span class="body">message {i} &amp; more</span></li>'
            for i in range(first, first + 20)
        )

    # two appends: the second is compressed without the first's context
    sent = [turbo_stream.append("ws-list", rows(first)) for first in (1, 21)]
    assert all(len(html) > 1500 for html in sent)
    for html in sent:
        broadcaster.broadcast(stream, html)
    client.call("wait_text", selector="#ws-list > li:last-child", text="message 40 & more")
    assert len(client.call("texts", selector="#ws-list > li")) == 1 + 40
    received = [
        json.loads(ev["payload"])["message"]
        for ev in client.find("ws_frame", dir="in")
        if "turbo-stream" in str(ev.get("payload"))
    ]
    assert received == sent
    _save_screenshot(client, request)
    assert client.problems() == []
    assert server.error_lines() == []


def _post_curl(command: str) -> int:
    """Send what a ``curl -X POST URL -H ... --data ...`` line asks for (no curl needed)."""
    words = shlex.split(command)
    assert words[:4] == ["curl", "-sS", "-X", "POST"], words
    url = words[4]
    headers: dict[str, str] = {}
    data = b""
    rest = iter(words[5:])
    for word in rest:
        if word == "-H":
            name, _, value = next(rest).partition(": ")
            headers[name] = value
        elif word == "--data":
            data = next(rest).encode()
        else:
            raise AssertionError(f"unexpected curl argument {word!r}")
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


def test_demo_form_broadcasts_through_the_real_endpoint_to_both_panes(
    cableway_factory: Callable[[str], CablewayServer],
    browser: Callable[..., BrowserClient],
    request: pytest.FixtureRequest,
) -> None:
    # `cableway --demo`: the page, Turbo (vendored) and the endpoints all come from the one
    # server. Client behaviours relied on: as above, plus the page's own demo.js posting the
    # batch to /_broadcast with the bearer key from its <meta>.
    if os.environ.get(SERVER_ENV, "").strip():
        pytest.skip(f"--demo is Cableway's own option ({SERVER_ENV} runs another server)")
    server = cableway_factory("demo")
    origin = server.http_url
    client = browser()
    assert client.call("goto", url=f"{origin}/")["status"] == 200
    client.call("wait_selector", selector="turbo-cable-stream-source[connected]")
    client.wait_event(_sse_ready(f"{origin}/events?"), what="the SSE stream's 200")

    message = "Hello <demo> & welcome"
    client.call("fill", selector="#demo-form input[name=text]", value=message)
    client.call("click", selector="#demo-form button[type=submit]")
    for pane in ("websocket", "sse"):
        client.call("wait_text", selector=f"#{pane}-messages", text=message)
        assert client.call("texts", selector=f"#{pane}-messages > li > .text") == [message]
    client.call("wait_text", selector="#demo-status", text="201")
    [post] = [ev for ev in client.requests() if ev["method"] == "POST"]
    assert post["url"] == f"{origin}/_broadcast"

    _save_screenshot(client, request)

    # the remove button of one pane removes the message from both (two `remove` streams)
    client.call("click", selector="#websocket-messages button.remove")
    for pane in ("websocket", "sse"):
        client.call("wait_selector", selector=f"#{pane}-messages > li", state="detached")

    # the curl line of the start-up banner works as printed
    assert server.demo_curl.startswith(f"curl -sS -X POST {origin}/_broadcast ")
    assert _post_curl(server.demo_curl) == 201
    for pane in ("websocket", "sse"):
        client.call("wait_text", selector=f"#{pane}-messages", text="Hello from curl")

    # nothing came from anywhere else (no CDN), nothing failed
    outside = [
        ev["url"] for ev in client.requests() if not ev["url"].startswith((f"{origin}/", "data:"))
    ]
    assert outside == []
    assert [ev["url"] for ev in client.find("websocket")] == [f"ws://127.0.0.1:{server.port}/cable"]
    assert client.problems() == []
    assert server.error_lines() == []


def test_vendored_turbo_bundle_is_the_pinned_package_file() -> None:
    """src/tools/demo_assets/turbo.js is @hotwired/turbo-rails' own bundle, byte for byte."""
    installed = NODE_MODULES / "@hotwired/turbo-rails/app/assets/javascripts/turbo.js"
    vendored = REPO_ROOT / "src/tools/demo_assets/turbo.js"
    assert vendored.read_bytes() == installed.read_bytes(), (
        "src/tools/demo_assets/turbo.js differs from the installed @hotwired/turbo-rails: copy it "
        "again (see src/tools/demo_assets/LICENSE.md)"
    )
