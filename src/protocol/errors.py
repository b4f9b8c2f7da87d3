"""Errors raised by the sans-IO core.

Two kinds only, as in h11 and wsproto:

* :class:`RemoteProtocolError` -- the peer sent something we refuse. It carries what
  the driver should do about it: an optional WebSocket close code and an AnyCable
  disconnect ``reason``. Some remote errors are *recoverable*: the command is ignored
  and the session goes on (``fatal`` is false).
* :class:`LocalProtocolError` -- the code driving the core misused it.

Anything else escaping from :mod:`cableway.protocol` is a bug; the fuzz harnesses hold
the core to that sentence.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class of the two error kinds of the core."""


class LocalProtocolError(ProtocolError):
    """The driver used the core in a way that is not allowed."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid.

    Args:
        message: a short description for logs; never contains secrets.
        close_code: the WebSocket close code to use when ``fatal`` (1009 for an
            oversized message, 1003 for unsupported data...).
        fatal: whether the session must end; a non-fatal error means the offending
            command is ignored and the session keeps going.
    """

    def __init__(self, message: str, *, close_code: int = 1007, fatal: bool = False) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.fatal = fatal
