"""The Cableway part of the FastAPI example: no FastAPI in here, only the ``cableway`` toolkit
and a string template.

``render_page()`` renders a room page with its Turbo stream source; ``on_message_saved()``
broadcasts a new message (async: it never blocks the event loop). ``main.py`` calls both; the
tests call them directly too (tests/interop/test_examples.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from cableway import turbo_stream
from cableway.broadcaster import Broadcaster
from cableway.streams import signed_stream_name, stream_name_from
from cableway.tokens import identification_token
from cableway.turbo_stream import escape

DEFAULT_URL = "http://localhost:8080"


@dataclass(frozen=True)
class Cableway:
    """Where Cableway runs and the secret it shares with this application.

    ``ANYCABLE_SECRET`` is the server's ``--secret``; ``CABLEWAY_URL`` (default
    ``http://localhost:8080``) is its main port, serving ``/cable``, ``/events`` and
    ``/_broadcast``.
    """

    secret: str
    url: str = DEFAULT_URL

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Cableway:
        return cls(env["ANYCABLE_SECRET"], env.get("CABLEWAY_URL", DEFAULT_URL).rstrip("/"))

    @property
    def cable_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/cable"  # http -> ws, https -> wss

    @property
    def events_url(self) -> str:
        return f"{self.url}/events"

    def broadcaster(self) -> Broadcaster:
        return Broadcaster(f"{self.url}/_broadcast", secret=self.secret)


def room_stream(room_id: int) -> str:
    """The UNSIGNED stream name of a room: what the application broadcasts to."""
    return stream_name_from("room", room_id, "messages")  # "room:<id>:messages"


def message_html(text: str) -> str:
    return f"<p>{escape(text)}</p>"  # no template engine here: escape user text yourself


def render_page(
    cableway: Cableway, room_id: int, messages: Iterable[str], *, user_id: int, sse: bool = False
) -> str:
    """The room page: Turbo from a CDN, the room's stream source (``<turbo-cable-stream-source>``
    over WebSocket, or ``<turbo-stream-source>`` over SSE when ``sse``), the messages, a form."""
    signed = signed_stream_name("room", room_id, "messages", secret=cableway.secret)
    token = identification_token({"user_id": user_id}, cableway.secret)
    if sse:
        query = urlencode({"turbo_signed_stream_name": signed, "jid": token})
        source = f'<turbo-stream-source src="{escape(f"{cableway.events_url}?{query}")}">'
        source += "</turbo-stream-source>"
    else:
        source = (
            '<turbo-cable-stream-source channel="Turbo::StreamsChannel" '
            f'signed-stream-name="{escape(signed)}"></turbo-cable-stream-source>'
        )
    items = "".join(message_html(text) for text in messages)
    return f"""<!doctype html>
<html>
<head>
  <meta charset="utf-8">
  <title>Room {room_id}</title>
  <meta name="action-cable-url" content="{escape(f"{cableway.cable_url}?jid={token}")}">
  <script type="module" src="https://cdn.jsdelivr.net/npm/@hotwired/turbo-rails@8.0.23/+esm"></script>
</head>
<body>
  <h1>Room {room_id}</h1>
  {source}
  <div id="messages">{items}</div>
  <form method="post" action="/rooms/{room_id}/messages">
    <input name="text" autocomplete="off"> <button>Send</button>
  </form>
</body>
</html>"""


async def on_message_saved(broadcaster: Broadcaster, room_id: int, text: str) -> None:
    """Append the message to ``#messages`` on every page showing the room."""
    await broadcaster.abroadcast(
        room_stream(room_id), turbo_stream.append("messages", message_html(text))
    )
