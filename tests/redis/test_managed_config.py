"""The managed-Redis options as AnyCable-Go 1.6 names them, resolved into where the adapters
connect (no Redis needed)."""

from __future__ import annotations

import pytest

from cableway.config import ConfigError, config_toml, load_config, load_config_with_warnings
from cableway.transport.redis import RedisTls
from cableway.transport.sentinel import redis_target


def test_environment_names_and_defaults() -> None:
    defaults = load_config([], {})
    assert defaults.redis_sentinels == ""
    assert defaults.redis_tls_verify is True  # Cableway's default (AnyCable-Go: false)
    assert redis_target(defaults).sentinels == ()
    loaded = load_config(
        [],
        {
            "ANYCABLE_REDIS_URL": "rediss://:data@mymaster/5",
            "ANYCABLE_REDIS_SENTINELS": ":s3cret@10.0.0.1:26380, 10.0.0.2",
            "ANYCABLE_REDIS_SENTINEL_DISCOVERY_INTERVAL": "10",
            "ANYCABLE_REDIS_TLS_VERIFY": "false",
            "ANYCABLE_REDIS_TLS_CA_CERT_PATH": "/etc/ca.pem",
            "ANYCABLE_REDIS_TLS_CLIENT_CERT_PATH": "/etc/client.pem",
            "ANYCABLE_REDIS_TLS_CLIENT_KEY_PATH": "/etc/client.key",
        },
    )
    target = redis_target(loaded)
    assert (target.host, target.db, target.password, target.tls) == ("mymaster", 5, "data", True)
    first, second = target.sentinels
    assert (first.host, first.port, first.password) == ("10.0.0.1", 26380, "s3cret")
    assert (second.host, second.port, second.password) == ("10.0.0.2", 26379, None)
    assert target.tls_options == RedisTls(
        verify=False,
        ca_cert_path="/etc/ca.pem",
        client_cert_path="/etc/client.pem",
        client_key_path="/etc/client.key",
    )
    assert loaded.redis_sentinel_discovery_interval == 10


def test_a_rediss_sentinel_asks_for_tls_to_the_master_as_in_anycable() -> None:
    loaded = load_config(
        ["--redis_url=redis://mymaster", "--redis_sentinels=rediss://10.0.0.1:26379"], {}
    )
    assert redis_target(loaded).tls is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--redis_sentinels=http://10.0.0.1:26379"], "--redis_sentinels"),
        (["--redis_sentinels=10.0.0.1:port"], "invalid port"),
        (["--redis_sentinels=10.0.0.1:26379/0"], "--redis_sentinels"),
        (["--redis_tls_client_cert_path=/c.pem"], "mutual TLS needs both"),
        (["--redis_tls_client_key_path=/c.key"], "mutual TLS needs both"),
        (["--redis_tls_verify=maybe"], "--redis_tls_verify"),
    ],
)
def test_invalid_values_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(argv, {})


def test_tls_options_without_rediss_warn() -> None:
    _, warnings = load_config_with_warnings(["--redis_tls_ca_cert_path=/ca.pem"], {})
    assert any("--redis_tls_ca_cert_path has no effect" in warning for warning in warnings)
    _, warnings = load_config_with_warnings(
        ["--redis_url=rediss://h", "--redis_tls_ca_cert_path=/ca.pem"], {}
    )
    assert warnings == ()


def test_sentinel_passwords_are_redacted() -> None:
    loaded = load_config(
        ["--redis_sentinels=:pw-one@10.0.0.1:26379,redis://user:pw-two@10.0.0.2:26379"], {}
    )
    for text in (repr(loaded), config_toml(loaded)):
        assert "pw-one" not in text
        assert "pw-two" not in text
        assert "10.0.0.2:26379" in text
