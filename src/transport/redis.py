"""A minimal Redis client on trio streams (RESP2): commands, pipelines and pub/sub.

Cableway needs a handful of commands (PUBLISH, SUBSCRIBE/UNSUBSCRIBE, XADD, XGROUP,
XREADGROUP, XACK, XDEL, XAUTOCLAIM) and, above all, failures it can see: every broken,
refused or timed-out connection raises :class:`RedisConnectionError` at once, so the
adapters (``redis_adapters.py``) decide about reconnects, backoff, logging and what a
publisher is told. The client never reconnects by itself.

Resource handling:
    One :class:`RedisConnection` is one TCP (or TLS) stream. Commands on it are
    serialised by a lock; a pipeline writes every command in one send and reads the
    replies in order. A pub/sub connection is used by one reader task; subscribe and
    unsubscribe requests are plain writes whose confirmations arrive as messages.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import unquote, urlsplit

import trio

from ..config import SentinelAddress

__all__ = [
    "RedisConnection",
    "RedisConnectionError",
    "RedisError",
    "RedisTls",
    "RedisUrl",
    "encode_command",
    "parse_redis_url",
]

Arg = str | bytes | int

_READ_SIZE = 65536
_MAX_LINE = 64 * 1024
_MAX_BULK = 512 * 1024 * 1024


class RedisError(Exception):
    """An error reply from Redis (``-ERR ...``); returned inside pipelines, raised otherwise."""


class RedisConnectionError(Exception):
    """The connection to Redis failed, broke, timed out, or Redis sent something unreadable."""


Reply: TypeAlias = "bytes | int | list[Reply] | RedisError | None"


@dataclass(frozen=True, slots=True)
class RedisTls:
    """How a ``rediss://`` connection checks the server and proves who it is.

    AnyCable-Go's ``--redis_tls_verify``, ``--redis_tls_ca_cert_path``,
    ``--redis_tls_client_cert_path`` and ``--redis_tls_client_key_path``. The files are read
    at every connect, so a renewed certificate is picked up by the next reconnect.
    """

    verify: bool = True
    ca_cert_path: str | None = None
    client_cert_path: str | None = None
    client_key_path: str | None = None

    def context(self) -> ssl.SSLContext:
        """A client context; raises :class:`RedisConnectionError` for unreadable files."""
        try:
            if self.verify:
                # the CA file replaces the system's roots, as AnyCable's RootCAs does
                context = ssl.create_default_context(cafile=self.ca_cert_path)
            else:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if self.client_cert_path is not None:
                context.load_cert_chain(self.client_cert_path, self.client_key_path)
        except (OSError, ssl.SSLError) as exc:
            raise RedisConnectionError(f"cannot load the Redis TLS files: {exc}") from None
        return context


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """The parts of a ``redis://`` / ``rediss://`` URL Cableway uses, plus how to reach it.

    With ``sentinels`` the URL's host is the name of the master the sentinels watch
    (``redis://mymaster/5``): :func:`cableway.transport.sentinel.connect` asks them where
    it is at every connect.
    """

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool
    tls_options: RedisTls = RedisTls()
    sentinels: tuple[SentinelAddress, ...] = ()

    def describe(self) -> str:
        """Host, port and database, without credentials (for logs)."""
        scheme = "rediss" if self.tls else "redis"
        if self.sentinels:
            watched = ",".join(f"{s.host}:{s.port}" for s in self.sentinels)
            return f"{scheme}://{self.host}/{self.db} (master name, sentinels {watched})"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"


def parse_redis_url(url: str) -> RedisUrl:
    """Read ``redis://[user:password@]host[:port][/db]`` (``rediss://`` for TLS).

    Raises:
        ValueError: not such a URL.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("expected a redis:// or rediss:// URL")
    host = parts.hostname
    if not host:
        raise ValueError("the URL names no host")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError("invalid port") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError("the database (URL path) must be a number")
    return RedisUrl(
        host=host,
        port=port,
        db=int(path) if path else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=parts.scheme == "rediss",
    )


def _bytes(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, int):
        return str(arg).encode()
    # a lone surrogate (JSON "\\ud800" escapes reach Python strings) has no UTF-8 form:
    # stored as its surrogatepass bytes, read back the same way (redis_broker.py)
    return arg.encode("utf-8", "surrogatepass")


def encode_command(*args: Arg) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _bytes(arg)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Reader:
    """Incremental RESP2 reply parser over a trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _fill(self) -> None:
        try:
            data = await self.stream.receive_some(_READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise RedisConnectionError(f"connection lost: {exc}") from None
        if not data:
            raise RedisConnectionError("connection closed by Redis")
        self.buffer += data

    async def _line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return line
            if len(self.buffer) > _MAX_LINE:
                raise RedisConnectionError("reply line too long")
            await self._fill()

    async def read(self) -> Reply:
        line = await self._line()
        if not line:
            raise RedisConnectionError("empty reply line")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return self._int(rest)
        if kind == b"$":
            size = self._int(rest)
            if size < 0:
                return None
            if size > _MAX_BULK:
                raise RedisConnectionError("bulk reply too large")
            while len(self.buffer) < size + 2:
                await self._fill()
            data = bytes(self.buffer[:size])
            del self.buffer[: size + 2]
            return data
        if kind == b"*":
            count = self._int(rest)
            if count < 0:
                return None
            return [await self.read() for _ in range(count)]
        raise RedisConnectionError(f"unexpected reply type {kind!r}")

    @staticmethod
    def _int(text: bytes) -> int:
        try:
            return int(text)
        except ValueError:
            raise RedisConnectionError("malformed integer in reply") from None


class RedisConnection:
    """One connection to Redis. Use :meth:`open`; close with :meth:`aclose`."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._reader = _Reader(stream)
        self._lock = trio.Lock()
        self.closed = False
        #: where it is connected (host, port), set by :meth:`open`
        self.address: tuple[str, int] | None = None

    @classmethod
    async def open(cls, url: RedisUrl, *, connect_timeout: float = 5.0) -> RedisConnection:
        """Connect, authenticate and select the database within ``connect_timeout`` s."""
        try:
            with trio.fail_after(connect_timeout):
                stream: trio.abc.Stream
                if url.tls:
                    secure = await trio.open_ssl_over_tcp_stream(
                        url.host, url.port, ssl_context=url.tls_options.context()
                    )
                    try:
                        # the handshake now, so that a refused certificate is a failed connect
                        await secure.do_handshake()
                    except BaseException:
                        await trio.aclose_forcefully(secure)
                        raise
                    stream = secure
                else:
                    stream = await trio.open_tcp_stream(url.host, url.port)
                connection = cls(stream)
                connection.address = (url.host, url.port)
                try:
                    if url.password is not None:
                        auth: list[Arg] = ["AUTH", url.password]
                        if url.username is not None:
                            auth.insert(1, url.username)
                        await connection.execute(*auth)
                    if url.db:
                        await connection.execute("SELECT", url.db)
                except BaseException:
                    await connection.aclose()
                    raise
                return connection
        except trio.TooSlowError:
            raise RedisConnectionError(f"timed out connecting to {url.describe()}") from None
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            reason = exc.__cause__ if exc.__cause__ is not None else exc
            raise RedisConnectionError(
                f"TLS handshake with {url.describe()} failed: {reason}"
            ) from None
        except OSError as exc:
            raise RedisConnectionError(
                f"cannot connect to {url.describe()}: {exc.strerror or exc}"
            ) from None

    async def send(self, data: bytes) -> None:
        """Write raw bytes (encoded commands)."""
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.closed = True
            raise RedisConnectionError(f"connection lost: {exc}") from None

    async def read(self) -> Reply:
        """The next reply or pushed message."""
        try:
            return await self._reader.read()
        except RedisConnectionError:
            self.closed = True
            raise

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Reply]:
        """Send every command in one write and read their replies (errors are returned)."""
        async with self._lock:
            if self.closed:
                raise RedisConnectionError("connection closed")
            try:
                await self.send(b"".join(encode_command(*command) for command in commands))
                return [await self.read() for _ in commands]
            except BaseException:
                # cancelled or failed half-way: replies are out of step, never reuse it
                self.closed = True
                raise

    async def execute(self, *args: Arg) -> Reply:
        """Run one command; raises :class:`RedisError` for an error reply."""
        (reply,) = await self.pipeline([args])
        if isinstance(reply, RedisError):
            raise reply
        return reply

    async def aclose(self) -> None:
        self.closed = True
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await self.stream.aclose()
