"""The two errors of configuration and start-up, worded for the person running the server."""

from __future__ import annotations

import errno
import socket

__all__ = ["ConfigError", "StartupError"]


class ConfigError(Exception):
    """An unknown, invalid or unsupported option. The message names the option, for users."""


class StartupError(Exception):
    """The server could not start listening; the message names the cause and the option.

    Raised by the transport when a listener cannot be opened (``cableway`` prints it as one
    ``cableway: error: ...`` line).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @classmethod
    def cannot_listen(
        cls, error: OSError, host: str, port: int, host_option: str, port_option: str
    ) -> StartupError:
        """The error for ``error`` raised while binding ``host``:``port``."""
        where = f"{host}:{port}"
        if isinstance(error, socket.gaierror):
            return cls(
                f"cannot resolve the address {host!r} ({host_option}): {error.strerror or error}"
            )
        if error.errno == errno.EADDRINUSE:
            return cls(
                f"port {port} on {host} is already in use ({port_option}): stop the other "
                "server or choose another port"
            )
        if error.errno == errno.EACCES:
            hint = (
                ": ports below 1024 need root (or CAP_NET_BIND_SERVICE); choose a port of 1024 "
                "or more"
                if 0 < port < 1024
                else ""
            )
            return cls(f"permission denied to listen on {where} ({port_option}){hint}")
        if error.errno == errno.EADDRNOTAVAIL:
            return cls(
                f"cannot listen on {where} ({host_option}): the address is not one of this "
                "machine's"
            )
        return cls(
            f"cannot listen on {where} ({host_option}, {port_option}): {error.strerror or error}"
        )
