"""Which Redis links a node's configuration needs (spec §11.4-11.7), made in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..protocol.broadcast import Publication, RemoteDisconnect
from .redis_broker import RedisBroker
from .redisx import StreamConsumer
from .scaleout import Publisher, StateSignal, Subscriber
from .sentinel import redis_target

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["RedisLinks", "redis_links"]


@dataclass
class RedisLinks:
    """A node's Redis links (each None when the configuration needs none)."""

    #: fired whenever a link's state changes
    state: StateSignal = field(default_factory=StateSignal)
    #: one ordered connection for PUBLISH and the broker's scripts and reads
    publisher: Publisher | None = None
    #: the legacy broadcast channel and (--pubsub=redis) one channel per stream
    subscriber: Subscriber | None = None
    #: --broadcast_adapter=redisx
    consumer: StreamConsumer | None = None
    #: --broker=redis: history, sessions and presence in Redis
    broker: RedisBroker | None = None


def redis_links(
    config: Config,
    *,
    on_broadcast: Callable[[bytes, str], None],
    on_command: Callable[[RemoteDisconnect], None],
    on_stamped: Callable[[Publication, int | None, str | None], None],
    on_entry: Callable[[bytes, str], Awaitable[bool]],
) -> RedisLinks:
    """The links ``config`` needs, wired to the node's callbacks (none started yet)."""
    links = RedisLinks()
    adapters = config.broadcast_adapters
    pubsub = config.pubsub == "redis"
    if not (pubsub or config.broker == "redis" or "redis" in adapters or "redisx" in adapters):
        return links
    url = redis_target(config)
    legacy = config.redis_channel if "redis" in adapters else None
    if pubsub or config.broker == "redis":
        links.publisher = Publisher(url, state=links.state)
    if config.broker == "redis":
        assert links.publisher is not None
        links.broker = RedisBroker(
            links.publisher,
            history_limit=config.history_limit,
            history_ttl=config.history_ttl,
            sessions_ttl=config.sessions_ttl,
            presence_ttl=config.presence_ttl,
        )
    if pubsub or legacy is not None:
        links.subscriber = Subscriber(
            url,
            legacy_channel=legacy,
            per_stream=pubsub,
            on_broadcast=on_broadcast,
            on_command=on_command,
            on_stamped=on_stamped,
            state=links.state,
        )
    if "redisx" in adapters:
        links.consumer = StreamConsumer(
            url, stream=config.redisx_stream, on_entry=on_entry, state=links.state
        )
    return links
