"""The declarations of the options about serving: listeners, authentication, signed streams
and broadcasting (part of :data:`cableway.config.options.OPTIONS`)."""

from __future__ import annotations

from .option import AUTH, BROADCAST, SERVER, STREAMS, Option, declare
from .parse import keep, unset_if_empty

#: The HTTP broadcast port when it is not the main one (no broadcast key; AnyCable's default).
OPEN_BROADCAST_PORT = 8090

SERVING: tuple[Option, ...] = (
    declare(
        "host",
        "str",
        "localhost",
        "address to bind (0.0.0.0 = all interfaces)",
        SERVER,
        toml=("server", "host"),
    ),
    declare(
        "port",
        "int",
        8080,
        "main port: WebSocket, health, and HTTP broadcasts when a broadcast key is set",
        SERVER,
        env=("ANYCABLE_PORT", "PORT"),
        toml=("server", "port"),
        high=65535,
    ),
    declare(
        "path",
        "list",
        ("/cable",),
        "WebSocket endpoint path(s), comma-separated; each may be a pattern with {placeholders} "
        "and a trailing * (/accounts/{tenant}/cable, /admin/cable/*), as in AnyCable-Go",
        SERVER,
        toml=("ws", "paths"),
    ),
    declare(
        "health-path",
        "str",
        "/health",
        "health check endpoint path",
        SERVER,
        toml=("server", "health_path"),
        pattern=True,
    ),
    declare(
        "demo",
        "bool",
        False,
        "Cableway option (not AnyCable's): serve a live Turbo demo page at / (WebSocket and "
        "SSE panes), generating and printing any missing secret; only for loopback clients "
        "unless --host is not a loopback address (docs/demo.md)",
        SERVER,
    ),
    declare(
        "noauth",
        "bool",
        False,
        'accept every connection without authentication (identifiers {"sid":...})',
        SERVER,
        toml=("noauth",),
    ),
    declare(
        "public",
        "bool",
        False,
        "public mode: --noauth + --public_streams + unauthenticated HTTP broadcasting "
        "(even when a secret is set)",
        SERVER,
        toml=("public",),
    ),
    declare(
        "allowed_origins",
        "list",
        (),
        "origins that may open a WebSocket or get CORS headers, comma-separated: "
        "example.com, localhost:3000, *.example.com, https://app.example.com; * = all "
        "(explicitly)",
        SERVER,
        toml=("server", "allowed_origins"),
        toml_convert=unset_if_empty,
        note="every origin",
    ),
    declare(
        "max-conn",
        "int",
        0,
        "most concurrent client connections; further ones wait in the listen backlog",
        SERVER,
        toml=("server", "max_conn"),
        low=0,
        note="unlimited",
    ),
    declare(
        "ssl_cert",
        "str",
        "",
        "TLS: PEM certificate chain (leaf first) served on every port (wss://, https://); "
        "needs --ssl_key",
        SERVER,
        toml=("server", "ssl", "cert_path"),
        note="plain text",
    ),
    declare(
        "ssl_key",
        "str",
        "",
        "TLS: PEM private key (unencrypted) of --ssl_cert",
        SERVER,
        toml=("server", "ssl", "key_path"),
    ),
    declare(
        "shutdown_timeout",
        "float",
        30.0,
        "graceful shutdown budget, in seconds",
        SERVER,
        toml=("app", "shutdown_timeout"),
    ),
    declare(
        "workers",
        "str",
        "1",
        "Cableway option (not AnyCable's): worker processes serving the same ports (auto: "
        "one per CPU this process may use); they share broadcasts, history, sessions and "
        "presence without Redis (docs/workers.md)",
        SERVER,
        shown="1",
    ),
    declare(
        "shutdown_delay",
        "float",
        0.0,
        "seconds to keep serving after SIGTERM/SIGINT before shutting down (lets a load "
        "balancer de-register the node)",
        SERVER,
        toml=("app", "shutdown_delay"),
    ),
    declare(
        "secret",
        "secret",
        None,
        "master secret: default JWT, streams and Turbo secret; derives the broadcast key",
        AUTH,
        toml=("secret",),
    ),
    declare(
        "jwt_secret",
        "secret",
        None,
        "JWT (HMAC) secret; enables JWT identification",
        AUTH,
        toml=("jwt", "secret"),
        shown="--secret",
    ),
    declare(
        "jwt_param",
        "str",
        "jid",
        "query parameter carrying the token; the header is X- plus it (X-JID by default)",
        AUTH,
        toml=("jwt", "param"),
    ),
    declare(
        "enforce_jwt",
        "bool",
        False,
        "reject connections without a token (reason unauthorized); needs a JWT secret",
        AUTH,
        toml=("jwt", "force"),
    ),
    declare(
        "streams_secret",
        "secret",
        None,
        "secret verifying signed stream names ($pubsub signed_stream_name)",
        STREAMS,
        toml=("streams", "secret"),
        shown="--secret",
    ),
    declare(
        "public_streams",
        "bool",
        False,
        "allow unsigned $pubsub subscriptions by stream_name",
        STREAMS,
        toml=("streams", "public"),
    ),
    declare(
        "turbo_streams",
        "bool",
        False,
        "serve Turbo::StreamsChannel (needs a Turbo secret, or --turbo_rails_cleartext)",
        STREAMS,
        toml=("streams", "turbo"),
    ),
    declare(
        "turbo_streams_secret",
        "secret",
        None,
        "secret verifying Turbo signed stream names (Rails signed_stream_verifier_key)",
        STREAMS,
        toml=("streams", "turbo_secret"),
        shown="streams secret",
    ),
    declare(
        "turbo_rails_cleartext",
        "bool",
        False,
        "deprecated; AnyCable 1.4 semantics: with Turbo Streams on and no Turbo secret, "
        "signed_stream_name is taken as the plain stream name (implies --turbo_streams)",
        STREAMS,
    ),
    declare(
        "streams_whisper",
        "bool",
        False,
        "allow whispers on signed $pubsub streams (public streams always allow them)",
        STREAMS,
        toml=("streams", "whisper"),
    ),
    declare(
        "streams_presence",
        "bool",
        True,
        "allow presence on signed $pubsub streams (public streams always allow it)",
        STREAMS,
        toml=("streams", "presence"),
    ),
    declare(
        "broadcast_adapter",
        "list",
        ("http",),
        "broadcast adapters, comma-separated: http (POST /_broadcast), redis (Redis pub/sub "
        "channel --redis_channel, every node delivers, no history), redisx (Redis Stream "
        "--redisx_stream, consumer group bx: one node takes each publication, through the "
        "broker); nats is refused",
        BROADCAST,
        toml=("broadcast_adapters",),
        field="broadcast_adapters",
        choices=("http", "redis", "redisx", "nats"),
    ),
    declare(
        "broadcast_key",
        "secret",
        None,
        'bearer key for HTTP broadcasts; default hex HMAC-SHA256(secret, "broadcast-cable"); '
        "none = no authorization",
        BROADCAST,
        toml=("broadcast_key",),
        shown="derived from --secret",
    ),
    declare(
        "http_broadcast_port",
        "int",
        0,
        "HTTP broadcast port; 0 = the main port when a broadcast key is set, else "
        f"{OPEN_BROADCAST_PORT}",
        BROADCAST,
        toml=("http_broadcast", "port"),
        low=0,
        high=65535,
        note="auto",
    ),
    declare(
        "http_broadcast_path",
        "str",
        "/_broadcast",
        "HTTP broadcast endpoint path",
        BROADCAST,
        toml=("http_broadcast", "path"),
        pattern=True,
    ),
    declare(
        "pubsub",
        "str",
        "none",
        "inter-node fan-out: redis (each publication goes through the Redis channel named "
        "like its stream, nodes subscribe to the streams they serve) or none (this node "
        "only); default redis when --broadcast_adapter includes redisx; nats is refused",
        BROADCAST,
        toml=("pubsub_adapter",),
        note="redis with redisx",
        choices=("none", "redis"),
    ),
    declare(
        "redis_url",
        "str",
        "redis://localhost:6379",
        "Redis for the redis/redisx adapters and --pubsub=redis: "
        "redis[s]://[user:password@]host[:port][/db]",
        BROADCAST,
        env=("ANYCABLE_REDIS_URL", "REDIS_URL"),
        toml=("redis", "url"),
    ),
    declare(
        "redis_channel",
        "str",
        "__anycable__",
        "Redis pub/sub channel of --broadcast_adapter=redis",
        BROADCAST,
        toml=("redis_pubsub_broadcast", "channel"),
    ),
    declare(
        "redisx_stream",
        "str",
        "__anycable__",
        "Redis Stream of --broadcast_adapter=redisx (consumer group bx)",
        BROADCAST,
        toml=("redis_stream_broadcast", "stream"),
    ),
    declare(
        "redis_sentinels",
        "str",
        "",
        "Redis Sentinel addresses, comma-separated: [redis://][[user]:password@]host:port "
        "(port 26379 if left out; the credentials of the first are the sentinels'); the host "
        "of --redis_url is then the master's name (redis://mymaster/5), found again at "
        "every reconnect",
        BROADCAST,
        toml=("redis", "sentinels"),
        toml_convert=keep,
    ),
    declare(
        "redis_sentinel_discovery_interval",
        "int",
        30,
        "accepted for compatibility and unused, as in AnyCable-Go 1.6: Cableway asks the "
        "sentinels for the master at every (re)connect",
        BROADCAST,
        toml=("redis", "sentinel_discovery_interval"),
        low=0,
    ),
    declare(
        "redis_tls_verify",
        "bool",
        True,
        "rediss:// only: check the Redis server's certificate and host name (AnyCable-Go's "
        "default is false); false = encrypt without checking who answers",
        BROADCAST,
        toml=("redis", "tls_verify"),
    ),
    declare(
        "redis_tls_ca_cert_path",
        "str",
        "",
        "rediss:// only: PEM file of the CA(s) that signed the Redis server's certificate "
        "(replaces the system's CAs)",
        BROADCAST,
        toml=("redis", "tls_ca_cert_path"),
        toml_convert=keep,
        note="system CAs",
    ),
    declare(
        "redis_tls_client_cert_path",
        "str",
        "",
        "rediss:// only: PEM client certificate for mutual TLS (with --redis_tls_client_key_path)",
        BROADCAST,
        toml=("redis", "tls_client_cert_path"),
        toml_convert=keep,
    ),
    declare(
        "redis_tls_client_key_path",
        "str",
        "",
        "rediss:// only: PEM private key of --redis_tls_client_cert_path",
        BROADCAST,
        toml=("redis", "tls_client_key_path"),
        toml_convert=keep,
    ),
)
