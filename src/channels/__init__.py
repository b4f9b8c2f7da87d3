"""Action Cable channels in Python, for AnyCable-Go (and, later, Cableway) to call over
AnyCable's RPC: a :class:`Connection` that identifies clients, :class:`Channel` classes
with subscription callbacks and actions, and an :class:`Application` that serves them as
an ASGI app (:meth:`Application.asgi`) or a WSGI app (:meth:`Application.wsgi`).
See docs/rpc.md.
"""

from __future__ import annotations

from .application import Application
from .channel import Channel
from .connection import Connection, Rejected, parse_cookies
from .http import Response

__all__ = ["Application", "Channel", "Connection", "Rejected", "Response", "parse_cookies"]
