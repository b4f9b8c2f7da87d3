"""``@anycable/turbo-stream`` in a real browser (Debian's headless Chromium, playwright-core).

A page served by **another origin** (a static site on its own port) loads, through an import
map, the published ESM files of ``@hotwired/turbo`` (``dist/turbo.es2017-esm.js``),
``@anycable/web``, ``@anycable/core`` (and its one dependency ``nanoevents``) and
``@anycable/turbo-stream`` straight from node_modules (no build step: all four ship plain ES
modules with ``"type": "module"``). Its module script does what AnyCable's docs tell a Rails app
to do::

    const cable = createCable(url, {protocol, auth: {token}})
    start(cable)

and the body holds ``<turbo-cable-stream-source channel="Turbo::StreamsChannel"
signed-stream-name="…">``. A broadcast ``append`` (built with ``cableway.toolkit.turbo_stream``) changes
the DOM; a screenshot is saved under ``artifacts/browser/``.

Client behaviour relied on (``@anycable/turbo-stream`` 0.8.1 on ``@anycable/core`` 1.1.7):

* ``start(cable)`` defines the custom element ``turbo-cable-stream-source``
  (``TurboStreamSourceElement``); on ``connectedCallback`` it calls Turbo's
  ``connectStreamSource(this)`` and ``cable.subscribe(new TurboChannel(this, channel,
  {signed_stream_name, ...data-*}))`` — identifier ``{"channel":"Turbo::StreamsChannel",
  "signed_stream_name":…}`` (keys sorted by ``stringifyParams``), matched as an exact string on
  ``confirm_subscription``;
* the channel's ``connect`` sets the element's ``connected`` attribute; each ``message`` is
  re-dispatched as a DOM ``MessageEvent`` whose ``data`` Turbo's StreamObserver renders when it is
  a string of ``<turbo-stream>`` elements;
* ``auth: {token}`` puts the token in the URL as ``?jid=``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from cableway.toolkit import turbo_stream
from cableway.toolkit.broadcaster import Broadcaster
from cableway.toolkit.turbo_stream import escape

from .conftest import BrowserClient, CablewayServer, StaticSite
from .conftest import screenshot_path as _screenshot_path

pytestmark = pytest.mark.interop

STREAM = "browser:anycable"

IMPORT_MAP = {
    "imports": {
        "@hotwired/turbo": "/node_modules/@hotwired/turbo/dist/turbo.es2017-esm.js",
        "@anycable/web": "/node_modules/@anycable/web/index.js",
        "@anycable/core": "/node_modules/@anycable/core/index.js",
        "@anycable/turbo-stream": "/node_modules/@anycable/turbo-stream/index.js",
        "nanoevents": "/node_modules/nanoevents/index.js",
    }
}


def _page(*, cable_url: str, protocol: str, token: str, signed_stream: str) -> bytes:
    options = {"protocol": protocol, "auth": {"token": token}}
    return f"""<!doctype html>
<html>
<head>
  <meta charset="utf-8">
  <title>Cableway interop: @anycable/turbo-stream in Chromium</title>
  <link rel="icon" href="data:,">
  <script type="importmap">{json.dumps(IMPORT_MAP)}</script>
  <script type="module">
    import "@hotwired/turbo"
    import {{ createCable }} from "@anycable/web"
    import {{ start }} from "@anycable/turbo-stream"
    const cable = createCable({json.dumps(cable_url)}, {json.dumps(options)})
    start(cable)
    window.cable = cable
  </script>
</head>
<body>
  <h2>@anycable/turbo-stream ({escape(protocol)})</h2>
  <turbo-cable-stream-source channel="Turbo::StreamsChannel"
    signed-stream-name="{escape(signed_stream)}"></turbo-cable-stream-source>
  <ul id="list"><li id="item-0">initial</li></ul>
</body>
</html>
""".encode()


@pytest.mark.parametrize("protocol", ["actioncable-v1-json", "actioncable-v1-ext-json"])
def test_anycable_turbo_stream_source_appends_on_a_page_of_another_origin(
    protocol: str,
    cableway_factory: Callable[[str], CablewayServer],
    static_site: Callable[[dict[str, bytes]], StaticSite],
    browser: Callable[..., BrowserClient],
    request: pytest.FixtureRequest,
) -> None:
    # Relies on the behaviours in the module docstring: start(cable) defines
    # <turbo-cable-stream-source>, which subscribes a TurboChannel with its signed-stream-name,
    # sets `connected` on confirmation and hands each message to Turbo's StreamObserver.
    server = cableway_factory("turbo_jwt")
    token = server.token({"user_id": 7})
    signed = server.signed_turbo_stream(STREAM)
    site = static_site(
        {
            "/index.html": _page(
                cable_url=server.ws_url(), protocol=protocol, token=token, signed_stream=signed
            )
        }
    )
    assert site.origin != server.http_url  # another port: another origin

    client = browser()
    assert client.call("goto", url=f"{site.origin}/index.html")["status"] == 200
    client.call("wait_selector", selector="turbo-cable-stream-source[connected]")

    user_text = "<i>anycable</i> & turbo"
    # raises on any HTTP error
    Broadcaster(f"{server.http_url}/_broadcast", key=server.broadcast_key).broadcast(
        STREAM, turbo_stream.append("list", f'<li id="item-1">{escape(user_text)}</li>')
    )
    client.call("wait_text", selector="#list > #item-1", text=user_text)
    assert client.call("texts", selector="#list > li") == ["initial", user_text]
    assert client.call("html", selector="#item-1") == (
        '<li id="item-1">&lt;i&gt;anycable&lt;/i&gt; &amp; turbo</li>'
    )

    path = _screenshot_path(request)
    client.call("screenshot", path=str(path))
    assert path.is_file()
    assert path.stat().st_size > 0
    print(f"\nscreenshot: {path}")

    # one socket, on the library's protocol, with ?jid= from auth.token
    [socket] = client.find("websocket")
    assert socket["url"] == f"{server.ws_url()}?jid={token}"
    subscribes = [
        json.loads(ev["payload"])
        for ev in client.find("ws_frame", dir="out")
        if '"subscribe"' in ev["payload"]
    ]
    assert [s["identifier"] for s in subscribes] == [
        json.dumps(
            {"channel": "Turbo::StreamsChannel", "signed_stream_name": signed},
            separators=(",", ":"),
        )
    ]
    incoming = [json.loads(ev["payload"]) for ev in client.find("ws_frame", dir="in")]
    [confirm] = [f for f in incoming if f.get("type") == "confirm_subscription"]
    assert confirm["identifier"] == subscribes[0]["identifier"]
    assert client.problems() == []
    assert server.error_lines() == []
