"""The REST API options (AnyCable-Go 1.6 ``api/config.go``, ``cli/cli.go``; docs/api.md)."""

from __future__ import annotations

import pytest

from cableway.config import ConfigError, load_config

# AnyCable-Go docs/api.md: echo -n 'api-cable' | openssl dgst -sha256 -hmac 'qwerty'
API_QWERTY = "bdd0244b3664404d03b7d0c2f1b946dc4fc6c13fdcbfa2be62a4a28deb04d096"


def test_defaults_serve_no_api_without_a_secret() -> None:
    config = load_config([], {})
    assert (config.api_port, config.api_path, config.api_secret) == (0, "/api", None)
    assert not config.api_served


def test_the_key_is_derived_from_the_secret_and_the_api_is_served() -> None:
    config = load_config(["--secret=qwerty"], {})
    assert config.api_secret == API_QWERTY
    assert config.api_secret != config.broadcast_key  # a key of its own
    assert config.api_served


def test_an_explicit_api_secret_wins_over_the_derived_one() -> None:
    config = load_config(["--secret=qwerty", "--api_secret=my-api-key"], {})
    assert config.api_secret == "my-api-key"
    assert config.api_served


@pytest.mark.parametrize("value", ["none", ""])
def test_none_and_empty_mean_unset(value: str) -> None:
    assert load_config([f"--api_secret={value}", "--secret=qwerty"], {}).api_secret == API_QWERTY
    assert not load_config([f"--api_secret={value}"], {}).api_served


def test_public_mode_serves_the_api_without_a_key_unless_a_secret_is_set() -> None:
    public = load_config(["--public"], {})
    assert public.api_served
    assert public.api_secret is None
    # unlike HTTP broadcasts, the API keeps its key in public mode (cli/cli.go)
    assert load_config(["--public", "--secret=qwerty"], {}).api_secret == API_QWERTY


def test_a_port_of_its_own_serves_the_api_without_a_key() -> None:
    config = load_config(["--api_port=8082"], {})
    assert config.api_served
    assert config.api_secret is None


def test_environment_and_file_keys() -> None:
    env = {"ANYCABLE_API_PORT": "8082", "ANYCABLE_API_PATH": "/v1", "ANYCABLE_API_SECRET": "k"}
    config = load_config([], env)
    assert (config.api_port, config.api_path, config.api_secret) == (8082, "/v1", "k")
    values = {"api": {"port": 8083, "path": "/rest", "secret": "f"}}
    config = load_config([], {}, file_values=values)
    assert (config.api_port, config.api_path, config.api_secret) == (8083, "/rest", "f")


@pytest.mark.parametrize("path", ["api", "/api/*", "/a/{x"])
def test_a_base_path_that_makes_no_valid_endpoint_is_refused(path: str) -> None:
    with pytest.raises(ConfigError, match="api_path"):
        load_config([f"--api_path={path}"], {})
