"""What the trio server does once at start-up: listen, tune the process, say what it serves."""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

import trio

from ..config import StartupError
from ..protocol.broker import MemoryBroker
from .redis_broker import RedisBroker
from .sentinel import redis_target

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "announce",
    "close_listeners",
    "listen",
    "raise_open_file_limit",
    "tune_garbage_collector",
]

log = logging.getLogger("cableway")


def announce(
    config: Config,
    *,
    tls: bool = False,
    main_port: int,
    broadcast_port: int,
    memory: MemoryBroker | None,
    redis: RedisBroker | None,
    redis_links: bool,
    redisx: bool,
    publisher: bool,
    hub_worker: int | None = None,
) -> None:
    """The start-up log: every endpoint (``https://`` with TLS, as AnyCable-Go says it), the
    broker and the Redis links."""
    scheme = "https" if tls else "http"
    base = f"{scheme}://{config.host}:{main_port}"
    for path in config.path:
        log.info("Handle WebSocket connections at %s%s", base, path)
    log.info("Handle health requests at %s%s", base, config.health_path)
    if "http" in config.broadcast_adapters:
        auth = "authorization required" if config.broadcast_key else "no authorization"
        log.info(
            "Accept broadcast requests at %s://%s:%d%s (%s)",
            scheme,
            config.host,
            broadcast_port,
            config.http_broadcast_path,
            auth,
        )
    if config.jwt_secret:
        log.info(
            "JWT authentication is enabled (param: %s, enforced: %s)",
            config.jwt_param,
            str(config.enforce_jwt).lower(),
        )
    else:
        log.info("JWT authentication is disabled: every connection is accepted anonymously")
    if redis is not None:
        rb = redis
        log.info(
            "Using Redis broker at %s (history limit: %d, history ttl: %gs, "
            "sessions ttl: %gs, presence ttl: %gs)",
            redis_target(config).describe(),
            rb.history_limit,
            rb.history_ttl,
            rb.sessions_ttl,
            rb.presence_ttl,
        )
    broker = memory
    if broker is not None:
        log.info(
            "Using in-memory broker (epoch: %s, history limit: %d, history ttl: %gs, "
            "sessions ttl: %gs, presence ttl: %gs)",
            broker.epoch,
            broker.history_limit,
            broker.history_ttl,
            broker.sessions_ttl,
            broker.presence_ttl,
        )
        if broker.history_max_bytes:
            log.info(
                "History capped at %d bytes: the oldest messages are evicted first",
                broker.history_max_bytes,
            )
    elif hub_worker is not None:
        log.info(
            "Worker %d of %d: broadcasts relayed to every worker by the supervisor's hub%s",
            hub_worker,
            config.workers,
            "; history, sessions and presence kept there" if config.broker == "memory" else "",
        )
    elif redis is None:
        log.info("No broker: streams keep no history and sessions cannot be restored")
    if redis_links:
        url = redis_target(config).describe()
        if "redis" in config.broadcast_adapters:
            log.info("Accept broadcasts from Redis channel %s at %s", config.redis_channel, url)
        if redisx:
            log.info(
                "Accept broadcasts from Redis stream %s (group bx) at %s",
                config.redisx_stream,
                url,
            )
        if publisher:
            log.info("Using Redis pub/sub at %s", url)
    if config.sse:
        log.info("Handle SSE requests at %s%s", base, config.sse_path)
    channels = ["$pubsub"]
    if config.turbo_streams:
        channels.append("Turbo::StreamsChannel")
    log.info("Using channels router: %s", ", ".join(channels))
    if config.public:
        log.info("Server is running in the public mode")
    if tls:
        log.info("TLS: certificate %s, key %s (TLS 1.2 and 1.3)", config.ssl_cert, config.ssl_key)


def tune_garbage_collector() -> None:
    """Keep the cyclic collector off the fan-out path.

    Every connection keeps a few long-lived objects (tasks, cancel scopes, events);
    with thousands of them each young-generation collection walks a large, stable
    heap. Objects created at start-up are frozen out of collections, and the
    young-generation threshold is raised so collections are rare and cheap (the
    benchmarks in docs/benchmarks.md measured the collector as most of the CPU per
    delivery at 5 000 subscribers).

    This is safe for memory only because a closed session is freed by reference
    counting: nothing it owns points back at it (tests/integration/test_session_freed.py
    proves it with the collector off). A reference cycle through a session would keep
    it until a rare full collection (bench/churn.py shows the growth).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def raise_open_file_limit() -> None:
    """Every connection is a file descriptor: use the hard limit, as AnyCable-Go does."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        log.info("Open file limit: %d", soft)
    except (ImportError, ValueError, OSError) as exc:  # not on every platform
        log.warning("could not raise the open file limit: %s", exc)


async def listen(
    host: str, port: int, host_option: str, port_option: str
) -> list[trio.SocketListener]:
    """trio.open_tcp_listeners, its failure as a StartupError naming the options."""
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise StartupError.cannot_listen(exc, host, port, host_option, port_option) from exc


def close_listeners(listeners: list[trio.SocketListener]) -> None:
    for listener in listeners:
        listener.socket.close()
