"""TLS on the listeners (``--ssl_cert``, ``--ssl_key``): ``wss://`` and ``https://``.

As AnyCable-Go does it: when both files are set, every listener of the node (the main
port, and the broadcast and metrics ports when they are ports of their own) speaks TLS
1.2 or 1.3 with that certificate, and nothing else changes. ALPN offers ``http/1.1``
only (WebSocket needs HTTP/1.1).

Each accepted TCP connection is wrapped in a :class:`trio.SSLStream` and its handshake
completes within ``--handshake_timeout`` (:meth:`TlsDoor.accept`) before the HTTP front
door sees it. A client that speaks plain HTTP to the TLS port is answered ``400`` in
plain text, as Go's server does; garbage, a failed handshake or a timeout closes the
connection with one debug log line.

Writes: a TLS session has no descriptor to write to directly (its ``_fd`` is ``-1``), so
its output goes through the session's outbox and writer task, which takes everything
queued at once: a broadcast (or a batch of them) costs one encryption of the whole run
and one ``send`` per subscriber (docs/benchmarks.md measures it against plain text).
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import TYPE_CHECKING

import trio

from ..config import StartupError
from .httpconn import linger

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["TlsDoor", "is_tls", "transport_socket"]

log = logging.getLogger("cableway.tls")

#: The first byte of a TLS record carrying a handshake message (a ClientHello).
_HANDSHAKE_RECORD = 0x16

#: What Go's ``net/http`` answers a plain HTTP request on a TLS port (AnyCable-Go's server).
_PLAIN_HTTP_BODY = b"Client sent an HTTP request to an HTTPS server.\n"
_PLAIN_HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n"
    b"\r\n%s"
) % (len(_PLAIN_HTTP_BODY), _PLAIN_HTTP_BODY)


class _EncryptedKey(Exception):
    """The private key asks for a passphrase (Cableway reads unencrypted keys only)."""


def _no_passphrase() -> bytes:
    raise _EncryptedKey


def server_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """The server's TLS context for ``--ssl_cert`` and ``--ssl_key``.

    Raises:
        StartupError: a file cannot be read, is not PEM, the key is encrypted, or the key
            does not belong to the certificate (the message names the option).
    """
    for path, option in ((cert_path, "--ssl_cert"), (key_path, "--ssl_key")):
        try:
            with open(path, "rb") as file:
                file.read(1)
        except OSError as exc:
            raise StartupError(f"cannot read {path!r} ({option}): {exc.strerror or exc}") from exc
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # AnyCable-Go's MinVersion
    context.set_alpn_protocols(["http/1.1"])
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        # does the certificate file hold certificates at all? (then a failure is the key's)
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert_path)
    except (ssl.SSLError, ValueError) as exc:
        raise StartupError(
            f"{cert_path!r} (--ssl_cert) is not a PEM certificate: {_reason(exc)}"
        ) from exc
    try:
        context.load_cert_chain(cert_path, key_path, password=_no_passphrase)
    except _EncryptedKey:
        raise StartupError(
            f"the private key {key_path!r} (--ssl_key) is encrypted: give the key without "
            "a passphrase (e.g. openssl pkey -in KEY -out KEY.plain)"
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise StartupError(
                f"the private key {key_path!r} (--ssl_key) does not belong to the "
                f"certificate {cert_path!r} (--ssl_cert)"
            ) from exc
        raise StartupError(
            f"cannot load the private key {key_path!r} (--ssl_key) for the certificate "
            f"{cert_path!r} (--ssl_cert): {_reason(exc)}"
        ) from exc
    return context


def _reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{exc.reason} ({exc.library or 'ssl'})"
    return str(exc)


class TlsDoor:
    """Turns accepted TCP connections into TLS streams (one per node, shared by its
    listeners)."""

    def __init__(self, context: ssl.SSLContext, handshake_timeout: float) -> None:
        self.context = context
        self.handshake_timeout = handshake_timeout

    @classmethod
    def from_config(cls, config: Config) -> TlsDoor | None:
        """The door for ``config``, ``None`` without TLS; raises :class:`StartupError`."""
        if not config.ssl_cert:
            return None
        return cls(server_context(config.ssl_cert, config.ssl_key), config.handshake_timeout)

    async def accept(
        self, stream: trio.SocketStream, idle: set[trio.CancelScope] | None = None
    ) -> trio.SSLStream[trio.SocketStream] | None:
        """The TLS stream of an accepted connection, once its handshake is done; ``None``
        when there is none to serve, and then ``stream`` is closed. Never raises but
        :class:`trio.Cancelled` (``stream`` closed too).

        ``idle``: the scope of the handshake is in it meanwhile (shutdown cancels those).
        """
        secure = None
        try:
            with trio.move_on_after(self.handshake_timeout) as scope:
                if idle is not None:
                    idle.add(scope)
                try:
                    secure = await self._handshake(stream)
                finally:
                    if idle is not None:
                        idle.discard(scope)
            if scope.cancelled_caught:
                log.debug("TLS handshake from %s timed out", _peer(stream))
            return secure
        finally:
            if secure is None:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await stream.aclose()

    async def _handshake(
        self, stream: trio.SocketStream
    ) -> trio.SSLStream[trio.SocketStream] | None:
        try:
            first = await stream.socket.recv(1, socket.MSG_PEEK)
        except OSError:
            return None
        if not first:
            return None  # closed before a byte
        if first[0] != _HANDSHAKE_RECORD:
            if first.isalpha():  # "GET /...": plain HTTP sent to the TLS port
                log.debug("plain HTTP request on the TLS port from %s", _peer(stream))
                try:
                    await stream.send_all(_PLAIN_HTTP_ANSWER)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return None
                await linger(stream)  # the request is not read: never reset the answer
            else:
                log.debug("not a TLS handshake from %s", _peer(stream))
            return None
        tls = trio.SSLStream(stream, self.context, server_side=True, https_compatible=True)
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            cause = exc.__cause__ or exc
            log.debug("TLS handshake from %s failed: %s", _peer(stream), cause)
            return None
        return tls


def is_tls(stream: trio.abc.Stream) -> bool:
    """Whether ``stream`` is a TLS connection."""
    return isinstance(stream, trio.SSLStream)


def transport_socket(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The TCP socket under ``stream`` (through TLS), or ``None`` (an in-memory stream)."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream.socket if isinstance(stream, trio.SocketStream) else None


def _peer(stream: trio.SocketStream) -> str:
    try:
        address = stream.socket.getpeername()
    except OSError:
        return "?"
    return str(address[0]) if isinstance(address, tuple) else str(address)
