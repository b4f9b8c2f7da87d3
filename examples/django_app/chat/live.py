"""The Cableway part of the Django example: no Django in here, only the ``cableway`` toolkit.

``page_context()`` gives a room page what its Turbo stream source needs; ``on_message_saved()``
broadcasts a new message to every page showing the room. ``views.py`` and ``signals.py`` call
them; the tests call them directly too (tests/interop/test_examples.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from cableway import turbo_stream
from cableway.broadcaster import Broadcaster
from cableway.streams import gid_param, signed_stream_name, stream_name_from
from cableway.tokens import identification_token


@dataclass(frozen=True)
class Cableway:
    """Where Cableway runs (``settings.CABLEWAY_URL``) and the secret it shares with this
    application (``settings.CABLEWAY_SECRET``, the server's ``--secret``)."""

    secret: str
    url: str = "http://localhost:8080"

    @property
    def cable_url(self) -> str:
        return "ws" + self.url.rstrip("/").removeprefix("http") + "/cable"  # http->ws, https->wss

    @property
    def events_url(self) -> str:
        return f"{self.url.rstrip('/')}/events"

    def broadcaster(self) -> Broadcaster:
        return Broadcaster(f"{self.url.rstrip('/')}/_broadcast", secret=self.secret)


def room_gid_param(pk: int) -> str:
    """``Room.to_gid_param()``: names the room's stream as Rails would (gid://myapp/Room/<pk>)."""
    return gid_param("myapp", "Room", pk)


def room_stream(room: object) -> str:
    """The UNSIGNED stream name of a room (anything with ``to_gid_param()``)."""
    return stream_name_from(room, "messages")


def page_context(cableway: Cableway, room: object, user_id: object) -> dict[str, str]:
    """Template values for a room page: the signed stream name for
    ``<turbo-cable-stream-source>``, the cable URL with the user's token, and the SSE URL for
    ``<turbo-stream-source>``."""
    signed = signed_stream_name(room, "messages", secret=cableway.secret)
    token = identification_token({"user_id": user_id}, cableway.secret)
    return {
        "signed_stream": signed,
        "cable_url": f"{cableway.cable_url}?jid={token}",
        "events_url": f"{cableway.events_url}?"
        + urlencode({"turbo_signed_stream_name": signed, "jid": token}),
    }


def on_message_saved(broadcaster: Broadcaster, room: object, message_html: str) -> None:
    """Append the rendered message to ``#messages`` on every page showing the room."""
    broadcaster.broadcast(room_stream(room), turbo_stream.append("messages", message_html))
