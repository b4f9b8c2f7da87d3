"""The RPC options (rpc.md §3-§4): names, environment variables, defaults and the TOML keys
as AnyCable-Go has them."""

from __future__ import annotations

import pytest

from cableway.config import Config, ConfigError, config_toml, load_config
from cableway.rpc import derive_rpc_key
from cableway.rpc.settings import RpcSettings, env_headers, filter_cookies

SECRET_KEY = "f07cae1c1e872f121cf4b7d3063cf9e53464f52cd944522d045ba5eee35a7912"


def test_without_rpc_host_there_is_no_rpc() -> None:
    assert load_config([], {}).rpc is None
    assert load_config(["--norpc"], {}) == Config()


def test_an_http_rpc_host_turns_rpc_on_with_anycable_go_defaults() -> None:
    rpc = load_config(["--rpc_host=http://app:3000/_anycable"], {}).rpc
    assert rpc == RpcSettings(host="http://app:3000/_anycable")
    assert (rpc.concurrency, rpc.request_timeout, rpc.headers) == (28, 3.0, ("cookie",))
    assert (rpc.key, rpc.proxy_cookies, rpc.disconnect_mode, rpc.disconnect_rate) == (
        None,
        None,
        "auto",
        100,
    )


def test_the_key_is_derived_from_secret_unless_given() -> None:
    derived = load_config(["--rpc_host=https://app/_anycable", "--secret=secret"], {}).rpc
    assert derived is not None
    assert derived.key == SECRET_KEY == derive_rpc_key("secret")
    given = load_config(
        ["--rpc_host=https://app/_anycable", "--secret=secret", "--http_rpc_secret=k"], {}
    ).rpc
    assert given is not None
    assert given.key == "k"
    unset = load_config(
        ["--rpc_host=https://app/_anycable", "--secret=secret", "--http_rpc_secret=none"], {}
    ).rpc
    assert unset is not None
    assert unset.key is None


def test_every_rpc_option_reads_its_anycable_environment_variable() -> None:
    rpc = load_config(
        [],
        {
            "ANYCABLE_RPC_HOST": "http://127.0.0.1:9/rpc",
            "ANYCABLE_HTTP_RPC_SECRET": "key",
            "ANYCABLE_RPC_CONCURRENCY": "4",
            "ANYCABLE_RPC_REQUEST_TIMEOUT": "5000",
            "ANYCABLE_HEADERS": "Cookie, X-Api-Token",
            "ANYCABLE_PROXY_COOKIES": "_session_id, remember",
            "ANYCABLE_DISCONNECT_MODE": "always",
            "ANYCABLE_DISCONNECT_RATE": "7",
        },
    ).rpc
    assert rpc == RpcSettings(
        host="http://127.0.0.1:9/rpc",
        key="key",
        concurrency=4,
        request_timeout=5.0,
        headers=("cookie", "x-api-token"),
        proxy_cookies=("_session_id", "remember"),
        disconnect_mode="always",
        disconnect_rate=7,
    )


def test_a_zero_request_timeout_means_three_seconds() -> None:
    rpc = load_config(["--rpc_host=http://a/", "--rpc_request_timeout=0"], {}).rpc
    assert rpc is not None
    assert rpc.request_timeout == 3.0


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--rpc_host=localhost:50051"], "gRPC hosts"),
        (["--rpc_host=dns:///rails:50051"], "gRPC hosts"),
        (["--norpc=false"], "RPC needs --rpc_host=http(s)://"),
        (["--rpc_host=http://"], "no host"),
        (["--rpc_host=http://a/", "--rpc_concurrency=0"], "--rpc_concurrency"),
        (["--rpc_host=http://a/", "--disconnect_mode=sometimes"], "auto, always, never"),
        (["--rpc_host=http://a/", "--disconnect_rate=0"], "--disconnect_rate"),
        (["--rpc_host=http://a/", "--headers=a b"], "not a header name"),
    ],
)
def test_bad_rpc_values_are_refused_naming_the_option(argv: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match="for --") as info:
        load_config(argv, {})
    assert fragment in str(info.value)


def test_norpc_wins_over_rpc_host() -> None:
    assert load_config(["--rpc_host=http://a/", "--norpc"], {}).rpc is None


def test_the_anycable_toml_rpc_section_sets_them() -> None:
    values = {
        "rpc": {
            "implementation": "http",
            "host": "http://app/_anycable",
            "secret": "s3",
            "concurrency": 9,
            "request_timeout": 1500,
            "proxy_cookies": ["_sid"],
            "proxy_headers": ["x-ignored"],  # AnyCable-Go never reads it from the file
        },
        "app": {"disconnect_mode": "never"},
        "disconnector": {"rate": 20},
    }
    rpc = load_config([], {}, file_values=values).rpc
    assert rpc == RpcSettings(
        host="http://app/_anycable",
        key="s3",
        concurrency=9,
        request_timeout=1.5,
        proxy_cookies=("_sid",),
        disconnect_mode="never",
        disconnect_rate=20,
    )


def test_print_config_round_trips_the_rpc_settings() -> None:
    import tomllib

    config = load_config(
        ["--rpc_host=http://app/_anycable", "--rpc_concurrency=5", "--proxy-cookies=a,b"], {}
    )
    values = tomllib.loads(config_toml(config))
    assert load_config([], {}, file_values=values).rpc == config.rpc
    assert tomllib.loads(config_toml(Config()))["rpc"] == {"implementation": "none"}


def test_the_key_never_shows_in_repr() -> None:
    config = load_config(["--rpc_host=http://a/", "--http_rpc_secret=topsecret"], {})
    assert "topsecret" not in repr(config)
    assert "topsecret" not in config_toml(config)


def test_env_headers_forward_configured_headers_and_remote_addr() -> None:
    pairs = [("Cookie", "a=1; _sid=x=="), ("X-Api", "t"), ("Origin", "o"), ("cookie", "later")]
    assert env_headers(pairs, ("cookie", "x-api"), "10.0.0.1") == {
        "cookie": "a=1; _sid=x==",
        "x-api": "t",
        "REMOTE_ADDR": "10.0.0.1",
    }
    # --proxy-cookies: names trimmed, split on the first "=" (AnyCable-Go's quirks fixed)
    assert env_headers(pairs, ("cookie",), "::1", ("_sid",)) == {
        "cookie": "_sid=x==;",
        "REMOTE_ADDR": "::1",
    }
    assert filter_cookies("a=1;b=2", ("b",)) == "b=2;"
    assert env_headers(pairs, ("cookie",), "::1", ("none",)) == {"REMOTE_ADDR": "::1"}
