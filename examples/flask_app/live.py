"""The Cableway part of the Flask example: no Flask in here, only the ``cableway`` toolkit.

``page_context()`` gives a room page what its Turbo stream source needs; ``on_message_saved()``
broadcasts a new message to every page showing the room. ``app.py`` calls both; the tests
call them directly too (tests/interop/test_examples.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from cableway import turbo_stream
from cableway.broadcaster import Broadcaster
from cableway.streams import signed_stream_name, stream_name_from
from cableway.tokens import identification_token

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


def page_context(cableway: Cableway, room_id: int, user_id: int) -> dict[str, str]:
    """Template values for a room page: the signed stream name for
    ``<turbo-cable-stream-source>``, the cable URL with the user's token, and the SSE URL
    for ``<turbo-stream-source>``."""
    signed = signed_stream_name("room", room_id, "messages", secret=cableway.secret)
    token = identification_token({"user_id": user_id}, cableway.secret)
    return {
        "signed_stream": signed,
        "cable_url": f"{cableway.cable_url}?jid={token}",
        "events_url": f"{cableway.events_url}?"
        + urlencode({"turbo_signed_stream_name": signed, "jid": token}),
    }


def on_message_saved(broadcaster: Broadcaster, room_id: int, message_html: str) -> None:
    """Append the rendered message to ``#messages`` on every page showing the room."""
    broadcaster.broadcast(room_stream(room_id), turbo_stream.append("messages", message_html))
