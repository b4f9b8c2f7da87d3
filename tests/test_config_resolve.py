"""cableway.config.resolve: each cross-field rule on its own, and reading options as declared."""

from __future__ import annotations

import pytest

from cableway.config import ConfigError
from cableway.config.options import BY_NAME, OPEN_BROADCAST_PORT
from cableway.config.resolve import (
    broadcasting,
    broker,
    log_level,
    public_mode,
    secrets,
    sse,
    turbo_streams,
)
from cableway.config.sources import from_command_line, from_environment
from cableway.config.values import Values

LONG = "x" * 40


def values(*argv: str, **env: str) -> Values:
    raws = from_environment(env)
    raws.update(from_command_line(argv))
    return Values(raws)


# --- Values.get reads an option as its declaration says ---------------------------------------


def test_an_unset_option_is_its_declared_value() -> None:
    get = values()
    for name in ("port", "ping_interval", "log_format", "sse", "metrics_host"):
        assert get.get(name) == BY_NAME[name].value


def test_an_integer_is_checked_against_the_declared_range() -> None:
    assert values("--http_broadcast_port=0").get("http_broadcast_port") == 0
    with pytest.raises(ConfigError, match="between 1 and 65535"):
        values("--port=0").get("port")
    with pytest.raises(ConfigError, match="at least 1"):
        values("--history_limit=0").get("history_limit")


def test_a_duration_declared_positive_refuses_zero_and_others_accept_it() -> None:
    assert values("--pong_timeout=0").get("pong_timeout") == 0.0
    with pytest.raises(ConfigError, match="must be more than zero"):
        values("--ping_interval=0").get("ping_interval")


def test_a_choice_is_one_of_the_declared_values_ignoring_case() -> None:
    assert values("--log_format=JSON").get("log_format") == "json"
    with pytest.raises(ConfigError, match="must be one of text, json"):
        values("--log_format=xml").get("log_format")


def test_an_option_beats_its_deprecated_name_from_the_same_source() -> None:
    assert values("--jwt_id_param=old", "--jwt_param=new").get("jwt_param") == "new"
    assert values("--jwt_id_param=old", ANYCABLE_JWT_PARAM="env").get("jwt_param") == "old"


# --- one function per concern ------------------------------------------------------------------


def test_secrets_fall_back_to_the_master_secret_and_turbo_to_the_streams_secret() -> None:
    warnings: list[str] = []
    decided = secrets(values(f"--secret={LONG}", f"--streams_secret=s{LONG}"), warnings)
    assert decided == {
        "secret": LONG,
        "jwt_secret": LONG,
        "streams_secret": f"s{LONG}",
        "turbo_streams_secret": f"s{LONG}",
    }
    assert warnings == []


def test_none_stops_a_secret_fallback_and_a_short_secret_warns_by_name() -> None:
    warnings: list[str] = []
    decided = secrets(values("--secret=short", "--jwt_secret=none"), warnings)
    assert decided["jwt_secret"] is None
    assert decided["streams_secret"] == "short"
    assert warnings == [
        "--secret is shorter than 32 bytes: an HMAC secret this short can be guessed offline "
        "from one signed token; use at least 32 random bytes"
    ]


def test_public_mode_implies_noauth_and_public_streams() -> None:
    assert public_mode(values("--public")) == {
        "public": True,
        "noauth": True,
        "public_streams": True,
    }


def test_turbo_streams_without_a_secret_warn() -> None:
    warnings: list[str] = []
    decided = turbo_streams(values("--turbo_streams"), warnings, {"turbo_streams_secret": None})
    assert decided == {"turbo_streams": True, "turbo_rails_cleartext": False}
    assert len(warnings) == 1
    assert "no secret is configured" in warnings[0]


def test_the_broadcast_port_is_the_main_one_only_with_a_key() -> None:
    keyed = {"secret": LONG, "public": False}
    assert broadcasting(values("--port=9000"), [], keyed)["http_broadcast_port"] == 9000
    unkeyed = {"secret": None, "public": False}
    decided = broadcasting(values("--port=9000"), [], unkeyed)
    assert decided["http_broadcast_port"] == OPEN_BROADCAST_PORT
    assert decided["broadcast_key"] is None


def test_public_mode_drops_the_broadcast_key_and_says_so() -> None:
    warnings: list[str] = []
    decided = broadcasting(values("--broadcast_key=k"), warnings, {"secret": None, "public": True})
    assert decided["broadcast_key"] is None
    assert warnings == ["--broadcast_key is ignored: public mode broadcasts without a key"]


def test_debug_sets_the_level_but_a_bad_level_is_still_an_error() -> None:
    assert log_level(values("--debug", "--log_level=warn")) == {"log_level": "debug"}
    with pytest.raises(ConfigError, match="--log_level"):
        log_level(values("--debug", "--log_level=loud"))


def test_broker_settings_warn_when_the_broker_is_none() -> None:
    warnings: list[str] = []
    decided = broker(values("--broker=none", "--history_limit=5"), warnings)
    assert decided["broker"] == "none"
    assert decided["history_limit"] == 5
    assert warnings == ["--history_limit has no effect: the broker is none"]


def test_the_default_sse_path_clashing_with_a_chosen_path_names_that_option() -> None:
    with pytest.raises(ConfigError, match="--path: clashes with the SSE path /events"):
        sse(values("--path=/events"), {"path": ("/events",)})
    assert sse(values("--path=/events", "--sse=false"), {"path": ("/events",)})["sse"] is False
