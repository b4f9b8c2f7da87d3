"""AnyCable-Go 1.6 files with the managed-Redis keys ([redis] sentinels / tls_*) and StatsD
([metrics.statsd]) load unchanged, and --print-config writes them back in that layout."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cableway.cli import load_effective_config, main

ANYCABLE_FILE = """
broadcast_adapters = ["http", "redis"]

[redis]
url = "rediss://mymaster/2"
sentinels = "127.0.0.1:26379,127.0.0.1:26380"
tls_verify = false
tls_ca_cert_path = "/etc/ssl/redis-ca.pem"
tls_client_cert_path = "/etc/ssl/client.pem"
tls_client_key_path = "/etc/ssl/client.key"

[metrics]
rotate_interval = 15

[metrics.statsd]
host = "127.0.0.1:8125"
prefix = "cable."
max_packet_size = 1200
tags_format = "influxdb"
"""


def test_managed_redis_and_statsd_keys_load_from_anycable_sections(tmp_path: Path) -> None:
    path = tmp_path / "anycable.toml"
    path.write_text(ANYCABLE_FILE, encoding="utf-8")
    config, warnings, _ = load_effective_config([f"--config-path={path}"], {})
    assert config.redis_sentinels == "127.0.0.1:26379,127.0.0.1:26380"
    assert config.redis_tls_verify is False
    assert config.redis_tls_ca_cert_path == "/etc/ssl/redis-ca.pem"
    assert config.redis_tls_client_cert_path == "/etc/ssl/client.pem"
    assert config.redis_tls_client_key_path == "/etc/ssl/client.key"
    assert config.statsd_host == "127.0.0.1:8125"
    assert config.statsd_prefix == "cable."
    assert config.statsd_max_packet_size == 1200
    assert config.statsd_tags_format == "influxdb"
    assert not any("not supported" in warning for warning in warnings)


def test_print_config_writes_them_in_anycable_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--statsd_host=127.0.0.1:8125", "--statsd_tags_format=graphite"]
    assert main(["--print-config", *flags], env={}) == 0
    printed = capsys.readouterr().out
    document = tomllib.loads(printed)
    assert document["metrics"]["statsd"]["host"] == "127.0.0.1:8125"
    assert document["metrics"]["statsd"]["tags_format"] == "graphite"
    assert document["redis"]["tls_verify"] is True
    assert "statsd_host" not in document
    path = tmp_path / "anycable.toml"
    path.write_text(printed, encoding="utf-8")
    reloaded, _, _ = load_effective_config([f"--config-path={path}"], {})
    again, _, _ = load_effective_config(flags, {})
    assert reloaded == again
