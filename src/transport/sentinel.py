"""Redis Sentinel (``--redis_sentinels``): find the current master at every connect.

With sentinels, ``--redis_url``'s host is the master's *name* (``redis://mymaster/5``).
:func:`connect` asks the sentinels, in the order given, ``SENTINEL
get-master-addr-by-name <name>``; the first that answers names the master. Cableway then
connects there (with the URL's credentials, database and TLS settings) and checks with
``ROLE`` that the server really is a master: right after a failover a sentinel may still
name the old one, which is refused like a failed connect, so the caller's backoff asks
again.

Failover: while a connection to the master is in use, :func:`serve_master` listens to a
sentinel's ``+switch-master`` channel (as AnyCable-Go's client does) and ends the
connection as soon as the sentinels promote another server, so that the adapter's
reconnect (scaleout.py) comes back here and finds the new master. A dead master breaks
its connections anyway, and Sentinel closes the clients of a demoted one (``CLIENT
KILL``) some seconds later. Nothing reconnects by itself: as with a single Redis, a
failed :func:`connect` raises :class:`RedisConnectionError`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

import trio

from ..config import Config, SentinelAddress, parse_sentinels
from .redis import (
    RedisConnection,
    RedisConnectionError,
    RedisError,
    RedisTls,
    RedisUrl,
    encode_command,
    parse_redis_url,
)

__all__ = ["MasterSwitched", "connect", "find_master", "redis_target", "serve_master"]

log = logging.getLogger("cableway.redis")

#: how long to wait before watching the sentinels again after losing them
_WATCH_RETRY = 1.0


class MasterSwitched(RedisConnectionError):
    """The sentinels promoted another master while a connection was in use."""


def redis_target(config: Config) -> RedisUrl:
    """Where the Redis adapters connect: ``--redis_url`` with the TLS options, and with
    ``--redis_sentinels`` the sentinels that name its master (TLS to the master when the
    URL, or as in AnyCable-Go the first sentinel, is written ``rediss://``)."""
    url = parse_redis_url(config.redis_url)
    sentinels: tuple[SentinelAddress, ...] = ()
    tls = url.tls
    if config.redis_sentinels:
        sentinels, sentinel_tls = parse_sentinels(config.redis_sentinels)
        tls = tls or sentinel_tls
    return replace(
        url,
        tls=tls,
        sentinels=sentinels,
        tls_options=RedisTls(
            verify=config.redis_tls_verify,
            ca_cert_path=config.redis_tls_ca_cert_path or None,
            client_cert_path=config.redis_tls_client_cert_path or None,
            client_key_path=config.redis_tls_client_key_path or None,
        ),
    )


def _sentinel_url(sentinel: SentinelAddress) -> RedisUrl:
    # sentinels are spoken to in plain text, as AnyCable-Go does (its sentinel client gets
    # no TLS settings); their own credentials come from the --redis_sentinels entry
    return RedisUrl(
        host=sentinel.host,
        port=sentinel.port,
        db=0,
        username=sentinel.username,
        password=sentinel.password,
        tls=False,
    )


async def find_master(url: RedisUrl, *, connect_timeout: float = 5.0) -> tuple[str, int]:
    """The address the first answering sentinel gives for master ``url.host``.

    Raises:
        RedisConnectionError: no sentinel answered, or none knows that master.
    """
    problems: list[str] = []
    for sentinel in url.sentinels:
        where = f"sentinel {sentinel.host}:{sentinel.port}"
        try:
            connection = await RedisConnection.open(
                _sentinel_url(sentinel), connect_timeout=connect_timeout
            )
            try:
                reply = await connection.execute("SENTINEL", "get-master-addr-by-name", url.host)
            finally:
                await connection.aclose()
        except (RedisConnectionError, RedisError) as exc:
            problems.append(f"{where}: {exc}")
            continue
        if (
            isinstance(reply, list)
            and len(reply) == 2
            and isinstance(reply[0], bytes)
            and isinstance(reply[1], bytes)
            and reply[1].isdigit()
        ):
            return reply[0].decode("ascii", "replace"), int(reply[1])
        problems.append(f"{where}: does not know master {url.host!r}")
    raise RedisConnectionError("no sentinel named the master: " + "; ".join(problems))


async def connect(url: RedisUrl, *, connect_timeout: float = 5.0) -> RedisConnection:
    """A connection to ``url``: directly, or to the master the sentinels name (checked with
    ``ROLE``). Raises :class:`RedisConnectionError` or :class:`RedisError` (e.g. AUTH)."""
    if not url.sentinels:
        return await RedisConnection.open(url, connect_timeout=connect_timeout)
    host, port = await find_master(url, connect_timeout=connect_timeout)
    master = replace(url, host=host, port=port, sentinels=())
    connection = await RedisConnection.open(master, connect_timeout=connect_timeout)
    try:
        role = await connection.execute("ROLE")
    except BaseException:
        await connection.aclose()
        raise
    if not (isinstance(role, list) and role and role[0] == b"master"):
        await connection.aclose()
        actual = role[0] if isinstance(role, list) and role else role
        raise RedisConnectionError(
            f"{master.describe()}, named master {url.host!r} by the sentinels, has role "
            f"{actual!r} (failover in progress?)"
        )
    return connection


async def _wait_for_switch(url: RedisUrl, address: tuple[str, int]) -> None:
    """Return once the sentinels name a master other than ``address``."""
    while True:
        for sentinel in url.sentinels:
            try:
                connection = await RedisConnection.open(_sentinel_url(sentinel))
            except (RedisConnectionError, RedisError) as exc:
                log.debug("cannot watch sentinel %s:%d: %s", sentinel.host, sentinel.port, exc)
                continue
            try:
                await connection.send(encode_command("SUBSCRIBE", "+switch-master"))
                while True:
                    reply = await connection.read()
                    if not (isinstance(reply, list) and len(reply) == 3):
                        continue
                    kind, _channel, data = reply
                    if kind == b"subscribe":
                        # a switch just before the subscription would go unnoticed
                        if await find_master(url) != address:
                            return
                    elif kind == b"message" and isinstance(data, bytes):
                        # "<name> <old-ip> <old-port> <new-ip> <new-port>"
                        fields = data.decode("utf-8", "replace").split(" ")
                        if len(fields) == 5 and fields[0] == url.host:
                            return
            except (RedisConnectionError, RedisError) as exc:
                log.debug("lost sentinel %s:%d: %s", sentinel.host, sentinel.port, exc)
            finally:
                await connection.aclose()
        await trio.sleep(_WATCH_RETRY)


async def serve_master(
    url: RedisUrl,
    connection: RedisConnection,
    body: Callable[[RedisConnection], Awaitable[None]],
) -> None:
    """Run ``body(connection)``; with sentinels, stop it and raise :class:`MasterSwitched`
    when they promote another master."""
    if not url.sentinels or connection.address is None:
        await body(connection)
        return
    address = connection.address
    switched = False
    errors: list[Exception] = []
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            nonlocal switched
            await _wait_for_switch(url, address)
            switched = True
            nursery.cancel_scope.cancel()

        async def serve() -> None:
            try:
                await body(connection)
            except (RedisConnectionError, RedisError) as exc:
                errors.append(exc)  # raised below, outside the nursery's exception group
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        nursery.start_soon(serve)
    if errors:
        raise errors[0]
    if switched:
        raise MasterSwitched(
            f"the sentinels promoted another master than {address[0]}:{address[1]}"
        )
