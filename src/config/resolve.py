"""From the collected sources to a :class:`~cableway.config.Config`: the cross-field rules.

A field with no rule beyond its declaration (type, range, choices) is read straight from it
(:meth:`Values.get`). The rules between options live in one small function per concern
(public mode, secrets, JWT enforcement, Turbo Streams, broadcasting, listeners, log level,
origins, metrics, the broker, SSE, Redis); each takes the :class:`Values`, where needed a
list to append warnings to and the fields decided before it, and returns the Config fields
it decides. :func:`resolve` runs them in order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from ..auth.keys import derive_api_key, derive_broadcast_key
from ..protocol.routes import parse_path_pattern
from ..rpc.http import derive_rpc_key
from ..rpc.settings import (
    DEFAULT_HEADERS,
    RpcSettings,
    parse_header_names,
    parse_rpc_host,
    request_timeout_seconds,
)
from .errors import ConfigError
from .model import Config
from .options import BROKER_SETTINGS, BY_FIELD, BY_NAME, OPEN_BROADCAST_PORT, OPTIONS, REFUSED
from .parse import (
    LABEL,
    check_redis_url,
    is_loopback,
    origin_problem,
    parse_sentinels,
    split_list,
)
from .sources import (
    FileOptions,
    Raw,
    from_command_line,
    from_environment,
    from_file,
    unread_variables,
)
from .values import Values

__all__ = ["file_options", "load_config", "load_config_with_warnings"]

Fields = dict[str, Any]  # Config fields decided by one concern


def file_options(argv: Sequence[str], env: Mapping[str, str]) -> FileOptions:
    """Read the configuration-file flags from ``argv`` and ``env`` (pure; raises ConfigError)."""
    values = from_environment(env)
    values.update(from_command_line(argv))
    get = Values(values)
    given = get.given("config-path") is not None
    return FileOptions(
        config_path=get.string("config-path", default="") if given else None,
        ignore_config_path=get.get("ignore-config-path"),
        print_config=get.get("print-config"),
    )


def load_config(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    file_values: Mapping[str, object] | None = None,
    file_name: str = "the configuration file",
) -> Config:
    """Resolve the configuration from flags (``argv`` without the program name) and ``env``.

    ``file_values`` is a parsed configuration file (:func:`read_config_file`; flat keys named
    like the options), the lowest-precedence source; ``file_name`` names it in errors.
    Pure: reads nothing but its arguments. Raises :class:`ConfigError` for unknown options,
    invalid values and options Cableway refuses (see :data:`REFUSED`).
    """
    return load_config_with_warnings(argv, env, file_values=file_values, file_name=file_name)[0]


def load_config_with_warnings(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    file_values: Mapping[str, object] | None = None,
    file_name: str = "the configuration file",
) -> tuple[Config, tuple[str, ...]]:
    """Like :func:`load_config`, plus warnings for the user (deprecated names, dead settings)."""
    values, file_warnings = ({}, []) if file_values is None else from_file(file_values, file_name)
    values.update(from_environment(env))
    values.update(from_command_line(argv))
    check_refusals(values)
    warnings = [*file_warnings, *unread_variables(env)]
    get = Values(values)
    decided = resolve(get, warnings)
    # every other field is its option as declared
    for field in fields(Config):
        if field.name not in decided:
            decided[field.name] = get.get(BY_FIELD[field.name].name)
    return Config(**decided), tuple(warnings)


def resolve(get: Values, warnings: list[str]) -> Fields:
    """The Config fields with rules beyond their own declaration, concern by concern (in
    this order, which is also the order in which invalid values are reported)."""
    deprecations(get, warnings)
    decided = public_mode(get)
    decided |= secrets(get, warnings)
    decided |= jwt_enforcement(get, decided)
    decided |= turbo_streams(get, warnings, decided)
    decided |= broadcasting(get, warnings, decided)
    decided |= listeners(get)
    decided |= tls(get)
    decided |= log_level(get)
    decided |= origins(get, warnings)
    decided |= metrics(get)
    decided |= broker(get, warnings)
    decided |= sse(get, decided)
    decided |= redis(get, warnings, decided)
    decided |= workers(get, decided)
    decided |= redis_sentinels_and_tls(get, warnings, decided)
    decided |= statsd(get)
    decided |= rpc(get, decided)
    decided |= api(get, decided)
    metrics_path_clash(get, decided)
    return decided


def check_refusals(values: Mapping[str, Raw]) -> None:
    """Raise for an option (or value) Cableway refuses (:data:`REFUSED`)."""
    for name, refusal in REFUSED.items():
        raw = values.get(name)
        if raw is None or raw.value == "":
            continue
        try:
            fine = refusal.accepts(raw.value)
        except ValueError as exc:
            raise ConfigError(f"invalid value {raw.value!r} for {raw.label}: {exc}") from None
        if not fine:
            raise ConfigError(f"{raw.spelled()}: {refusal.reason}")


def _spelled_like(raw: Raw, name: str) -> str:
    """How to spell option ``name`` in the same source as ``raw``."""
    option = BY_NAME[name]
    if raw.rank == -1:
        return option.file_key
    if raw.rank == 0:
        return option.env[0] if option.env else option.flag
    return option.flag


def deprecations(get: Values, warnings: list[str]) -> None:
    """A warning for each deprecated old name used."""
    for option in OPTIONS:
        raw = get.given(option.name)
        if option.replaced_by is not None and raw is not None:
            warnings.append(
                f"{raw.label} is deprecated, use {_spelled_like(raw, option.replaced_by)}"
            )


def secrets(get: Values, warnings: list[str]) -> Fields:
    """The secrets and their fallbacks: JWT and streams fall back to ``--secret``, Turbo to
    the streams secret. An HMAC secret under 32 bytes warns (security J11)."""
    _, secret = get.secret("secret")
    jwt_given, jwt_secret = get.secret("jwt_secret")
    streams_given, streams_secret = get.secret("streams_secret")
    turbo_given, turbo_secret = get.secret("turbo_streams_secret")
    if not jwt_given:
        jwt_secret = secret
    if not streams_given:
        streams_secret = secret
    if not turbo_given:
        turbo_secret = streams_secret
    for name in ("secret", "jwt_secret", "streams_secret", "turbo_streams_secret"):
        raw = get.raw(name)
        if raw is not None and raw.value not in ("", "none") and len(raw.value.encode()) < 32:
            # the label only (how the user spelled the option), never the value
            warnings.append(
                f"{raw.label} is shorter than 32 bytes: an HMAC secret this short can be "
                "guessed offline from one signed token; use at least 32 random bytes"
            )
    return {
        "secret": secret,
        "jwt_secret": jwt_secret,
        "streams_secret": streams_secret,
        "turbo_streams_secret": turbo_secret,
    }


def public_mode(get: Values) -> Fields:
    """``--public`` implies ``--noauth`` and ``--public_streams`` (and, in
    :func:`broadcasting`, no broadcast key)."""
    public = get.get("public")
    return {
        "public": public,
        "noauth": get.get("noauth") or public,
        "public_streams": get.get("public_streams") or public,
    }


def jwt_enforcement(get: Values, decided: Fields) -> Fields:
    """``--enforce_jwt`` needs a JWT secret (except in the demo, which generates one)."""
    enforce_jwt = get.get("enforce_jwt")
    if enforce_jwt and decided["jwt_secret"] is None and not get.get("demo"):
        enforce_raw = get.raw("enforce_jwt")
        assert enforce_raw is not None
        raise ConfigError(
            f"{enforce_raw.label} needs a JWT secret (--jwt_secret or --secret): without one "
            "every connection would be rejected"
        )
    return {"enforce_jwt": enforce_jwt}


def turbo_streams(get: Values, warnings: list[str], decided: Fields) -> Fields:
    """Whether Turbo::StreamsChannel is served, and AnyCable 1.4's cleartext mode."""
    turbo_secret = decided["turbo_streams_secret"]
    cleartext = get.get("turbo_rails_cleartext")
    turbo = get.get("turbo_streams") or get.given("turbo_rails_key") is not None or cleartext
    cleartext_raw = get.given("turbo_rails_cleartext")
    if cleartext and cleartext_raw is not None:
        if turbo_secret is not None:
            warnings.append(
                f"{cleartext_raw.label} has no effect: a Turbo Streams secret is configured"
            )
        else:
            warnings.append(
                f"{cleartext_raw.label} is deprecated: Turbo::StreamsChannel accepts unsigned "
                "stream names; prefer $pubsub with stream_name and --public_streams"
            )
    elif turbo and turbo_secret is None:
        warnings.append(
            "Turbo Streams are enabled but no secret is configured (--turbo_streams_secret, "
            "--streams_secret or --secret): Turbo::StreamsChannel subscriptions will be rejected"
        )
    return {"turbo_streams": turbo, "turbo_rails_cleartext": cleartext and turbo_secret is None}


def _unique_items(
    get: Values, name: str, check: Callable[[str], str | None], empty: str
) -> tuple[str, ...] | None:
    """The comma-separated items of list option ``name`` without repeats, each passed to
    ``check`` (which returns a problem or None); None when no source sets it."""
    raw = get.raw(name)
    if raw is None:
        return None
    items = split_list(raw.value)
    if not items:
        get.fail(raw, empty)
    for item in items:
        problem = check(item)
        if problem is not None:
            get.fail(raw, problem)
    return tuple(dict.fromkeys(items))


def _path_problem(item: str) -> str | None:
    try:
        parse_path_pattern(item)
    except ValueError as exc:
        return f"path {item!r}: {exc}"
    return None


def listeners(get: Values) -> Fields:
    """The main listener: host, port and the WebSocket path(s)."""
    paths = _unique_items(get, "path", _path_problem, "must name at least one path")
    return {
        "host": get.get("host"),
        "port": get.get("port"),
        "path": BY_NAME["path"].value if paths is None else paths,
    }


def broadcasting(get: Values, warnings: list[str], decided: Fields) -> Fields:
    """The broadcast adapters, the broadcast key (derived from ``--secret`` unless given;
    none in public mode) and the HTTP broadcast port (the main one when a key is set)."""
    adapters_raw = get.raw("broadcast_adapter")
    adapters: tuple[str, ...] = BY_NAME["broadcast_adapter"].value
    if adapters_raw is not None:
        names = [name.lower() for name in split_list(adapters_raw.value)]
        for name in names:
            if name not in BY_NAME["broadcast_adapter"].choices:
                get.fail(adapters_raw, f"unknown broadcast adapter {name!r}")
        if not names:
            get.fail(adapters_raw, "must name at least one adapter")
        adapters = tuple(dict.fromkeys(names))

    key_given, key = get.secret("broadcast_key")
    if not key_given and decided["secret"] is not None:
        key = derive_broadcast_key(decided["secret"])
    if decided["public"]:
        key_raw = get.given("broadcast_key")
        if key_raw is not None and key is not None:
            warnings.append(f"{key_raw.label} is ignored: public mode broadcasts without a key")
        key = None

    host, port = get.get("host"), get.get("port")
    http_port = get.get("http_broadcast_port")
    if http_port == 0:
        http_port = port if key is not None else OPEN_BROADCAST_PORT
    open_broadcasts = "http" in adapters and key is None and not key_given
    if open_broadcasts and not decided["public"] and not is_loopback(host):
        warnings.append(
            f"HTTP broadcasts are accepted without authorization on {host}:"
            f"{http_port}: set --secret or --broadcast_key (or firewall that "
            "port; --broadcast_key=none says no key is intended)"
        )
    return {"broadcast_adapters": adapters, "broadcast_key": key, "http_broadcast_port": http_port}


def log_level(get: Values) -> Fields:
    """The log level (``--debug`` is ``--log_level=debug``)."""
    level = get.get("log_level")  # checked even when --debug overrides it
    return {"log_level": "debug" if get.get("debug") else level}


def origins(get: Values, warnings: list[str]) -> Fields:
    """The allowed origins, lower-cased; ``*`` allows every one (and warns)."""
    raw = get.raw("allowed_origins")
    if raw is None:
        return {"allowed_origins": BY_NAME["allowed_origins"].value}
    entries = [entry.lower() for entry in split_list(raw.value)]
    for entry in entries:
        problem = origin_problem(entry)
        if problem is not None:
            get.fail(raw, f"origin {entry!r}: {problem}")
    allowed = tuple(dict.fromkeys(entries))
    if "*" in allowed:
        warnings.append(f"{raw.label} allows every origin: any web page can open a connection")
    return {"allowed_origins": allowed}


def broker(get: Values, warnings: list[str]) -> Fields:
    """The broker and its settings, which warn when the broker is none (and the memory
    broker's byte cap when the broker is another).

    Presets only fill in defaults: an explicit --broker wins. The broker preset's memory
    broker is already Cableway's default, so no accepted preset changes anything.
    """
    presets_raw = get.raw("presets")
    if presets_raw is not None:
        choices = BY_NAME["presets"].choices
        for preset in split_list(presets_raw.value.lower()):
            if preset not in choices:
                get.fail(presets_raw, "must be one of " + ", ".join(choices))
    decided: Fields = {"broker": get.get("broker")}
    decided |= {name: get.get(name) for name in BROKER_SETTINGS}
    decided["history_max_bytes"] = get.get("history_max_bytes")
    max_bytes_raw = get.given("history_max_bytes")
    if max_bytes_raw is not None and decided["history_max_bytes"] and decided["broker"] != "memory":
        warnings.append(f"{max_bytes_raw.label} has no effect: it caps the memory broker only")
    if decided["broker"] == "none":
        for name in BROKER_SETTINGS:
            raw = get.given(name)
            if raw is not None:
                warnings.append(f"{raw.label} has no effect: the broker is none")
    return decided


def sse(get: Values, decided: Fields) -> Fields:
    """Server-Sent Events: the SSE path must differ from the WebSocket and health paths."""
    enabled = get.get("sse")
    health_path = get.get("health-path")
    sse_path = get.get("sse_path")
    paths = decided["path"]
    if enabled and (sse_path in paths or sse_path == health_path):
        sse_path_raw = get.raw("sse_path")
        if sse_path_raw is not None:
            get.fail(sse_path_raw, "must differ from the WebSocket path(s) and the health path")
        # The default /events clashes with a path the user chose: name their option.
        clash = get.raw("path" if sse_path in paths else "health-path")
        if clash is not None:  # always set here: the defaults do not clash
            get.fail(clash, f"clashes with the SSE path {sse_path} (set --sse_path or --sse=false)")
    return {"sse": enabled, "health_path": health_path, "sse_path": sse_path}


def redis(get: Values, warnings: list[str], decided: Fields) -> Fields:
    """Inter-node pub/sub (redis by default with the redisx adapter) and the Redis URL."""
    adapters = decided["broadcast_adapters"]
    pubsub = get.get("pubsub", "redis" if "redisx" in adapters else "none")
    redis_url = get.string("redis_url", default=BY_NAME["redis_url"].value).strip()
    try:
        check_redis_url(redis_url)
    except ValueError as exc:
        url_raw = get.raw("redis_url")
        if url_raw is not None:
            get.fail(url_raw, str(exc))
    pubsub_raw = get.raw("pubsub")
    if pubsub_raw is not None and pubsub == "none" and "redisx" in adapters:
        warnings.append(
            f"{pubsub_raw.label}=none with the redisx adapter: each publication reaches only "
            "the subscribers of the node that consumed it"
        )
    if pubsub == "redis" and decided["broker"] == "memory":
        warnings.append(
            "--pubsub=redis with the memory broker: stream history and session restore are "
            "kept per node (a client that reconnects to another node cannot catch up)"
        )
    return {"pubsub": pubsub, "redis_url": redis_url}


def redis_sentinels_and_tls(get: Values, warnings: list[str], decided: Fields) -> Fields:
    """Managed Redis: the Sentinel addresses, and the TLS files, which go in pairs for mutual
    TLS and warn when nothing asks for TLS (``--redis_tls_verify`` alone is inert: AnyCable-Go's
    --print-config writes it into every file)."""
    sentinels = get.get("redis_sentinels")
    if sentinels:
        sentinels_raw = get.raw("redis_sentinels")
        assert sentinels_raw is not None
        get.convert(sentinels_raw, parse_sentinels)
    tls_paths: dict[str, str] = {name: get.get(name) for name in _TLS_PATHS}
    cert_path = tls_paths["redis_tls_client_cert_path"]
    key_path = tls_paths["redis_tls_client_key_path"]
    if bool(cert_path) != bool(key_path):
        given = get.raw("redis_tls_client_cert_path" if cert_path else "redis_tls_client_key_path")
        assert given is not None
        get.fail(
            given,
            "mutual TLS needs both --redis_tls_client_cert_path and --redis_tls_client_key_path",
        )
    tls_wanted = decided["redis_url"].startswith("rediss://") or sentinels.startswith("rediss://")
    if not tls_wanted:
        for name, value in tls_paths.items():
            raw = get.raw(name)
            if raw is not None and value:
                warnings.append(f"{raw.label} has no effect: --redis_url is not rediss://")
    return {"redis_sentinels": sentinels, **tls_paths}


_TLS_PATHS = ("redis_tls_ca_cert_path", "redis_tls_client_cert_path", "redis_tls_client_key_path")


def tls(get: Values) -> Fields:
    """TLS on the listeners: the certificate and its key go together (AnyCable-Go serves plain
    text when only one is set; Cableway says so instead). The files are read at start-up
    (:mod:`cableway.transport.tls`)."""
    cert, key = get.get("ssl_cert").strip(), get.get("ssl_key").strip()
    if bool(cert) != bool(key):
        given = get.raw("ssl_cert" if cert else "ssl_key")
        assert given is not None
        get.fail(given, "TLS needs both --ssl_cert and --ssl_key")
    return {"ssl_cert": cert, "ssl_key": key}


#: the most worker processes --workers accepts
MAX_WORKERS = 256


def workers(get: Values, decided: Fields) -> Fields:
    """``--workers``: a count, or ``auto`` (the CPUs this process may use)."""
    text = get.get("workers").strip().lower()
    try:
        count = max(1, len(os.sched_getaffinity(0))) if text == "auto" else int(text)
    except ValueError:
        count = 0
    given = get.raw("workers")
    if not 1 <= count <= MAX_WORKERS:
        assert given is not None
        get.fail(given, f"--workers takes a count from 1 to {MAX_WORKERS}, or auto")
    if count > 1 and decided["broker"] == "redis" and decided["pubsub"] != "redis":
        assert given is not None
        get.fail(
            given,
            "several workers with --broker=redis need --pubsub=redis (the workers are then "
            "separate nodes on Redis)",
        )
    return {"workers": count}


def statsd(get: Values) -> Fields:
    """StatsD: the server is host:port; the prefix may be empty."""
    prefix_raw = get.raw("statsd_prefix")
    prefix = BY_NAME["statsd_prefix"].value if prefix_raw is None else prefix_raw.value.strip()
    host = get.get("statsd_host")
    if host:
        host_raw = get.raw("statsd_host")
        assert host_raw is not None
        host_part, colon, port_part = host.rpartition(":")
        if not colon or not host_part or not port_part.isdigit():
            get.fail(host_raw, "expected host:port")
        if not 1 <= int(port_part) <= 65535:
            get.fail(host_raw, "the port must be between 1 and 65535")
    return {"statsd_host": host, "statsd_prefix": prefix}


def metrics(get: Values) -> Fields:
    """The metrics tags (Prometheus labels), endpoint path and port."""
    tags_raw = get.raw("metrics_tags")
    tags: dict[str, str] = {}
    if tags_raw is not None:
        for item in split_list(tags_raw.value):
            key, sep, value = item.partition(":")
            key, value = key.strip(), value.strip()
            if not sep or not key:
                get.fail(tags_raw, f"tag {item!r} is not key:value")
            if not LABEL.fullmatch(key) or key.startswith("__"):
                get.fail(tags_raw, f"tag name {key!r} must be a Prometheus label name")
            if key in tags:
                get.fail(tags_raw, f"tag {key!r} given twice")
            tags[key] = value
    return {
        "metrics_tags": tuple(tags.items()),
        "metrics_http": get.get("metrics_http"),
        "metrics_port": get.get("metrics_port"),
    }


def metrics_path_clash(get: Values, decided: Fields) -> None:
    """The metrics endpoint must be a valid path and not take the path of another endpoint
    on the same port."""
    metrics_http, metrics_raw = decided["metrics_http"], get.raw("metrics_http")
    if metrics_http is None or metrics_raw is None:
        return
    try:
        parse_path_pattern(metrics_http)
    except ValueError as exc:
        get.fail(metrics_raw, str(exc))
    port = decided["port"]
    taken = {*decided["path"], decided["health_path"]}
    if decided["sse"]:
        taken.add(decided["sse_path"])
    if "http" in decided["broadcast_adapters"] and decided["http_broadcast_port"] == port:
        taken.add(get.get("http_broadcast_path"))
    if decided["metrics_port"] in (0, port) and metrics_http in taken:
        get.fail(metrics_raw, "clashes with another endpoint on the main port")


def api(get: Values, decided: Fields) -> Fields:
    """The REST API: its key is ``--api_secret``, else derived from ``--secret``
    (``api-cable``), else none (``""`` and ``none`` mean unset, as for every Cableway
    secret); its base path must make valid endpoint paths."""
    _, key = get.secret("api_secret")
    if key is None and decided["secret"] is not None:
        key = derive_api_key(decided["secret"])
    path = get.get("api_path")
    path_raw = get.raw("api_path")
    if path_raw is not None:
        if not path.startswith("/"):
            get.fail(path_raw, "must start with /")
        for endpoint in (f"{path}/publish", f"{path}/presence/*"):
            try:
                parse_path_pattern(endpoint)
            except ValueError as exc:
                get.fail(path_raw, str(exc))
    return {"api_secret": key, "api_port": get.get("api_port"), "api_path": path}


def rpc(get: Values, decided: Fields) -> Fields:
    """``Config.rpc``: the RPC settings, or ``None`` for RPC-less (the default)."""
    host_raw = get.given("rpc_host")
    has_host = host_raw is not None and bool(host_raw.value.strip())
    if get.get("norpc", default=not has_host):
        return {"rpc": None}
    if host_raw is None or not has_host:
        norpc_raw = get.given("norpc")
        assert norpc_raw is not None
        get.fail(
            norpc_raw,
            "RPC needs --rpc_host=http(s)://... (the application's HTTP RPC URL); Cableway "
            "has no default RPC host (AnyCable-Go's is gRPC localhost:50051)",
        )
    host = get.convert(host_raw, parse_rpc_host)
    key_given, key = get.secret("http_rpc_secret")
    secret = decided.get("secret")
    if not key_given and secret is not None:
        key = derive_rpc_key(secret)
    headers: tuple[str, ...] = DEFAULT_HEADERS
    headers_raw = get.given("headers")
    if headers_raw is not None:
        headers = get.convert(headers_raw, lambda v: parse_header_names(split_list(v)))
    cookies_raw = get.given("proxy-cookies")
    proxy_cookies: tuple[str, ...] | None = None
    if cookies_raw is not None and cookies_raw.value.strip():
        proxy_cookies = tuple(name.strip() for name in split_list(cookies_raw.value))
    return {
        "rpc": RpcSettings(
            host=host,
            key=key,
            concurrency=get.get("rpc_concurrency"),
            request_timeout=request_timeout_seconds(get.get("rpc_request_timeout")),
            headers=headers,
            proxy_cookies=proxy_cookies,
            disconnect_mode=get.get("disconnect_mode"),
            disconnect_rate=get.get("disconnect_rate"),
        )
    }
