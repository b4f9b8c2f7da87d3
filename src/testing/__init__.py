"""Testing helpers: capture broadcasts instead of sending them, and check what a subscribed
page would receive, with no server and no sockets.

With pytest (the plugin is registered by the ``cableway`` package's entry point) use the
``cableway_broadcasts`` fixture; elsewhere :func:`capture_broadcasts`::

    def test_new_message_reaches_the_room(cableway_broadcasts, client, room):
        # a simulated browser showing the page: its token, its stream subscriptions
        page = cableway_broadcasts.open_page(client.get(f"/rooms/{room.pk}/").text)
        client.post(f"/rooms/{room.pk}/", {"text": "Hi"})
        cableway_broadcasts.assert_broadcasts((room, "messages"), 1)
        assert "Hi" in page.turbo_streams[-1]

Importing this package imports no web framework.
"""

from __future__ import annotations

from .capture import BroadcastCapture, CapturedBroadcast, capture_broadcasts
from .client import ConnectionRejected, SimulatedClient
from .page import PageSources, read_page

__all__ = [
    "BroadcastCapture",
    "CapturedBroadcast",
    "ConnectionRejected",
    "PageSources",
    "SimulatedClient",
    "capture_broadcasts",
    "read_page",
]
