"""``rediss://`` against a real redis-server speaking TLS on 127.0.0.1 (AnyCable-Go's
``--redis_tls_verify``, ``--redis_tls_ca_cert_path``, ``--redis_tls_client_cert_path``,
``--redis_tls_client_key_path``). Certificates are made at test time with trustme."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import trio
import trustme

from cableway.config import load_config
from cableway.transport.redis import RedisConnection, RedisConnectionError, RedisTls
from cableway.transport.sentinel import connect, redis_target

from ..integration.helpers import cable, config, recv_json, running, subscribe, welcome
from .managed import TlsFiles, tls_redis
from .test_scaleout import PUBSUB_ID, pub, ready, until


def tls_config(port: int, files: TlsFiles, *flags: str) -> list[str]:
    return [
        f"--redis_url=rediss://127.0.0.1:{port}",
        f"--redis_tls_ca_cert_path={files.ca_path}",
        f"--redis_tls_client_cert_path={files.client_cert}",
        f"--redis_tls_client_key_path={files.client_key}",
        *flags,
    ]


async def ping(argv: list[str]) -> object:
    connection = await connect(redis_target(load_config(argv, {})))
    try:
        return await connection.execute("PING")
    finally:
        await connection.aclose()


async def test_broadcasts_arrive_through_redis_over_mutual_tls(tmp_path: Path) -> None:
    with tls_redis(tmp_path, auth_clients=True) as (port, files):
        loaded = load_config(tls_config(port, files), {})
        node = config(
            broadcast_adapters=("redis",),
            public_streams=True,
            redis_url=loaded.redis_url,
            redis_tls_ca_cert_path=loaded.redis_tls_ca_cert_path,
            redis_tls_client_cert_path=loaded.redis_tls_client_cert_path,
            redis_tls_client_key_path=loaded.redis_tls_client_key_path,
        )
        async with running(node) as server:
            await until(lambda: ready(server), server)
            async with cable(server) as ws:
                await welcome(ws)
                assert (await subscribe(ws, PUBSUB_ID))["type"] == "confirm_subscription"
                publisher = await connect(redis_target(loaded))
                try:
                    await publisher.execute("PUBLISH", "__anycable__", json.dumps(pub("over tls")))
                finally:
                    await publisher.aclose()
                while "message" not in (message := await recv_json(ws)):
                    pass
                assert message["message"] == "over tls"
                assert message["identifier"] == PUBSUB_ID


async def test_server_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    with tls_redis(tmp_path, auth_clients=False) as (port, files):
        stranger = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(stranger))
        argv = [f"--redis_url=rediss://127.0.0.1:{port}", f"--redis_tls_ca_cert_path={stranger}"]
        with pytest.raises(RedisConnectionError, match="certificate verify failed"):
            await ping(argv)
        # the system's CAs do not know the test CA either (verify is on by default)
        with pytest.raises(RedisConnectionError, match="certificate verify failed"):
            await ping([f"--redis_url=rediss://127.0.0.1:{port}"])
        # --redis_tls_verify=false (AnyCable-Go's default): encrypted, unchecked
        assert await ping([*argv, "--redis_tls_verify=false"]) == b"PONG"
        # the right CA
        assert await ping([argv[0], f"--redis_tls_ca_cert_path={files.ca_path}"]) == b"PONG"


async def test_host_name_is_checked_against_the_certificate(tmp_path: Path) -> None:
    with tls_redis(tmp_path, auth_clients=False) as (port, files):
        # the certificate names 127.0.0.1, not localhost
        argv = [
            f"--redis_url=rediss://localhost:{port}",
            f"--redis_tls_ca_cert_path={files.ca_path}",
        ]
        url = redis_target(load_config(argv, {}))
        with pytest.raises(RedisConnectionError, match=r"certificate|match|mismatch"):
            await RedisConnection.open(url)


async def test_client_certificate_required_by_the_server(tmp_path: Path) -> None:
    with tls_redis(tmp_path, auth_clients=True) as (port, files):
        without = [
            f"--redis_url=rediss://127.0.0.1:{port}",
            f"--redis_tls_ca_cert_path={files.ca_path}",
        ]
        with pytest.raises(RedisConnectionError):
            await ping(without)
        assert await ping(tls_config(port, files)) == b"PONG"


async def test_unreadable_tls_files_are_a_failed_connect(tmp_path: Path) -> None:
    url = replace(
        redis_target(load_config(["--redis_url=rediss://127.0.0.1:1"], {})),
        tls_options=RedisTls(ca_cert_path=str(tmp_path / "missing.pem")),
    )
    with pytest.raises(RedisConnectionError, match="TLS files"):
        with trio.fail_after(5):
            await RedisConnection.open(url)
