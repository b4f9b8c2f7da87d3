"""cableway.config: sources, precedence, secret resolution, aliases, refusals, validation."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from cableway.auth.keys import derive_api_key
from cableway.config import (
    DEFAULT_CONFIG_PATHS,
    OPTIONS,
    REDACTED,
    REFUSED,
    SECRET_FIELDS,
    Config,
    ConfigError,
    FileOptions,
    config_toml,
    file_options,
    load_config,
    load_config_with_warnings,
    read_config_file,
)
from cableway.config import anycable as anycable_toml

QWERTY_BROADCAST_KEY = "42923a28b760e667fc92f7c6123bb07a282822b329dd2ef48e7aee7830d98485"


def cli(*argv: str) -> Config:
    return load_config(argv, {})


def from_env(**env: str) -> Config:
    return load_config([], env)


# --- sources and precedence ------------------------------------------------------------------


def test_no_input_gives_the_documented_defaults() -> None:
    config = load_config([], {})
    assert config == Config()
    assert config.host == "localhost"
    assert config.port == 8080
    assert config.path == ("/cable",)
    assert config.health_path == "/health"
    assert config.jwt_param == "jid"
    assert config.broadcast_adapters == ("http",)
    assert config.broadcast_key is None
    assert config.http_broadcast_port == 8090
    assert config.http_broadcast_path == "/_broadcast"
    assert config.ping_interval == 3.0
    assert config.ping_timestamp_precision == "s"
    assert config.max_message_size == 65536
    assert config.ws_write_timeout == 2.0
    assert config.ws_max_pending_size == 1048576
    assert config.shutdown_timeout == 30.0
    assert config.log_level == "info"
    assert (config.secret, config.jwt_secret, config.streams_secret) == (None, None, None)
    assert config.noauth is False
    assert config.public is False
    assert config.public_streams is False
    assert config.turbo_streams is False
    assert config.broker == "memory"  # Cableway keeps history by default (AnyCable: none)
    assert config.history_limit == 100
    assert config.history_ttl == 300.0
    assert config.sessions_ttl == 300.0
    assert config.presence_ttl == 15.0
    assert config.streams_whisper is False
    assert config.streams_presence is True
    assert config.pong_timeout == 0.0
    assert config.sse is True  # Cableway serves SSE by default (AnyCable: off)
    assert config.sse_path == "/events"
    assert config.allowed_origins == ()
    assert config.max_conn == 0
    assert config.shutdown_delay == 0.0
    assert config.enable_native_pings is False
    assert config.log_format == "text"
    assert config.metrics_http is None
    assert config.metrics_host is None
    assert config.metrics_port == 0
    assert config.metrics_log is False
    assert config.metrics_rotate_interval == 15.0
    assert config.metrics_tags == ()
    assert config.max_subscriptions == 128
    assert config.max_identifier_size == 8192
    assert config.commands_rate == 100.0
    assert config.commands_burst == 200
    assert config.handshake_timeout == 5.0
    assert config.max_header_size == 16384
    assert config.max_broadcast_body == 1048576


def test_environment_only() -> None:
    config = from_env(
        ANYCABLE_HOST="0.0.0.0",
        ANYCABLE_PORT="9000",
        ANYCABLE_PATH="/cable,/ws",
        ANYCABLE_HEALTH_PATH="/up",
        ANYCABLE_NOAUTH="true",
        ANYCABLE_PUBLIC_STREAMS="1",
        ANYCABLE_HTTP_BROADCAST_PATH="/pub",
        ANYCABLE_PING_INTERVAL="5",
        ANYCABLE_PING_TIMESTAMP_PRECISION="ms",
        ANYCABLE_MAX_MESSAGE_SIZE="1024",
        ANYCABLE_WS_WRITE_TIMEOUT="0.5",
        ANYCABLE_SHUTDOWN_TIMEOUT="0",
        ANYCABLE_LOG_LEVEL="warn",
        ANYCABLE_JWT_PARAM="token",
        ANYCABLE_ENFORCE_JWT="T",
        ANYCABLE_JWT_SECRET="jwt",
    )
    assert config.host == "0.0.0.0"
    assert config.port == 9000
    assert config.path == ("/cable", "/ws")
    assert config.health_path == "/up"
    assert config.noauth is True
    assert config.public_streams is True
    assert config.http_broadcast_path == "/pub"
    assert config.ping_interval == 5.0
    assert config.ping_timestamp_precision == "ms"
    assert config.max_message_size == 1024
    assert config.ws_write_timeout == 0.5
    assert config.shutdown_timeout == 0.0
    assert config.log_level == "warn"
    assert config.jwt_param == "token"
    assert config.enforce_jwt is True
    assert config.jwt_secret == "jwt"


def test_command_line_only() -> None:
    config = cli(
        "--host",
        "127.0.0.1",
        "--port=9001",
        "--path=/a, /b",
        "--health-path=/hc",
        "--public_streams",
        "--ping_interval",
        "1.5",
        "--ping_timestamp_precision=ns",
        "--ws_max_pending_size=2048",
        "--log_level=ERROR",
    )
    assert config.host == "127.0.0.1"
    assert config.port == 9001
    assert config.path == ("/a", "/b")
    assert config.health_path == "/hc"
    assert config.public_streams is True
    assert config.ping_interval == 1.5
    assert config.ping_timestamp_precision == "ns"
    assert config.ws_max_pending_size == 2048
    assert config.log_level == "error"


def test_command_line_wins_over_environment_option_by_option() -> None:
    config = load_config(
        ["--port=2", "--noauth=false"],
        {"ANYCABLE_PORT": "1", "ANYCABLE_NOAUTH": "true", "ANYCABLE_HOST": "example"},
    )
    assert config.port == 2
    assert config.noauth is False
    assert config.host == "example"


def test_port_reads_anycable_port_then_port() -> None:
    assert from_env(PORT="3000").port == 3000
    assert from_env(PORT="3000", ANYCABLE_PORT="4000").port == 4000
    assert load_config(["--port=5000"], {"PORT": "3000", "ANYCABLE_PORT": "4000"}).port == 5000


def test_empty_environment_variable_counts_as_unset() -> None:
    assert from_env(ANYCABLE_PORT="", PORT="3000").port == 3000
    assert from_env(ANYCABLE_HOST="").host == "localhost"
    assert from_env(ANYCABLE_RPC_HOST="").port == 8080  # not refused either


def test_ws_max_pending_size_has_no_environment_variable() -> None:
    assert from_env(ANYCABLE_WS_MAX_PENDING_SIZE="5").ws_max_pending_size == 1048576
    assert cli("--ws_max_pending_size=5").ws_max_pending_size == 5


def test_repeated_flag_last_one_wins() -> None:
    assert cli("--port=1", "--port=2").port == 2


# --- secrets ---------------------------------------------------------------------------------


def test_secret_shortcut_resolves_every_secret_and_the_broadcast_key() -> None:
    config = cli("--secret=qwerty")
    assert config.secret == "qwerty"
    assert config.jwt_secret == "qwerty"
    assert config.streams_secret == "qwerty"
    assert config.turbo_streams_secret == "qwerty"
    assert config.broadcast_key == QWERTY_BROADCAST_KEY
    assert config.http_broadcast_port == 8080  # secured broadcasting shares the main port


def test_broadcast_key_derivation_matches_hmac() -> None:
    expected = hmac.new(b"other", b"broadcast-cable", hashlib.sha256).hexdigest()
    assert cli("--secret=other").broadcast_key == expected


def test_specific_secrets_win_over_the_shortcut() -> None:
    config = cli(
        "--secret=s",
        "--jwt_secret=j",
        "--streams_secret=st",
        "--broadcast_key=b",
    )
    assert (config.jwt_secret, config.streams_secret, config.turbo_streams_secret) == (
        "j",
        "st",
        "st",
    )
    assert config.broadcast_key == "b"
    assert cli("--secret=s", "--turbo_streams_secret=t").turbo_streams_secret == "t"


def test_none_unsets_a_secret_without_falling_back() -> None:
    config = cli("--secret=qwerty", "--jwt_secret=none", "--broadcast_key=none")
    assert config.jwt_secret is None
    assert config.streams_secret == "qwerty"
    assert config.broadcast_key is None
    assert config.http_broadcast_port == 8090

    config = cli("--secret=qwerty", "--streams_secret=none")
    assert config.streams_secret is None
    assert config.turbo_streams_secret is None  # falls back to the (unset) streams secret

    config = from_env(ANYCABLE_SECRET="none")
    assert config.secret is None
    assert config.jwt_secret is None
    assert config.broadcast_key is None


def test_empty_secret_on_the_command_line_is_unset() -> None:
    config = cli("--secret=")
    assert config.secret is None
    assert config.broadcast_key is None


def test_http_broadcast_port_resolution() -> None:
    assert cli().http_broadcast_port == 8090
    assert cli("--port=9000").http_broadcast_port == 8090
    assert cli("--port=9000", "--secret=x").http_broadcast_port == 9000
    assert cli("--port=9000", "--broadcast_key=k").http_broadcast_port == 9000
    assert cli("--port=9000", "--http_broadcast_port=7000").http_broadcast_port == 7000
    assert cli("--secret=x", "--http_broadcast_port=7000").http_broadcast_port == 7000
    assert cli("--secret=x", "--http_broadcast_port=0").http_broadcast_port == 8080


def test_public_mode() -> None:
    config = cli("--public", "--secret=qwerty")
    assert config.public is True
    assert config.noauth is True
    assert config.public_streams is True
    assert config.broadcast_key is None  # open broadcasting even with a secret
    assert config.http_broadcast_port == 8090
    assert config.jwt_secret == "qwerty"
    _, warnings = load_config_with_warnings(["--public", "--broadcast_key=k"], {})
    assert any("--broadcast_key is ignored" in warning for warning in warnings)


# --- deprecated aliases ----------------------------------------------------------------------


def test_jwt_id_key_is_the_jwt_secret() -> None:
    config, warnings = load_config_with_warnings(["--jwt_id_key=K", "--secret=S"], {})
    assert config.jwt_secret == "K"
    assert config.streams_secret == "S"
    assert "--jwt_id_key is deprecated, use --jwt_secret" in warnings
    assert cli("--jwt_id_key=K", "--jwt_secret=J").jwt_secret == "J"
    assert cli("--jwt_id_key=none", "--secret=S").jwt_secret is None


def test_a_command_line_alias_beats_the_environment() -> None:
    config = load_config(["--jwt_id_key=K"], {"ANYCABLE_JWT_SECRET": "J"})
    assert config.jwt_secret == "K"
    config = load_config([], {"ANYCABLE_JWT_SECRET": "J", "ANYCABLE_JWT_ID_KEY": "K"})
    assert config.jwt_secret == "J"


def test_jwt_id_param_is_honoured_when_jwt_param_is_absent() -> None:
    assert cli("--jwt_id_param=token").jwt_param == "token"
    assert from_env(ANYCABLE_JWT_ID_PARAM="token").jwt_param == "token"
    assert cli("--jwt_id_param=token", "--jwt_param=t2").jwt_param == "t2"


def test_jwt_id_enforce_is_enforce_jwt() -> None:
    assert cli("--jwt_id_enforce", "--secret=s").enforce_jwt is True
    assert from_env(ANYCABLE_JWT_ID_ENFORCE="1", ANYCABLE_SECRET="s").enforce_jwt is True
    assert cli("--jwt_id_enforce", "--enforce_jwt=false").enforce_jwt is False


def test_turbo_rails_key_sets_the_turbo_secret_and_enables_turbo_streams() -> None:
    config, warnings = load_config_with_warnings(["--turbo_rails_key=T", "--secret=S"], {})
    assert config.turbo_streams is True
    assert config.turbo_streams_secret == "T"
    assert config.streams_secret == "S"
    assert "--turbo_rails_key is deprecated, use --turbo_streams_secret" in warnings
    _, warnings = load_config_with_warnings([], {"ANYCABLE_TURBO_RAILS_KEY": "T"})
    assert "ANYCABLE_TURBO_RAILS_KEY is deprecated, use ANYCABLE_TURBO_STREAMS_SECRET" in warnings


def test_deprecated_flags_and_environment_give_identical_configs() -> None:
    from_flags = cli("--jwt_id_key=K", "--turbo_rails_key=T", "--broadcast_adapter=http")
    from_vars = from_env(
        ANYCABLE_JWT_ID_KEY="K", ANYCABLE_TURBO_RAILS_KEY="T", ANYCABLE_BROADCAST_ADAPTER="http"
    )
    assert from_flags == from_vars
    assert from_flags.jwt_secret == "K"
    assert from_flags.turbo_streams is True
    assert from_flags.turbo_streams_secret == "T"
    assert from_flags.broadcast_adapters == ("http",)


def test_turbo_streams_without_any_secret_warns() -> None:
    config, warnings = load_config_with_warnings(["--turbo_streams", "--noauth"], {})
    assert config.turbo_streams is True
    assert config.turbo_streams_secret is None
    assert any("Turbo::StreamsChannel subscriptions will be rejected" in w for w in warnings)


def test_turbo_rails_cleartext_without_a_secret() -> None:
    config, warnings = load_config_with_warnings(["--turbo_rails_cleartext"], {})
    assert config.turbo_streams is True
    assert config.turbo_rails_cleartext is True
    assert any("--turbo_rails_cleartext is deprecated" in w for w in warnings)
    assert from_env(ANYCABLE_TURBO_RAILS_CLEARTEXT="true") == config
    assert cli("--turbo_rails_cleartext=false").turbo_streams is False


def test_turbo_rails_cleartext_has_no_effect_with_a_secret() -> None:
    config, warnings = load_config_with_warnings(["--turbo_rails_cleartext", "--secret=s"], {})
    assert config.turbo_streams is True
    assert config.turbo_rails_cleartext is False
    assert any("has no effect" in w for w in warnings)


def test_no_jwt_key_means_anonymous_connections_without_a_warning() -> None:
    # Cableway has no RPC application to fall back to: without a JWT key every
    # connection is accepted anonymously (the server's startup log says so).
    config, warnings = load_config_with_warnings([], {})
    assert config.jwt_secret is None
    assert warnings == ()


# --- booleans --------------------------------------------------------------------------------

TRUE_WORDS = ["1", "t", "T", "TRUE", "true", "True"]
FALSE_WORDS = ["0", "f", "F", "FALSE", "false", "False"]


@pytest.mark.parametrize("word", TRUE_WORDS)
def test_parse_bool_true(word: str) -> None:
    assert from_env(ANYCABLE_NOAUTH=word).noauth is True
    assert cli(f"--noauth={word}").noauth is True


@pytest.mark.parametrize("word", FALSE_WORDS)
def test_parse_bool_false(word: str) -> None:
    assert from_env(ANYCABLE_NOAUTH=word).noauth is False
    assert load_config([f"--noauth={word}"], {"ANYCABLE_NOAUTH": "true"}).noauth is False


@pytest.mark.parametrize("word", ["yes", "on", "tRUE", "2", " true"])
def test_bad_bool_is_an_error_naming_the_source(word: str) -> None:
    with pytest.raises(ConfigError, match="ANYCABLE_NOAUTH"):
        from_env(ANYCABLE_NOAUTH=word)
    with pytest.raises(ConfigError, match="--noauth"):
        cli(f"--noauth={word}")


def test_bare_bool_flag_does_not_take_the_next_argument() -> None:
    config = cli("--noauth", "--port", "9000")
    assert config.noauth is True
    assert config.port == 9000
    with pytest.raises(ConfigError, match="unexpected argument 'false'"):
        cli("--noauth", "false")


def test_debug_forces_the_debug_level() -> None:
    assert cli("--debug", "--log_level=error").log_level == "debug"
    assert from_env(ANYCABLE_DEBUG="true").log_level == "debug"
    assert cli("--debug=false", "--log_level=warn").log_level == "warn"


def test_norpc_is_accepted() -> None:
    assert cli("--norpc") == Config()
    assert from_env(ANYCABLE_NORPC="true") == Config()


# --- refused options -------------------------------------------------------------------------

REFUSED_CASES = [
    (["--broadcast_adapter=http,nats"], "--broadcast_adapter"),
    (["--broadcast_adapter", "nats"], "--broadcast_adapter"),
    (["--broker=nats"], "--broker"),
    (["--broker", "NATS"], "--broker"),
    (["--pubsub=nats"], "--pubsub"),
    (["--presets=fly"], "--presets"),
    (["--presets=broker,heroku"], "--presets"),
]


@pytest.mark.parametrize(("argv", "name"), REFUSED_CASES)
def test_refused_options_name_themselves(argv: list[str], name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(argv, {"ANYCABLE_NOAUTH": "true"})
    message = str(info.value)
    assert message.startswith(name)
    assert "not supported yet by Cableway" in message


def test_every_refusal_is_exercised() -> None:
    assert {name for _, name in REFUSED_CASES} == {f"--{name}" for name in REFUSED}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ANYCABLE_BROADCAST_ADAPTER", "http,nats"),
        ("ANYCABLE_BROKER", "nats"),
        ("ANYCABLE_PRESETS", "fly"),
    ],
)
def test_refused_options_from_the_environment_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}={value}: "):
        from_env(**{variable: value})


@pytest.mark.parametrize(
    "argv",
    [
        ["--broker=memory"],
        ["--pubsub=none"],
        ["--presets=none"],
        ["--presets=broker"],
        ["--norpc=true"],
        ["--broadcast_adapter=http"],
    ],
)
def test_refused_options_accept_their_harmless_values(argv: list[str]) -> None:
    assert cli(*argv) == Config()


def test_refusal_with_an_invalid_value_is_a_value_error() -> None:
    with pytest.raises(ConfigError, match="invalid value 'x' for --norpc"):
        cli("--norpc=x")


def test_broker_nats_is_refused_naming_the_option() -> None:
    with pytest.raises(ConfigError) as info:
        cli("--broker=nats")
    message = str(info.value)
    assert message.startswith("--broker=nats: ")
    assert "not supported yet by Cableway" in message
    assert "--broker=memory" in message


def test_broker_redis_is_accepted() -> None:
    assert cli("--broker=redis").broker == "redis"
    assert from_env(ANYCABLE_BROKER="redis").broker == "redis"


def test_no_refusal_for_accepted_options() -> None:
    assert {"sse", "sse_path", "pong_timeout", "history_limit"}.isdisjoint(REFUSED)
    assert {"allowed_origins", "max-conn", "metrics_http", "log_format"}.isdisjoint(REFUSED)
    assert REFUSED["broker"].accepts("memory")
    assert REFUSED["broker"].accepts("none")
    assert REFUSED["presets"].accepts("broker")
    assert REFUSED["presets"].accepts("none")


# --- reliable streams, pongs and SSE -----------------------------------------------------------


def test_broker_none() -> None:
    config = cli("--broker=none")
    assert config.broker == "none"
    assert config == Config(broker="none")
    assert from_env(ANYCABLE_BROKER="none").broker == "none"
    assert from_env(ANYCABLE_BROKER="Memory").broker == "memory"
    assert load_config(["--broker=memory"], {"ANYCABLE_BROKER": "none"}).broker == "memory"


def test_unknown_broker_is_invalid() -> None:
    with pytest.raises(ConfigError, match="invalid value 'kafka' for --broker: must be one of"):
        cli("--broker=kafka")
    with pytest.raises(ConfigError, match="for ANYCABLE_BROKER"):
        from_env(ANYCABLE_BROKER="kafka")


def test_presets() -> None:
    assert cli("--presets=broker").broker == "memory"
    assert from_env(ANYCABLE_PRESETS="broker").broker == "memory"
    assert cli("--presets=none").broker == "memory"  # Cableway's own default stays
    assert cli("--presets=broker", "--broker=none").broker == "none"  # explicit wins
    assert load_config(["--presets=broker"], {"ANYCABLE_BROKER": "none"}).broker == "none"


def test_broker_settings_from_the_environment() -> None:
    config = from_env(
        ANYCABLE_HISTORY_LIMIT="50",
        ANYCABLE_HISTORY_TTL="60",
        ANYCABLE_SESSIONS_TTL="0",
        ANYCABLE_PRESENCE_TTL="2.5",
        ANYCABLE_STREAMS_WHISPER="true",
        ANYCABLE_STREAMS_PRESENCE="false",
        ANYCABLE_PONG_TIMEOUT="5",
    )
    assert config.history_limit == 50
    assert config.history_ttl == 60.0
    assert config.sessions_ttl == 0.0  # session restore disabled
    assert config.presence_ttl == 2.5
    assert config.streams_whisper is True
    assert config.streams_presence is False
    assert config.pong_timeout == 5.0


def test_broker_settings_from_the_command_line() -> None:
    config = load_config(
        [
            "--history_limit=7",
            "--history_ttl",
            "0.5",
            "--sessions_ttl=30",
            "--presence_ttl=1",
            "--streams_whisper",
            "--streams_presence=false",
            "--pong_timeout=5",
        ],
        {"ANYCABLE_HISTORY_LIMIT": "50", "ANYCABLE_STREAMS_WHISPER": "false"},
    )
    assert config.history_limit == 7
    assert config.history_ttl == 0.5
    assert config.sessions_ttl == 30.0
    assert config.presence_ttl == 1.0
    assert config.streams_whisper is True
    assert config.streams_presence is False
    assert config.pong_timeout == 5.0


def test_pong_timeout_zero_is_off() -> None:
    assert cli("--pong_timeout=0").pong_timeout == 0.0
    assert cli("--pong_timeout=0") == Config()
    assert cli("--pong_timeout=1.5").pong_timeout == 1.5


def test_broker_settings_with_broker_none_warn() -> None:
    config, warnings = load_config_with_warnings(["--broker=none", "--history_limit=5"], {})
    assert config.history_limit == 5
    assert "--history_limit has no effect: the broker is none" in warnings
    _, warnings = load_config_with_warnings(["--history_limit=5"], {})
    assert warnings == ()


def test_sse_settings() -> None:
    assert cli("--sse=false").sse is False
    assert cli("--sse=false") == Config(sse=False)
    assert from_env(ANYCABLE_SSE="0").sse is False
    assert cli("--sse").sse is True
    assert load_config(["--sse"], {"ANYCABLE_SSE": "false"}).sse is True
    assert cli("--sse_path=/sse").sse_path == "/sse"
    assert from_env(ANYCABLE_SSE_PATH="/stream").sse_path == "/stream"


def test_demo_is_a_cableway_option_off_by_default() -> None:
    assert Config().demo is False
    assert cli().demo is False
    assert cli("--demo") == Config(demo=True)
    assert cli("--demo=false").demo is False
    assert from_env(ANYCABLE_DEMO="true").demo is True
    assert load_config(["--demo=false"], {"ANYCABLE_DEMO": "1"}).demo is False
    assert load_config([], {}, file_values={"demo": True}).demo is True
    # load_config only records the wish: secrets are generated by cableway.tools.demo at start-up
    assert cli("--demo").secret is None
    demo = next(option for option in OPTIONS if option.name == "demo")
    assert demo.env == ("ANYCABLE_DEMO",)
    assert "Cableway option" in demo.help


@pytest.mark.parametrize(
    "argv",
    [
        ["--sse_path=/cable"],
        ["--sse_path=/health"],
        ["--path=/ws,/sse", "--sse_path=/sse"],
        ["--health-path=/up", "--sse_path=/up"],
    ],
)
def test_sse_path_must_not_clash_with_other_paths(argv: list[str]) -> None:
    with pytest.raises(ConfigError, match="for --sse_path: must differ from the WebSocket"):
        cli(*argv)


def test_default_sse_path_clashing_with_a_chosen_path_names_that_option() -> None:
    with pytest.raises(ConfigError, match="for --path: clashes with the SSE path /events"):
        cli("--path=/events")
    with pytest.raises(ConfigError, match="for ANYCABLE_HEALTH_PATH: clashes with the SSE path"):
        from_env(ANYCABLE_HEALTH_PATH="/events")


def test_sse_path_clash_is_allowed_when_sse_is_off() -> None:
    assert cli("--sse=false", "--path=/events").path == ("/events",)
    assert cli("--sse=false", "--sse_path=/cable").sse_path == "/cable"


# --- invalid input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--port=abc"], "--port"),
        (["--port=0"], "--port"),
        (["--port=65536"], "--port"),
        (["--port=-1"], "--port"),
        (["--port=1e3"], "--port"),
        (["--http_broadcast_port=70000"], "--http_broadcast_port"),
        (["--ping_timestamp_precision=us"], "--ping_timestamp_precision"),
        (["--ping_interval=0"], "--ping_interval"),
        (["--ping_interval=nan"], "--ping_interval"),
        (["--ws_write_timeout=-1"], "--ws_write_timeout"),
        (["--shutdown_timeout=-1"], "--shutdown_timeout"),
        (["--max_message_size=-1"], "--max_message_size"),
        (["--ws_max_pending_size=-5"], "--ws_max_pending_size"),
        (["--log_level=verbose"], "--log_level"),
        (["--broadcast_adapter=kafka"], "--broadcast_adapter"),
        (["--broadcast_adapter=,"], "--broadcast_adapter"),
        (["--path=cable"], "--path"),
        (["--history_limit=0"], "--history_limit"),
        (["--history_limit=-1"], "--history_limit"),
        (["--history_limit=1.5"], "--history_limit"),
        (["--history_ttl=0"], "--history_ttl"),
        (["--history_ttl=-1"], "--history_ttl"),
        (["--sessions_ttl=-1"], "--sessions_ttl"),
        (["--presence_ttl=0"], "--presence_ttl"),
        (["--presence_ttl=-5"], "--presence_ttl"),
        (["--pong_timeout=-1"], "--pong_timeout"),
        (["--pong_timeout=soon"], "--pong_timeout"),
        (["--sse=maybe"], "--sse"),
        (["--sse_path=events"], "--sse_path"),
        (["--sse_path="], "--sse_path"),
        (["--streams_presence=yes"], "--streams_presence"),
        (["--health-path=health"], "--health-path"),
        (["--host="], "--host"),
        (["--jwt_param="], "--jwt_param"),
        (["--port"], "--port"),
        (["--max-conn=-1"], "--max-conn"),
        (["--max-conn=lots"], "--max-conn"),
        (["--shutdown_delay=-1"], "--shutdown_delay"),
        (["--enable_native_pings=yes"], "--enable_native_pings"),
        (["--log_format=xml"], "--log_format"),
        (["--metrics_http=metrics"], "--metrics_http"),
        (["--metrics_http=/cable"], "--metrics_http"),
        (["--metrics_http=/health"], "--metrics_http"),
        (["--metrics_http=/events"], "--metrics_http"),
        (["--secret=x", "--metrics_http=/_broadcast"], "--metrics_http"),
        (["--metrics_port=70000"], "--metrics_port"),
        (["--metrics_port=-1"], "--metrics_port"),
        (["--metrics_rotate_interval=0"], "--metrics_rotate_interval"),
        (["--metrics_log=often"], "--metrics_log"),
        (["--metrics_tags=env"], "--metrics_tags"),
        (["--metrics_tags=:prod"], "--metrics_tags"),
        (["--metrics_tags=1env:prod"], "--metrics_tags"),
        (["--metrics_tags=__name__:x"], "--metrics_tags"),
        (["--metrics_tags=env-name:x"], "--metrics_tags"),
        (["--metrics_tags=env:a,env:b"], "--metrics_tags"),
        (["--max_subscriptions=0"], "--max_subscriptions"),
        (["--max_identifier_size=0"], "--max_identifier_size"),
        (["--commands_rate=-1"], "--commands_rate"),
        (["--commands_rate=fast"], "--commands_rate"),
        (["--commands_burst=0"], "--commands_burst"),
        (["--handshake_timeout=0"], "--handshake_timeout"),
        (["--max_header_size=0"], "--max_header_size"),
        (["--max_broadcast_body=0"], "--max_broadcast_body"),
        (["--max_broadcast_body=1.5"], "--max_broadcast_body"),
        (["--allowed_origins=https://"], "--allowed_origins"),
        (["--allowed_origins=https://app.example.com/path"], "--allowed_origins"),
        (["--allowed_origins=https://*.example.com"], "--allowed_origins"),
        (["--allowed_origins=example.com/app"], "--allowed_origins"),
        (["--allowed_origins=example.com:0"], "--allowed_origins"),
        (["--allowed_origins=example.com:99999"], "--allowed_origins"),
        (["--allowed_origins=exa mple.com"], "--allowed_origins"),
        (["--allowed_origins=*."], "--allowed_origins"),
        (["--allowed_origins=1http://x.com"], "--allowed_origins"),
        (["--allowed_origins=user@example.com"], "--allowed_origins"),
    ],
)
def test_invalid_values_name_the_option(argv: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        cli(*argv)


def test_invalid_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="invalid value 'abc' for PORT"):
        from_env(PORT="abc")


@pytest.mark.parametrize("flag", ["--bogus", "--bogus=1", "--po=1", "--health_path=/x", "-p"])
def test_unknown_flags_are_errors(flag: str) -> None:
    with pytest.raises(ConfigError, match="unknown option " + flag.split("=")[0]):
        cli(flag)


def test_positional_arguments_are_errors() -> None:
    with pytest.raises(ConfigError, match="unexpected argument 'serve'"):
        cli("serve")


# --- Config object ---------------------------------------------------------------------------


def test_repr_never_contains_secrets() -> None:
    config = cli(
        "--secret=s3cr3t-master",
        "--jwt_secret=s3cr3t-jwt",
        "--streams_secret=s3cr3t-streams",
        "--turbo_streams_secret=s3cr3t-turbo",
    )
    for text in (repr(config), str(config), str(config.redacted())):
        assert "s3cr3t" not in text
        assert QWERTY_BROADCAST_KEY not in text
        assert config.broadcast_key is not None
        assert config.broadcast_key not in text
        assert REDACTED in text
    redacted = config.redacted()
    assert {field.name for field in fields(Config)} == set(redacted)
    for name in SECRET_FIELDS:
        assert redacted[name] == REDACTED
    assert redacted["port"] == 8080


def test_redacted_keeps_unset_secrets_as_none() -> None:
    redacted = Config().redacted()
    assert all(redacted[name] is None for name in SECRET_FIELDS)


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]


def test_every_option_has_an_environment_variable_except_the_documented_ones() -> None:
    without = {"ws_max_pending_size", "ignore-config-path", "print-config"}
    for option in OPTIONS:
        if option.name in without:
            assert option.env == ()
        else:
            assert option.env[0] == "ANYCABLE_" + option.name.upper().replace("-", "_")


# --- hardening options -----------------------------------------------------------------------


def test_hardening_options_from_the_command_line() -> None:
    config = cli(
        "--allowed_origins=Example.COM, *.example.com:8443,localhost:3000,HTTPS://App.Example.com",
        "--max-conn=1000",
        "--shutdown_delay=2.5",
        "--enable_native_pings",
        "--max_subscriptions=16",
        "--max_identifier_size=1024",
        "--commands_rate=0",
        "--commands_burst=10",
        "--handshake_timeout=1.5",
        "--max_header_size=4096",
        "--max_broadcast_body=65536",
    )
    assert config.allowed_origins == (
        "example.com",
        "*.example.com:8443",
        "localhost:3000",
        "https://app.example.com",
    )
    assert config.max_conn == 1000
    assert config.shutdown_delay == 2.5
    assert config.enable_native_pings is True
    assert config.max_subscriptions == 16
    assert config.max_identifier_size == 1024
    assert config.commands_rate == 0.0  # unlimited
    assert config.commands_burst == 10
    assert config.handshake_timeout == 1.5
    assert config.max_header_size == 4096
    assert config.max_broadcast_body == 65536


def test_hardening_options_from_the_environment() -> None:
    config = from_env(
        ANYCABLE_ALLOWED_ORIGINS="example.com",
        ANYCABLE_MAX_CONN="5",
        ANYCABLE_SHUTDOWN_DELAY="1",
        ANYCABLE_ENABLE_NATIVE_PINGS="true",
        ANYCABLE_LOG_FORMAT="JSON",
        ANYCABLE_METRICS_HTTP="/metrics",
        ANYCABLE_METRICS_HOST="0.0.0.0",
        ANYCABLE_METRICS_PORT="9090",
        ANYCABLE_METRICS_LOG="1",
        ANYCABLE_METRICS_ROTATE_INTERVAL="60",
        ANYCABLE_METRICS_TAGS="env:production, node_id:xyz",
        ANYCABLE_MAX_SUBSCRIPTIONS="64",
        ANYCABLE_COMMANDS_RATE="12.5",
    )
    assert config.allowed_origins == ("example.com",)
    assert config.max_conn == 5
    assert config.shutdown_delay == 1.0
    assert config.enable_native_pings is True
    assert config.log_format == "json"
    assert config.metrics_http == "/metrics"
    assert config.metrics_host == "0.0.0.0"
    assert config.metrics_port == 9090
    assert config.metrics_log is True
    assert config.metrics_rotate_interval == 60.0
    assert config.metrics_tags == (("env", "production"), ("node_id", "xyz"))
    assert config.max_subscriptions == 64
    assert config.commands_rate == 12.5


def test_origin_forms_are_stored_lower_cased_as_given() -> None:
    config = cli(
        "--allowed_origins=*,*Example.com,http://[::1]:3000,https://app.example.com/,10.0.0.1"
    )
    assert config.allowed_origins == (
        "*",
        "*example.com",
        "http://[::1]:3000",
        "https://app.example.com/",
        "10.0.0.1",
    )


def test_allow_all_origins_warns() -> None:
    _, warnings = load_config_with_warnings(["--allowed_origins=*"], {})
    assert warnings == (
        "--allowed_origins allows every origin: any web page can open a connection",
    )
    assert load_config_with_warnings(["--allowed_origins=example.com"], {})[1] == ()


def test_metrics_endpoint_may_reuse_a_path_on_its_own_port() -> None:
    config = cli("--metrics_http=/health", "--metrics_port=9090")
    assert config.metrics_http == "/health"
    assert config.metrics_port == 9090
    # without a broadcast key the broadcast endpoint is on its own port
    assert cli("--metrics_http=/_broadcast").metrics_http == "/_broadcast"


def test_empty_metrics_http_means_off() -> None:
    assert cli("--metrics_http=").metrics_http is None
    assert cli("--metrics_host=").metrics_host is None


# --- configuration file ----------------------------------------------------------------------


def test_file_values_are_the_lowest_precedence() -> None:
    file = {"port": 7000, "host": "0.0.0.0", "ping_interval": 5, "noauth": True}
    config = load_config(["--port=9000"], {"ANYCABLE_HOST": "127.0.0.1"}, file_values=file)
    assert config.port == 9000  # flag beats file
    assert config.host == "127.0.0.1"  # environment beats file
    assert config.ping_interval == 5.0  # file beats default
    assert config.noauth is True


def test_file_values_of_every_kind() -> None:
    config = load_config(
        [],
        {},
        file_values={
            "path": ["/cable", "/ws"],
            "health-path": "/up",
            "max_conn": 10,
            "max-subscriptions": 5,
            "history_ttl": 1e3,
            "presence_ttl": 1e-1,
            "allowed_origins": ["Example.com"],
            "metrics_tags": {"env": "prod", "replica": 2},
            "enforce_jwt": "true",
            "jwt_secret": "from-file",
        },
    )
    assert config.path == ("/cable", "/ws")
    assert config.health_path == "/up"
    assert config.max_conn == 10
    assert config.max_subscriptions == 5
    assert config.history_ttl == 1000.0
    assert config.presence_ttl == 0.1
    assert config.allowed_origins == ("example.com",)
    assert config.metrics_tags == (("env", "prod"), ("replica", "2"))
    assert config.enforce_jwt is True
    assert config.jwt_secret == "from-file"


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"config_path": "x.toml"}, "--config-path is a command-line option"),
        ({"print_config": True}, "--print-config is a command-line option"),
        ({"server": {"port": 0}}, "invalid value '0' for [server] port in anycable.toml"),
        ({"jwt": {"force": "maybe"}}, "invalid value 'maybe' for [jwt] force in anycable.toml"),
        ({"ws": {"paths": "/a/*/b"}}, "for [ws] paths in anycable.toml: path '/a/*/b': a *"),
        ({"port": "abc"}, "invalid value 'abc' for port in anycable.toml"),
        ({"port": 8080.5}, "for port in anycable.toml"),
        ({"port": [1, 2]}, "port in anycable.toml: expected a single value, not a list"),
        ({"host": {"a": 1}}, "host in anycable.toml: expected a value, not a table"),
        ({"ping_interval": float("inf")}, "ping_interval in anycable.toml: expected a finite"),
        ({"path": ["/a,/b"]}, "path in anycable.toml: list items must not contain commas"),
        ({"broker": "nats"}, "broker = 'nats' in anycable.toml: the nats broker"),
        ({"secret": REDACTED}, "the placeholder --print-config shows"),
    ],
)
def test_bad_file_values_name_the_key_and_the_file(
    values: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config([], {}, file_values=values, file_name="anycable.toml")
    assert fragment in str(info.value)


def test_deprecated_key_in_the_file_warns_with_the_file_spelling() -> None:
    config, warnings = load_config_with_warnings(
        [], {}, file_values={"jwt_id_key": "k" * 32}, file_name="anycable.toml"
    )
    assert config.jwt_secret == "k" * 32
    assert warnings == ("jwt_id_key in anycable.toml is deprecated, use jwt_secret",)


def test_file_options() -> None:
    assert file_options([], {}) == FileOptions()
    assert file_options(["--config-path", "a.toml"], {}) == FileOptions(config_path="a.toml")
    assert file_options([], {"ANYCABLE_CONFIG_PATH": "b.toml"}).config_path == "b.toml"
    assert file_options(["--ignore-config-path", "--print-config"], {}) == FileOptions(
        ignore_config_path=True, print_config=True
    )
    with pytest.raises(ConfigError, match="--config-path"):
        file_options(["--config-path="], {})


def test_config_file_search_order() -> None:
    everything = lambda path: True  # noqa: E731
    nothing = lambda path: False  # noqa: E731
    assert DEFAULT_CONFIG_PATHS == ("./anycable.toml", "/etc/anycable/anycable.toml")
    assert FileOptions().path(everything) == "./anycable.toml"
    assert FileOptions().path(lambda path: path.startswith("/etc")) == DEFAULT_CONFIG_PATHS[1]
    assert FileOptions().path(nothing) is None
    assert FileOptions(config_path="x.toml").path(nothing) == "x.toml"
    assert FileOptions(config_path="x.toml", ignore_config_path=True).path(everything) is None


def test_read_config_file(tmp_path: Path) -> None:
    path = tmp_path / "anycable.toml"
    path.write_text('port = 9000\nsecret = "s3cr3t"\n', encoding="utf-8")
    assert read_config_file(str(path)) == {"port": 9000, "secret": "s3cr3t"}
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text('secret = "s3cr3t\nport = \n', encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid TOML") as info:
        read_config_file(str(bad))
    assert "s3cr3t" not in str(info.value)


# --- --print-config --------------------------------------------------------------------------


def test_printed_config_loads_back_to_the_same_config() -> None:
    config = cli(
        "--port=9000",
        "--path=/cable,/ws",
        "--allowed_origins=example.com,*.example.org",
        "--metrics_http=/metrics",
        "--metrics_tags=env:prod,node:a:b",
        "--broker=none",
        "--history_ttl=0.25",
        "--turbo_streams",
        "--broadcast_key=none",
        "--public",
    )
    text = config_toml(config)
    assert load_config([], {}, file_values=tomllib.loads(text)) == config
    values = tomllib.loads(text)
    assert "# host is unset" in text.split("[metrics]")[1]  # --metrics_host
    assert values["metrics"]["tags"] == {"env": "prod", "node": "a:b"}
    assert values["server"]["allowed_origins"] == "example.com,*.example.org"  # as AnyCable
    assert values["ws"]["paths"] == ["/cable", "/ws"]
    assert values["broadcast_key"] == "none"
    assert load_config([], {}, file_values=tomllib.loads(config_toml(Config()))) == Config()


SECRET_KEYS = {
    "secret": ("secret",),
    "broadcast_key": ("broadcast_key",),
    "jwt_secret": ("jwt", "secret"),
    "streams_secret": ("streams", "secret"),
    "turbo_streams_secret": ("streams", "turbo_secret"),
    "api_secret": ("api", "secret"),
}


def at(values: dict[str, object], path: tuple[str, ...]) -> object:
    for key in path:
        assert isinstance(values, dict)
        values = values[key]  # type: ignore[assignment]
    return values


def test_printed_config_redacts_every_secret() -> None:
    config = cli(
        "--secret=s3cr3t-master",
        "--jwt_secret=s3cr3t-jwt",
        "--streams_secret=s3cr3t-streams",
        "--turbo_streams_secret=s3cr3t-turbo",
    )
    text = config_toml(config)
    assert "s3cr3t" not in text
    assert config.broadcast_key is not None
    assert config.broadcast_key not in text
    values = tomllib.loads(text)
    assert set(SECRET_KEYS) == SECRET_FIELDS
    for path in SECRET_KEYS.values():
        assert at(values, path) == REDACTED
    with pytest.raises(ConfigError, match="placeholder"):
        load_config([], {}, file_values=values)


def test_printed_config_with_the_secrets_put_back_loads_back_to_the_same_config() -> None:
    config = cli(
        "--secret=s3cr3t-master",
        "--jwt_secret=none",
        "--streams_secret=s3cr3t-streams",
        "--sse=false",
        "--max_subscriptions=7",
        "--redis_url=redis://user:pw@redis.internal:6380/2",
    )
    values = tomllib.loads(config_toml(config))
    for name, path in SECRET_KEYS.items():
        if at(values, path) == REDACTED:
            parent = at(values, path[:-1]) if len(path) > 1 else values
            assert isinstance(parent, dict)
            parent[path[-1]] = getattr(config, name)
    assert at(values, ("jwt", "secret")) == "none"  # explicitly unset: no fallback to secret
    assert at(values, ("redis", "url")) == "redis://user:[REDACTED]@redis.internal:6380/2"
    values["redis"]["url"] = config.redis_url  # type: ignore[index]
    assert load_config([], {}, file_values=values) == config


def test_printed_config_covers_every_field_in_anycables_layout() -> None:
    values = tomllib.loads(config_toml(Config(metrics_host="h", metrics_http="/m")))
    for field in fields(Config):
        if field.name in anycable_toml.PRINTED:
            section, key = anycable_toml.PRINTED[field.name]
            table = values
            *parts, key = [*(section.split(".") if section else ()), *key.split(".")]
            for part in parts:  # a dotted section or key ([server] ssl.cert_path)
                table = table[part]
            assert key in table, field.name
        else:  # Cableway's own: a flat top-level key named like the option
            key = field.name
            assert key in values, field.name
            assert key.replace("_", "-") in {o.name.replace("_", "-") for o in OPTIONS}
    # every section key written is one AnyCable-Go reads and Cableway maps to an option
    for section in anycable_toml.SECTIONS:
        if "." in section:
            continue  # a sub-table: walked below, from its parent
        for path, _, _ in anycable_toml.key_paths(section, values.get(section, {})):
            assert path in anycable_toml.SETS, path
    assert list(values)[-len([s for s in anycable_toml.SECTIONS if s in values]) :] == [
        s for s in anycable_toml.SECTIONS if s in values
    ]


def test_printed_strings_are_valid_toml() -> None:
    config = Config(host='h"o\\s\x7ft\u00e9', jwt_param="p\tq")
    values = tomllib.loads(config_toml(config))
    assert values["server"]["host"] == config.host
    assert values["jwt"]["param"] == config.jwt_param


@pytest.mark.parametrize(
    ("argv", "warns"),
    [
        (["--host=0.0.0.0"], True),
        (["--host=10.0.0.5", "--http_broadcast_port=9999"], True),
        (["--host=0.0.0.0", "--secret=s"], False),
        (["--host=0.0.0.0", "--broadcast_key=k"], False),
        (["--host=0.0.0.0", "--broadcast_key=none"], False),  # explicitly no key
        (["--host=0.0.0.0", "--public"], False),  # public mode broadcasts without a key
        (["--host=127.0.0.1"], False),
        (["--host=::1"], False),
        ([], False),  # localhost
    ],
)
def test_unauthenticated_broadcasts_on_a_public_address_warn(argv: list[str], warns: bool) -> None:
    config, warnings = load_config_with_warnings(argv, {})
    expected = (
        f"HTTP broadcasts are accepted without authorization on {config.host}:"
        f"{config.http_broadcast_port}: set --secret or --broadcast_key (or firewall that port; "
        "--broadcast_key=none says no key is intended)"
    )
    assert (expected in warnings) is warns


# --- scale-out on Redis ------------------------------------------------------------------------


def test_redis_defaults() -> None:
    config = cli()
    assert config.pubsub == "none"
    assert config.redis_url == "redis://localhost:6379"
    assert config.redis_channel == "__anycable__"
    assert config.redisx_stream == "__anycable__"


@pytest.mark.parametrize(
    ("value", "adapters"),
    [
        ("redis", ("redis",)),
        ("redisx", ("redisx",)),
        ("http,redisx", ("http", "redisx")),
        ("HTTP, Redis ,redisx", ("http", "redis", "redisx")),
    ],
)
def test_redis_broadcast_adapters_are_accepted(value: str, adapters: tuple[str, ...]) -> None:
    assert cli(f"--broadcast_adapter={value}").broadcast_adapters == adapters


def test_redisx_turns_redis_pubsub_on_unless_set() -> None:
    assert cli("--broadcast_adapter=http,redisx").pubsub == "redis"
    assert cli("--broadcast_adapter=http,redis").pubsub == "none"
    config, warnings = load_config_with_warnings(
        ["--broadcast_adapter=redisx", "--pubsub=none", "--noauth"], {}
    )
    assert config.pubsub == "none"
    assert any("--pubsub=none with the redisx adapter" in warning for warning in warnings)


def test_pubsub_redis_with_the_memory_broker_warns_history_is_per_node() -> None:
    config, warnings = load_config_with_warnings(["--pubsub=redis", "--noauth"], {})
    assert config.pubsub == "redis"
    assert any("kept per node" in warning for warning in warnings)


def test_redis_url_from_flag_and_environment() -> None:
    assert from_env(REDIS_URL="redis://r:6380/2").redis_url == "redis://r:6380/2"
    assert (
        from_env(REDIS_URL="redis://a", ANYCABLE_REDIS_URL="redis://b:1").redis_url == "redis://b:1"
    )
    assert cli("--redis_url=rediss://u:p@h/3").redis_url == "rediss://u:p@h/3"
    assert cli("--redis_channel=bc", "--redisx_stream=bx").redis_channel == "bc"


@pytest.mark.parametrize(
    "url", ["http://localhost", "redis://", "redis://h:99999", "redis://h/db", "localhost:6379"]
)
def test_bad_redis_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="--redis_url"):
        cli(f"--redis_url={url}")


def test_redis_password_is_redacted() -> None:
    config = cli("--redis_url=redis://user:hunter2@redis.internal:6379/1")
    assert config.redacted()["redis_url"] == "redis://user:[REDACTED]@redis.internal:6379/1"
    assert "hunter2" not in repr(config)
    assert cli("--redis_url=redis://:pw@h").redacted()["redis_url"] == "redis://:[REDACTED]@h"
    assert "hunter2" not in config_toml(config)


LONG_ENOUGH = "0123456789abcdef" * 2  # 32 bytes


@pytest.mark.parametrize(
    ("argv", "env", "label"),
    [
        (["--secret=short-Secret-Value"], {}, "--secret"),
        (["--jwt_secret=short-Secret-Value"], {}, "--jwt_secret"),
        ([], {"ANYCABLE_JWT_ID_KEY": "short-Secret-Value"}, "ANYCABLE_JWT_ID_KEY"),
        (["--streams_secret=short-Secret-Value"], {}, "--streams_secret"),
        (
            [],
            {"ANYCABLE_TURBO_STREAMS_SECRET": "short-Secret-Value"},
            "ANYCABLE_TURBO_STREAMS_SECRET",
        ),
        (["--turbo_rails_key=short-Secret-Value"], {}, "--turbo_rails_key"),
        # 31 bytes of UTF-8 (the bound is in bytes, not characters)
        (["--secret=" + "\u00e9" * 15 + "x"], {}, "--secret"),
    ],
)
def test_J11_a_secret_shorter_than_32_bytes_warns_without_showing_it(
    argv: list[str], env: dict[str, str], label: str
) -> None:
    _, warnings = load_config_with_warnings(argv, env)
    short = [w for w in warnings if "shorter than 32 bytes" in w]
    assert len(short) == 1
    assert short[0].startswith(f"{label} is shorter than 32 bytes")
    secret = argv[0].split("=", 1)[1] if argv else next(iter(env.values()))
    for warning in warnings:
        assert secret not in warning
        assert "short-Secret" not in warning


def test_J11_secrets_of_32_bytes_or_more_and_unset_secrets_do_not_warn() -> None:
    _, warnings = load_config_with_warnings(
        [f"--secret={LONG_ENOUGH}", f"--jwt_secret={LONG_ENOUGH}x", "--streams_secret=none"],
        {"ANYCABLE_TURBO_STREAMS_SECRET": ""},
    )
    assert warnings == ()
    assert load_config_with_warnings([], {})[1] == ()


# --- configuration files written for AnyCable-Go 1.6 -----------------------------------------

# What `anycable-go --print-config` writes (v1.6.16's Config.ToToml(), spec §13.4.4), with
# non-default values in every section Cableway supports and idle values in the others.
ANYCABLE_FILE = """\
# AnyCable server configuration.
# Read more at https://docs.anycable.io/anycable-go/configuration

# General settings

# Public mode disables connection authentication, pub/sub streams and broadcasts verification
# public = false

# Disable connection authentication only
# noauth = false

# Application instance ID
node_id = "web-1"

# The application secret key
secret = "app-secret-of-at-least-thirty-two-bytes"

# Broadcasting adapters for app-to-clients messages
broadcast_adapters = ["http", "redisx"]

# Broadcasting authorization key
broadcast_key = "bk-of-at-least-thirty-two-bytes-long"

# Pub/sub adapter for inter-node communication
pubsub_adapter = "redis"

# User-provided configuration presets
presets = ["broker"]

# Server configuration
[server]
host = "0.0.0.0"
port = 9090
allowed_origins = "app.example.com,*.example.org"
# max_conn = 1000
health_path = "/up"
# ssl.cert_path =
# ssl.key_path =

[logging]
level = "warn"
format = "json"
# debug = false

# RPC configuration
[rpc]
implementation = "none"
host = "localhost:50051"
proxy_headers = ["cookie"]
concurrency = 28
enable_tls = false
tls_verify = true
tls_root_ca_path = ""
# secret = ""
request_timeout = 0
command_timeout = 3000
max_recv_size = 0
max_send_size = 0

[broker]
adapter = "memory"
history_ttl = 600
history_limit = 50
sessions_ttl = 120
presence_ttl = 30

# JWT configuration
[jwt]
secret = "jwt-secret-of-at-least-thirty-two-bytes"
param = "token"
# Enfore JWT authentication
force = true

[streams]
secret = "streams-secret-of-at-least-32-bytes!!"
public = true
whisper = true
presence = false
pubsub_channel = "$pubsub"
turbo = true
turbo_secret = "turbo-secret-of-at-least-32-bytes-long"
cable_ready = false
# cable_ready_secret = ""

# WebSockets configuration
[ws]
paths = ["/cable", "/accounts/{tenant}/cable"]
read_buffer_size = 1024
write_buffer_size = 1024
max_message_size = 131072
write_timeout = 5
max_pending_size = 2_097_152

[sse]
enabled = false
path = "/sse"

[pusher]
# app_id = ""
# app_key = ""
secret = "app-secret-of-at-least-thirty-two-bytes"
api_port = 0

[ds]
enabled = false
path = "/ds"
skip_auth = false
poll_interval = 10
sse_ttl = 60

[api]
port = 0
path = "/api"
# secret = ""

[redis]
url = "redis://redis.internal:6380/1"
# sentinels = ""
sentinel_discovery_interval = 30
keepalive_ping_interval = 30
tls_verify = false
max_reconnect_attempts = 5
disable_cache = false

[nats]
servers = "nats://127.0.0.1:4222"
dont_randomize_servers = false
max_reconnect_attempts = 5

[http_broadcast]
port = 9091
path = "/_publish"
# secret = ""
# cors_headers = false

[redis_stream_broadcast]
stream = "__my_stream__"
group = "bx"
stream_read_block_milliseconds = 2000

[redis_pubsub_broadcast]
channel = "__my_channel__"

[nats_broadcast]
channel = "__anycable__"

[redis_pubsub]
channel = "__anycable_internal__"

[nats_pubsub]
channel = "__anycable_internal__"

[metrics]
# HTTP endpoint (Prometheus)
http = "/metrics"
host = "127.0.0.1"
port = 9102
log = true
rotate_interval = 30
# log_filter = []
tags.env = "prod"
tags.node = "web-1"
statsd.host = ""
statsd.prefix = "anycable_go."

[app]
ping_interval = 6
ping_timestamp_precision = "ms"
pong_timeout = 12
# Enable native ping/pong mechanism (e.g., WebSocket PING/PONG frames)enable_native_ping = true
disconnect_mode = "auto"
shutdown_timeout = 20
stats_refresh_interval = 5
broadcast_gopool_size = 16
shutdown_disconnect_gopool_size = 16

[disconnector]
rate = 100
backlog = 4096

[embedded_nats]
enabled = false
name = ""
service_addr = "nats://127.0.0.1:4222"
cluster_name = "anycable-cluster"
"""

EXPECTED = Config(
    host="0.0.0.0",
    port=9090,
    path=("/cable", "/accounts/{tenant}/cable"),
    health_path="/up",
    secret="app-secret-of-at-least-thirty-two-bytes",
    jwt_secret="jwt-secret-of-at-least-thirty-two-bytes",
    jwt_param="token",
    enforce_jwt=True,
    streams_secret="streams-secret-of-at-least-32-bytes!!",
    public_streams=True,
    turbo_streams=True,
    turbo_streams_secret="turbo-secret-of-at-least-32-bytes-long",
    broadcast_adapters=("http", "redisx"),
    broadcast_key="bk-of-at-least-thirty-two-bytes-long",
    http_broadcast_port=9091,
    http_broadcast_path="/_publish",
    # [api] port = 0, path = "/api", no secret: derived from secret, as AnyCable-Go does
    api_secret=derive_api_key("app-secret-of-at-least-thirty-two-bytes"),
    pubsub="redis",
    redis_url="redis://redis.internal:6380/1",
    redis_tls_verify=False,  # as the file says (Cableway's own default is true)
    redis_channel="__my_channel__",
    redisx_stream="__my_stream__",
    broker="memory",
    history_limit=50,
    history_ttl=600.0,
    sessions_ttl=120.0,
    presence_ttl=30.0,
    streams_whisper=True,
    streams_presence=False,
    ping_interval=6.0,
    ping_timestamp_precision="ms",
    pong_timeout=12.0,
    max_message_size=131072,
    ws_write_timeout=5.0,
    ws_max_pending_size=2097152,
    sse=False,
    sse_path="/sse",
    allowed_origins=("app.example.com", "*.example.org"),
    shutdown_timeout=20.0,
    log_level="warn",
    log_format="json",
    metrics_http="/metrics",
    metrics_host="127.0.0.1",
    metrics_port=9102,
    metrics_log=True,
    metrics_rotate_interval=30.0,
    metrics_tags=(("env", "prod"), ("node", "web-1")),
)


def test_a_file_written_for_anycable_go_loads_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "anycable.toml"
    path.write_text(ANYCABLE_FILE, encoding="utf-8")
    config, warnings = load_config_with_warnings(
        [], {}, file_values=read_config_file(str(path)), file_name=str(path)
    )
    assert config == EXPECTED
    assert warnings == (  # the one Cableway gives for these settings on the command line too
        "--pubsub=redis with the memory broker: stream history and session restore are kept "
        "per node (a client that reconnects to another node cannot catch up)",
    )


def test_anycable_keys_ignore_case_and_empty_strings_mean_unset() -> None:
    values = {
        "SECRET": "master",
        "Server": {"HOST": "0.0.0.0", "Health_Path": ""},
        "jwt": {"secret": ""},  # not set: falls back to secret, as in AnyCable-Go
        "sse": {"path": ""},
    }
    config = load_config([], {}, file_values=values)
    assert (config.host, config.health_path, config.sse_path) == ("0.0.0.0", "/health", "/events")
    assert config.jwt_secret == "master"


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--enable_ws_compression"], {}),
        (["--enable_ws_compression=true"], {}),
        ([], {"ANYCABLE_ENABLE_WS_COMPRESSION": "true"}),
    ],
)
def test_ws_compression_is_enabled_as_in_anycable_go(argv: list[str], env: dict[str, str]) -> None:
    assert load_config([], {}).enable_ws_compression is False
    assert load_config(argv, env).enable_ws_compression is True


def test_anycable_keys_follow_the_precedence_file_env_flags() -> None:
    values = {"server": {"port": 7000, "host": "0.0.0.0"}, "jwt": {"param": "t"}}
    env = {"ANYCABLE_HOST": "127.0.0.1", "ANYCABLE_JWT_PARAM": "e"}
    config = load_config(["--jwt_param=f"], env, file_values=values)
    assert (config.port, config.host, config.jwt_param) == (7000, "127.0.0.1", "f")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"broker": {"adapter": ""}}, {"broker": "none"}),  # AnyCable: no adapter, no broker
        ({"rpc": {"implementation": "none"}}, {}),
        ({"rpc": {"implementation": "", "host": "localhost:50051"}}, {}),
        ({"metrics": {"http_path": "/m"}}, {"metrics_http": "/m"}),
        ({"metrics": {"http": "/m"}}, {"metrics_http": "/m"}),  # what --print-config writes
        ({"metrics": {"tags": {"a": "b"}}}, {"metrics_tags": (("a", "b"),)}),
        ({"logging": {"level": "error"}}, {"log_level": "error"}),
        ({"app": {"enable_native_ping": True}}, {"enable_native_pings": True}),
        ({"ws": {"enable_compression": True}}, {"enable_ws_compression": True}),
        ({"logging": {"debug": True, "level": "warn"}}, {"log_level": "debug"}),
        ({"server": {"ssl": {"cert_path": "", "key_path": ""}}}, {}),
        (
            {"server": {"ssl": {"cert_path": "/c.pem", "key_path": "/k.pem"}}},
            {"ssl_cert": "/c.pem", "ssl_key": "/k.pem"},
        ),
        ({"pubsub_adapter": ""}, {}),
        ({"sse": False, "broker": "none"}, {"sse": False, "broker": "none"}),  # flat keys
        ({"secret": "s", "http_broadcast": {"port": 0}}, {"secret": "s"}),  # main port
    ],
)
def test_anycable_keys_mean_what_they_mean_in_anycable_go(
    values: dict[str, object], expected: dict[str, object]
) -> None:
    config = load_config([], {}, file_values=values)
    changes = {name: value for name, value in expected.items() if name != "secret"}
    base = load_config(["--secret=s"] if "secret" in expected else [], {})
    assert config == dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"ds": {"enabled": True}}, "[ds] enabled = true in anycable.toml: Durable Streams"),
        ({"pusher": {"app_id": "x"}}, '[pusher] app_id = "x" in anycable.toml: the Pusher'),
        ({"streams": {"cable_ready": True}}, "CableReady channels are not served"),
        ({"streams": {"pubsub_channel": "$x"}}, "pub/sub channel as $pubsub only"),
        ({"api": {"host": "10.0.0.1"}}, "[api] host is not supported"),
        ({"api": {"cors_headers": True}}, "CORS headers on the REST API are not supported"),
        ({"embedded_nats": {"enabled": True}}, "NATS is not supported"),
        ({"rpc": {"implementation": "grpc"}}, "RPC needs --rpc_host=http(s)://"),
        ({"rpc": {"host": "rails:50051"}}, "gRPC hosts (no http:// or https:// scheme"),
        ({"server": {"ssl": {"cert_path": "c.pem"}}}, "TLS needs both --ssl_cert and --ssl_key"),
        ({"port": 1, "server": {"port": 2}}, "port in anycable.toml and [server] port in"),
        ({"metrics": {"http": "/a", "http_path": "/b"}}, "both set --metrics_http"),
        ({"server": 1}, "server in anycable.toml: expected a section ([server]), not a TOML int"),
        ({"ws": [{"paths": ["/x"]}]}, "ws in anycable.toml: expected a section ([ws])"),
        ({"sse": {"enabled": True}, "broker": {"adapter": "nats"}}, "[broker] adapter = 'nats'"),
    ],
)
def test_anycable_features_cableway_lacks_are_refused_unless_idle(
    values: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config([], {}, file_values=values, file_name="anycable.toml")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("values", "warning"),
    [
        (
            {"server": {"prot": 1}},
            "[server] prot in anycable.toml is not a setting Cableway knows; ignored "
            "(did you mean [server] port?)",
        ),
        (
            {"bogus": 1},
            "bogus in anycable.toml is not a setting Cableway knows; ignored",
        ),
        (
            {"histroy_limit": 5},
            "histroy_limit in anycable.toml is not a setting Cableway knows; ignored "
            "(did you mean history_limit?)",
        ),
        (
            {"http_broadcast": {"secret": "k" * 32}},
            "[http_broadcast] secret in anycable.toml is deprecated, use broadcast_key (top level)",
        ),
    ],
)
def test_unknown_and_deprecated_keys_are_named_in_a_warning(
    values: dict[str, object], warning: str
) -> None:
    _, warnings = load_config_with_warnings([], {}, file_values=values, file_name="anycable.toml")
    assert warnings == (warning,)


def test_keys_cableway_ignores_change_nothing() -> None:
    values = {
        "node_id": "x",
        "rpc": {"concurrency": 100, "proxy_headers": ["cookie", "x-api"]},
        "app": {"disconnect_mode": "never", "stats_refresh_interval": 9},
        "redis": {"keepalive_ping_interval": 60},
        "disconnector": {"rate": 5},
        "nats": {"servers": "nats://n:4222"},
    }
    assert load_config_with_warnings([], {}, file_values=values) == (Config(), ())
