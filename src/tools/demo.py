"""The live demo (``cableway --demo``): a Turbo page served by the server itself.

The page at ``/`` subscribes to two Turbo Streams, one per transport:

* ``<turbo-cable-stream-source>`` over WebSocket (``/cable``, the Action Cable protocol), and
* ``<turbo-stream-source>`` over Server-Sent Events (``/events``),

each filling its own pane. Its form sends what the visitor types as two ``append`` Turbo
Streams (one per pane) through the real ``POST /_broadcast`` endpoint, with the broadcast
key, exactly as an application backend would. Turbo, turbo-rails and the Action Cable client
are vendored in ``demo_assets/`` (no CDN).

Everything here is pure: the configuration the demo needs (:func:`demo_config`), the page
(:func:`render_page`), the start-up banner (:func:`startup_banner`) and who may see the
demo (:func:`access_refusal`). ``cableway.transport.demo`` serves it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import secrets
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ..auth.keys import derive_api_key, derive_broadcast_key
from ..config import Config
from ..toolkit.streams import signed_stream_name
from ..toolkit.tokens import identification_token
from ..toolkit.turbo_stream import append, escape

__all__ = [
    "ASSETS",
    "PAGE_HEADERS",
    "PAGE_PATH",
    "PANES",
    "Asset",
    "DemoPage",
    "Pane",
    "access_refusal",
    "curl_example",
    "demo_config",
    "demo_page",
    "demo_url",
    "is_loopback_host",
    "owns",
    "render_page",
    "startup_banner",
]

#: The demo page's route; the assets live under ``/demo/``.
PAGE_PATH = "/"


@dataclass(frozen=True, slots=True)
class Pane:
    """One half of the page: a stream, the element it fills, and the transport it uses."""

    name: str  # "websocket" or "sse": element ids are "<name>-messages", "<name>-<id>"
    stream: str  # the unsigned stream name the form broadcasts to
    title: str

    @property
    def target(self) -> str:
        return f"{self.name}-messages"


PANES = (
    Pane("websocket", "cableway-demo:websocket", "WebSocket"),
    Pane("sse", "cableway-demo:sse", "Server-Sent Events"),
)


@dataclass(frozen=True, slots=True)
class Asset:
    """A static file of ``cableway/demo_assets`` served at a fixed path."""

    file: str
    content_type: str


#: Path -> vendored file. Only these paths are served: no file-system lookups by URL.
ASSETS: dict[str, Asset] = {
    "/demo/turbo.js": Asset("turbo.js", "text/javascript; charset=utf-8"),
    "/demo/demo.js": Asset("demo.js", "text/javascript; charset=utf-8"),
    "/demo/demo.css": Asset("demo.css", "text/css; charset=utf-8"),
    "/demo/LICENSE.md": Asset("LICENSE.md", "text/plain; charset=utf-8"),
}

#: Extra headers of the page: it carries the broadcast key, so no caching, no framing, no
#: third-party anything (the scripts are same-origin; Turbo injects its progress-bar style).
PAGE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"no-store"),
    (
        b"content-security-policy",
        b"default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
)


def owns(path: str) -> bool:
    """Whether ``path`` is a demo route (the page or one of its assets)."""
    return path == PAGE_PATH or path in ASSETS


# -- configuration -------------------------------------------------------------------


def _new_secret() -> str:
    return secrets.token_hex(16)


def demo_config(
    config: Config, *, new_secret: Callable[[], str] = _new_secret
) -> tuple[Config, str | None]:
    """The configuration ``--demo`` runs with, and the secret generated for it (or ``None``).

    * Without ``--secret``, one is generated and every unset secret falls back to it as if
      the server had been started with ``--secret=<it>``: the JWT, streams and Turbo Streams
      secrets, the broadcast key derived from it (not in public mode, which broadcasts
      without a key) and the REST API's key. Secrets that are set are kept.
    * Turbo Streams are turned on (the page uses ``Turbo::StreamsChannel``).
    * ``/_broadcast`` is served on the main port, where the page posts (the page and the
      endpoint share one origin).
    """
    changes: dict[str, Any] = {"turbo_streams": True, "http_broadcast_port": config.port}
    if "http" not in config.broadcast_adapters:
        changes["broadcast_adapters"] = (*config.broadcast_adapters, "http")
    generated: str | None = None
    if config.secret is None:
        generated = new_secret()
        if not generated:
            raise ValueError("the generated secret is empty")
        streams_secret = config.streams_secret or generated
        changes["secret"] = generated
        changes["jwt_secret"] = config.jwt_secret or generated
        changes["streams_secret"] = streams_secret
        if config.turbo_streams_secret is None and not config.turbo_rails_cleartext:
            changes["turbo_streams_secret"] = streams_secret
        if config.broadcast_key is None and not config.public:
            changes["broadcast_key"] = derive_broadcast_key(generated)
        if config.api_secret is None:
            changes["api_secret"] = derive_api_key(generated)  # the REST API's, as with --secret
    elif config.turbo_streams_secret is None and not config.turbo_rails_cleartext:
        # --secret given, but load_config saw it resolve to none for Turbo (e.g. an explicit
        # --streams_secret=none): sign the demo's names with --secret
        changes["turbo_streams_secret"] = config.streams_secret or config.secret
    return dataclasses.replace(config, **changes), generated


# -- who may see the demo ------------------------------------------------------------


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _loopback_ip(text: str) -> bool:
    try:
        address = ipaddress.ip_address(_strip_brackets(text).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_loopback_host(host: str) -> bool:
    """Whether a bind address or host name stays on this machine (``localhost``,
    ``*.localhost``, ``127.0.0.0/8``, ``::1``). ``""`` and ``0.0.0.0`` are not: they bind
    every interface."""
    name = host.strip().lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    return _loopback_ip(name)


def _host_header_name(value: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8080`` -> ``::1``)."""
    value = value.strip()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


def access_refusal(*, peer: str | None, host_header: str | None, bind_host: str) -> str | None:
    """Why a request may not see the demo, or ``None`` when it may.

    When the server is bound to a loopback address (the default, ``localhost``), the demo is
    served only to loopback peers, and only under a loopback ``Host`` name, so that a web
    page whose domain re-resolves to 127.0.0.1 (DNS rebinding) cannot read the broadcast
    key. A non-loopback ``--host`` is the user's explicit choice to share it: then anyone
    who can reach the port may.
    """
    if not is_loopback_host(bind_host):
        return None
    if peer is None or not _loopback_ip(peer):
        return "the demo is only served to loopback clients (see docs/demo.md)"
    if host_header is None or not is_loopback_host(_host_header_name(host_header)):
        return "the demo only answers to localhost, 127.0.0.1 or [::1] (see docs/demo.md)"
    return None


# -- the page ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoPage:
    """What the page needs, all resolved from the configuration."""

    cable_url: str  # relative: the page and the server share one origin
    websocket_signed_stream: str
    sse_url: str | None  # None when --sse=false
    broadcast_url: str
    broadcast_key: str | None  # None: broadcasts without a key (public mode)
    curl: str  # the example shown on the page


def _signed(config: Config, stream: str) -> str:
    if config.turbo_streams_secret is None:
        return stream  # --turbo_rails_cleartext: the name is taken as is
    return signed_stream_name(stream, secret=config.turbo_streams_secret)


def demo_url(config: Config, host_header: str | None = None) -> str:
    """``http://<host>:<port>`` of the demo (``https://`` with ``--ssl_cert``): the request's
    ``Host`` if given, else a URL for the bound address (``localhost`` for every-interface
    binds)."""
    scheme = "https" if config.ssl_cert else "http"
    if host_header:
        return f"{scheme}://{host_header.strip()}"
    host = config.host.strip()
    if not host or host in ("0.0.0.0", "::", "[::]"):
        host = "localhost"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{config.port}"


def curl_example(config: Config, base_url: str, text: str = "Hello from curl") -> str:
    """A one-line ``curl`` that appends ``text`` to both panes through ``/_broadcast``."""
    item = f"<li>{escape(text)}</li>"
    batch = [{"stream": pane.stream, "data": append(pane.target, item)} for pane in PANES]
    words = ["curl", "-sS", "-X", "POST", f"{base_url}{config.http_broadcast_path}"]
    if config.broadcast_key is not None:
        words += ["-H", f"Authorization: Bearer {config.broadcast_key}"]
    words += ["-H", "Content-Type: application/json", "--data", json.dumps(batch)]
    return " ".join(shlex.quote(word) for word in words)


def demo_page(config: Config, host_header: str | None = None) -> DemoPage:
    """The page's settings for ``config`` (as returned by :func:`demo_config`)."""
    token = None
    if config.enforce_jwt and config.jwt_secret is not None:
        # an enforced JWT is needed by both transports; otherwise the demo stays anonymous
        token = identification_token({"user": "demo"}, config.jwt_secret)
    auth = {config.jwt_param: token} if token is not None else {}
    cable_url = config.path[0] + (f"?{urlencode(auth)}" if auth else "")
    sse_url = None
    if config.sse:
        params = {"turbo_signed_stream_name": _signed(config, PANES[1].stream), **auth}
        sse_url = f"{config.sse_path}?{urlencode(params)}"
    return DemoPage(
        cable_url=cable_url,
        websocket_signed_stream=_signed(config, PANES[0].stream),
        sse_url=sse_url,
        broadcast_url=config.http_broadcast_path,
        broadcast_key=config.broadcast_key,
        curl=curl_example(config, demo_url(config, host_header)),
    )


_PAGE = """\
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Cableway demo</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/demo/demo.css">
  <meta name="turbo-cache-control" content="no-cache">
  <meta name="action-cable-url" content="{cable_url}">
  <meta name="cableway-broadcast-url" content="{broadcast_url}">{key_meta}
  <script type="module" src="/demo/demo.js"></script>
</head>
<body>
  <header>
    <h1>Cableway demo</h1>
    <p>This page subscribes to two Turbo Streams, one over each transport. Send a message:
    the page posts two <code>append</code> Turbo Streams to <code>{broadcast_url}</code>
    (the endpoint your backend uses) and the server delivers one to each pane.</p>
  </header>
  <form id="demo-form" data-turbo="false" data-panes="{panes}" autocomplete="off">
    <input name="text" aria-label="Message" placeholder="Say something" maxlength="500"
      required autofocus>
    <button type="submit">Send</button>
    <output id="demo-status" role="status"></output>
  </form>
  <main class="panes">
{sections}
  </main>
  <details>
    <summary>Broadcast from a shell or your backend</summary>
    <pre><code>{curl}</code></pre>
    <p>From Python: <code>cableway.broadcaster.Broadcaster</code>; from a shell:
    <code>cableway broadcast</code>. See the project's <code>docs/backends.md</code>.</p>
  </details>
  <footer>Served by Cableway. Turbo, turbo-rails and Action Cable are MIT-licensed:
    <a href="/demo/LICENSE.md">notices</a>.</footer>
</body>
</html>
"""

_SECTION = """\
    <section class="pane" id="{name}-pane">
      <h2>{title}</h2>
      <p class="how">{how}</p>
      {source}
      <ul id="{target}" class="messages"></ul>
    </section>"""


def render_page(page: DemoPage) -> bytes:
    """The demo page's HTML (UTF-8). Every interpolated value is escaped."""
    websocket, sse = PANES
    panes = [websocket] if page.sse_url is None else [websocket, sse]
    ws_source = (
        '<turbo-cable-stream-source channel="Turbo::StreamsChannel" '
        f'signed-stream-name="{escape(page.websocket_signed_stream)}">'
        "</turbo-cable-stream-source>"
    )
    sections = [
        _SECTION.format(
            name=websocket.name,
            title=escape(websocket.title),
            how="<code>&lt;turbo-cable-stream-source&gt;</code>, Action Cable protocol on "
            f"<code>{escape(page.cable_url.partition('?')[0])}</code>",
            source=ws_source,
            target=websocket.target,
        )
    ]
    if page.sse_url is None:
        sse_how = "Off: the server runs with <code>--sse=false</code>."
        sse_source = ""
    else:
        sse_how = (
            "<code>&lt;turbo-stream-source&gt;</code>, an <code>EventSource</code> on "
            f"<code>{escape(page.sse_url.partition('?')[0])}</code>"
        )
        sse_source = f'<turbo-stream-source src="{escape(page.sse_url)}"></turbo-stream-source>'
    sections.append(
        _SECTION.format(
            name=sse.name,
            title=escape(sse.title),
            how=sse_how,
            source=sse_source,
            target=sse.target,
        )
    )
    key_meta = ""
    if page.broadcast_key is not None:
        key_meta = (
            f'\n  <meta name="cableway-broadcast-key" content="{escape(page.broadcast_key)}">'
        )
    panes_json = json.dumps(
        [{"name": pane.name, "stream": pane.stream, "target": pane.target} for pane in panes]
    )
    html = _PAGE.format(
        cable_url=escape(page.cable_url),
        broadcast_url=escape(page.broadcast_url),
        key_meta=key_meta,
        panes=escape(panes_json),
        sections="\n".join(sections),
        curl=escape(page.curl),
    )
    return html.encode("utf-8")


# -- the start-up banner -------------------------------------------------------------


def startup_banner(config: Config, generated_secret: str | None) -> str:
    """The lines ``cableway --demo`` prints once at start-up, secrets included (the one
    place Cableway prints them: the user asked for a demo to try by hand)."""
    base = demo_url(config)
    rule = "-" * 78
    lines = [
        rule,
        f"Cableway demo: open {base}/ in a browser (two panes: WebSocket and SSE)",
    ]
    if generated_secret is not None:
        lines.append(
            f"Secret generated for this run: {generated_secret} "
            f"(restart with --secret={generated_secret} to keep it)"
        )
    if config.broadcast_key is not None:
        lines.append(f"Broadcast key: {config.broadcast_key}")
    else:
        lines.append("Broadcast key: none (public mode: broadcasts need no key)")
    lines += ["Broadcast to both panes from a shell:", f"  {curl_example(config, base)}"]
    if is_loopback_host(config.host):
        lines.append("The demo is served to loopback clients only.")
    else:
        lines.append(
            f"WARNING: --host={config.host} is not a loopback address: anyone who can reach "
            "this port can open the demo and read the broadcast key from it."
        )
    lines.append(rule)
    return "\n".join(lines) + "\n"
