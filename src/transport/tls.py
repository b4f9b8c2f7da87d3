"""TLS on the listeners (``--ssl_cert``, ``--ssl_key``): ``wss://`` and ``https://``.

As AnyCable-Go does it: when both files are set, every listener of the node (the main
port, and the broadcast and metrics ports when they are ports of their own) speaks TLS
1.2 or 1.3 with that certificate, and nothing else changes. ALPN offers ``http/1.1``
only (WebSocket needs HTTP/1.1).

Each accepted TCP connection becomes a :class:`TlsStream` whose handshake completes
within ``--handshake_timeout`` (:meth:`TlsDoor.accept`) before the HTTP front door sees
it. A client that speaks plain HTTP to the TLS port is answered ``400`` in plain text, as
Go's server does; garbage, a failed handshake or a timeout closes the connection with one
debug log line.

Writes: a session cannot write a TLS connection's descriptor itself, but
:meth:`TlsStream.send_nowait` does the same without awaiting: one encryption of
everything the session has queued and one ``write`` (:class:`DirectStream`), so a
broadcast costs each subscriber one ``SSL_write`` and one system call, and no task
switch (docs/benchmarks.md, TLS, measures it against plain text).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
from typing import TYPE_CHECKING, Protocol

import trio

from ..config import StartupError
from .httpconn import linger

if TYPE_CHECKING:
    from ..config import Config
    from ..ops.metrics import Metrics
    from .outbox import Outbox

__all__ = [
    "DIRECT_IN_FLIGHT",
    "DirectStream",
    "TlsDoor",
    "TlsStream",
    "is_tls",
    "send_queued",
    "transport_socket",
    "write_queued",
]

log = logging.getLogger("cableway.tls")

_READ_SIZE = 65536

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
    ) -> TlsStream | None:
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

    async def _handshake(self, stream: trio.SocketStream) -> TlsStream | None:
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
        tls = TlsStream(stream, self.context)
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            cause = exc.__cause__ or exc
            log.debug("TLS handshake from %s failed: %s", _peer(stream), cause)
            return None
        return tls


class TlsStream(trio.abc.Stream):
    """The server side of TLS over an accepted TCP connection.

    An :class:`ssl.SSLObject` on memory BIOs, and the socket's descriptor read and written
    directly (non-blocking), as sessions do with plain sockets: a write encrypts what it is
    given (records of up to 16 kB, in one ``SSL_write``) and hands the ciphertext to the
    kernel in one ``write`` when it takes it, without a task switch; it waits only when the
    kernel's buffer is full. ``trio.SSLStream`` does the same work through several layers of
    awaits per write, which the fan-out (one write per subscriber) pays for every delivery
    (docs/benchmarks.md, TLS).

    Ciphertext leaves in the order it was made: everything goes through :attr:`_pending`
    (output of the reader, e.g. a TLS 1.3 key update answer, included). A missing
    ``close_notify`` at the end is an ordinary EOF, as HTTPS clients close
    (``https_compatible`` in trio's terms). A TLS error raises
    :class:`trio.BrokenResourceError` from the :class:`ssl.SSLError`.
    """

    def __init__(self, transport: trio.SocketStream, context: ssl.SSLContext) -> None:
        self.transport_stream = transport
        self._fd = transport.socket.fileno()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        #: ciphertext made but not yet taken by the kernel, oldest first
        self._pending = bytearray()
        self._closed = False
        #: why sending failed (raised again by every later send)
        self._failed: Exception | None = None
        self._written = 0

    # -- the TLS machine ---------------------------------------------------------------

    async def do_handshake(self) -> None:
        """Complete the handshake (the caller bounds it in time)."""
        while True:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                await self._send_pending()
                if not await self._fill():
                    raise trio.BrokenResourceError("EOF during the TLS handshake") from None
            except ssl.SSLError as exc:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    self._write_pending()  # the alert, if the kernel takes it now
                raise trio.BrokenResourceError(exc) from exc
            else:
                await self._send_pending()  # the last flight (and TLS 1.3 session tickets)
                return

    def _write_pending(self) -> None:
        """Give the kernel what it takes of :attr:`_pending` now (with what the TLS
        machine wrote since)."""
        if self._outgoing.pending:
            self._pending += self._outgoing.read()
        pending = self._pending
        while pending:
            if self._closed:
                raise trio.ClosedResourceError
            try:
                sent = os.write(self._fd, pending)
            except BlockingIOError:
                return
            except OSError as exc:
                raise trio.BrokenResourceError(exc) from exc
            del pending[:sent]
            self._written += sent

    async def _send_pending(self) -> None:
        """Wait until the kernel took all of :attr:`_pending`."""
        self._write_pending()
        while self._pending:
            await trio.lowlevel.wait_writable(self._fd)
            self._write_pending()

    async def _fill(self) -> bool:
        """Wait for what the peer sends and feed it to the TLS machine; ``False`` at EOF."""
        while True:
            await trio.lowlevel.wait_readable(self._fd)
            if self._closed:
                raise trio.ClosedResourceError
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(exc) from exc
            if not data:
                self._incoming.write_eof()
                return False
            self._incoming.write(data)
            return True

    # -- trio.abc.Stream ---------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and send it; returns once the kernel took every byte."""
        if self._closed:
            raise trio.ClosedResourceError
        await trio.lowlevel.checkpoint_if_cancelled()
        self.send_nowait(data)
        if self._pending:
            await self._send_pending()
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()

    def send_nowait(self, data: bytes | bytearray | memoryview) -> bool:
        """Encrypt ``data`` (one ``SSL_write``: records of up to 16 kB) and give the kernel
        what it takes now, behind any ciphertext still :attr:`pending`, without awaiting.

        ``True``: nothing is pending. ``False``: the kernel's buffer is full; call again
        (with ``b""``) once the socket is writable.

        Raises:
            trio.BrokenResourceError: the connection is broken (every call after too).
            trio.ClosedResourceError: the stream is closed.
        """
        if self._failed is not None:
            raise trio.BrokenResourceError(self._failed) from self._failed
        try:
            if data:
                self._ssl.write(data)
            self._write_pending()
        except ssl.SSLError as exc:
            self._failed = exc
            raise trio.BrokenResourceError(exc) from exc
        except trio.BrokenResourceError as exc:
            self._failed = exc
            raise
        return not self._pending

    @property
    def pending(self) -> int:
        """Ciphertext bytes made but not yet taken by the kernel."""
        return len(self._pending) + self._outgoing.pending

    @property
    def written(self) -> int:
        """Ciphertext bytes the kernel took so far."""
        return self._written

    def fileno(self) -> int:
        return self._fd

    async def wait_send_all_might_not_block(self) -> None:
        if self._pending:
            await self._send_pending()
        else:
            await trio.lowlevel.wait_writable(self._fd)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Decrypted bytes; ``b""`` at the end (with or without ``close_notify``)."""
        if self._closed:
            raise trio.ClosedResourceError
        await trio.lowlevel.checkpoint_if_cancelled()
        size = max_bytes or _READ_SIZE
        eof = False
        while True:
            try:
                data = self._ssl.read(size)
            except ssl.SSLWantReadError:
                if eof:
                    return b""
                self._write_pending()
                eof = not await self._fill()  # then the machine says how it ended
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            except ssl.SSLError as exc:
                raise trio.BrokenResourceError(exc) from exc
            else:
                if self._outgoing.pending:  # e.g. the answer to a key update
                    self._write_pending()
                return data

    async def aclose(self) -> None:
        """Send ``close_notify`` if the kernel takes it at once, then close the socket."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        with contextlib.suppress(ssl.SSLError, trio.BrokenResourceError, ValueError):
            if not self._pending:
                with contextlib.suppress(ssl.SSLWantReadError):
                    self._ssl.unwrap()  # makes close_notify; the peer's is not awaited
                self._write_pending()
        self._closed = True
        await self.transport_stream.aclose()

    @property
    def selected_alpn_protocol(self) -> str | None:
        return self._ssl.selected_alpn_protocol()

    @property
    def version(self) -> str | None:
        return self._ssl.version()


def is_tls(stream: trio.abc.Stream) -> bool:
    """Whether ``stream`` is a TLS connection."""
    return isinstance(stream, TlsStream)


def transport_socket(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The TCP socket under ``stream`` (through TLS), or ``None`` (an in-memory stream)."""
    if isinstance(stream, TlsStream):
        return stream.transport_stream.socket
    return stream.socket if isinstance(stream, trio.SocketStream) else None


def _peer(stream: trio.SocketStream) -> str:
    try:
        address = stream.socket.getpeername()
    except OSError:
        return "?"
    return str(address[0]) if isinstance(address, tuple) else str(address)


# -- the session's direct write path over TLS (used by .session.Session) ------------------

#: TLS: encrypted bytes that may wait for the kernel before the outbox stops feeding more
DIRECT_IN_FLIGHT = 65536


class DirectStream(Protocol):
    """A stream written without awaiting, as a socket is (:meth:`TlsStream.send_nowait`
    says how)."""

    @property
    def pending(self) -> int: ...

    @property
    def written(self) -> int: ...

    def send_nowait(self, data: bytes) -> bool: ...

    def fileno(self) -> int: ...


def send_queued(direct: DirectStream, outbox: Outbox, metrics: Metrics) -> bool:
    """What the outbox holds, in one write, once the kernel took the ciphertext in flight
    down to :data:`DIRECT_IN_FLIGHT` bytes (until then it waits in the outbox, where it
    counts as backlog, as bytes the kernel has no room for do on a socket); ``True`` when
    nothing is left to send."""
    done = direct.send_nowait(b"")  # what the kernel takes of the ciphertext in flight
    if not outbox.size or direct.pending > DIRECT_IN_FLIGHT:
        return done and not outbox.size
    data = outbox.take_nowait()
    metrics.inc("data_sent_total", len(data))
    return direct.send_nowait(data)


async def write_queued(
    direct: DirectStream, outbox: Outbox, metrics: Metrics, write_timeout: float
) -> None:
    """The session's writer over TLS: send until nothing is left; as on a socket, each
    wait is bounded by ``write_timeout`` and the deadline moves whenever the kernel takes bytes
    (:class:`trio.TooSlowError` when it does not)."""
    deadline = trio.current_time() + write_timeout
    written = direct.written
    while not send_queued(direct, outbox, metrics):
        if direct.written != written:
            written = direct.written
            deadline = trio.current_time() + write_timeout
        with trio.move_on_at(deadline) as waited:
            await trio.lowlevel.wait_writable(direct.fileno())
        if waited.cancelled_caught:
            raise trio.TooSlowError
