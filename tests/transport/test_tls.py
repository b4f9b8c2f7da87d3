"""TLS on the listeners (``--ssl_cert``, ``--ssl_key``): wss:// and https:// over real sockets.

Certificates are made at test time with trustme; the client trusts the test CA only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
import trio.testing
import trustme
from cryptography.hazmat.primitives import serialization
from trio_websocket import WebSocketConnection, open_websocket_url

from cableway.auth.jwt import encode_token
from cableway.config import Config, ConfigError, StartupError, load_config
from cableway.transport.server import Server

from ..integration.helpers import (
    BROADCAST_KEY,
    JWT_KEY,
    HttpResponse,
    SseClient,
    close_code,
    config,
    recv_json,
    subscribe,
    turbo_identifier,
    welcome,
)
from ..integration.test_slow_clients import RawClient


@dataclass(frozen=True)
class TlsFiles:
    ca: trustme.CA
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def write_pair(directory: Path, name: str, ca: trustme.CA) -> tuple[Path, Path]:
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    return cert, key


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    ca = trustme.CA()
    cert, key = write_pair(tmp_path_factory.mktemp("tls"), "server", ca)
    return TlsFiles(ca, cert, key)


def tls_config(files: TlsFiles, **changes: Any) -> Config:
    return config(ssl_cert=str(files.cert), ssl_key=str(files.key), **changes)


@asynccontextmanager
async def running(cfg: Config) -> AsyncIterator[Server]:
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(
            lambda task_status: Server(cfg).run(handle_signals=False, task_status=task_status)
        )
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def wss(
    server: Server, files: TlsFiles, query: str = ""
) -> AsyncIterator[WebSocketConnection]:
    url = f"wss://127.0.0.1:{server.main_port}/cable{query}"
    async with open_websocket_url(
        url, ssl_context=files.client_context(), subprotocols=["actioncable-v1-json"]
    ) as ws:
        try:
            yield ws
        finally:
            await ws._stream.aclose()


async def tls_stream(port: int, files: TlsFiles) -> trio.SSLStream[trio.SocketStream]:
    stream = await trio.open_ssl_over_tcp_stream(
        "127.0.0.1", port, ssl_context=files.client_context(), https_compatible=True
    )
    await stream.do_handshake()
    return stream


async def https(
    port: int,
    files: TlsFiles,
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
) -> HttpResponse:
    """One HTTP/1.1 request over a fresh TLS connection."""
    with trio.fail_after(5):
        stream = await tls_stream(port, files)
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            hdrs = [("host", f"127.0.0.1:{port}"), ("content-length", str(len(body)))]
            request = h11.Request(method=method, target=path, headers=[*hdrs, *(headers or [])])
            await stream.send_all(conn.send(request) + conn.send(h11.Data(data=body)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            return await read_response(stream, conn)


async def read_response(stream: trio.abc.Stream, conn: h11.Connection) -> HttpResponse:
    response: h11.Response | None = None
    chunks: list[bytes] = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    assert response is not None
    return HttpResponse(
        response.status_code,
        {k.decode(): v.decode() for k, v in response.headers},
        b"".join(chunks),
    )


async def broadcast(server: Server, files: TlsFiles, payload: object) -> HttpResponse:
    return await https(
        server.broadcast_port,
        files,
        "POST",
        server.config.http_broadcast_path,
        json.dumps(payload).encode(),
        [("authorization", f"Bearer {BROADCAST_KEY}"), ("content-type", "application/json")],
    )


# --- WebSocket over TLS ----------------------------------------------------------------------


async def test_wss_subscribe_and_https_broadcast_on_the_main_port(tls_files: TlsFiles) -> None:
    async with running(tls_config(tls_files)) as server:
        assert server.broadcast_port == server.main_port  # a broadcast key: the shared port
        token = encode_token({"user": "u1"}, JWT_KEY)
        async with wss(server, tls_files, f"?jid={token}") as ws:
            await welcome(ws)
            identifier = turbo_identifier("chat")
            assert (await subscribe(ws, identifier))["type"] == "confirm_subscription"
            html = "<turbo-stream action='append'><template>hi</template></turbo-stream>"
            answer = await broadcast(
                server, tls_files, {"stream": "chat", "data": json.dumps(html)}
            )
            assert answer.status == 201
            assert await recv_json(ws) == {"identifier": identifier, "message": html}


async def test_a_batch_and_a_large_message_arrive_whole_to_many_tls_subscribers(
    tls_files: TlsFiles,
) -> None:
    """More than one TLS record per write (a 200 kB message) and a batch of publications
    coalesced into one write: every subscriber gets every frame, whole and in order."""
    async with running(tls_config(tls_files, public_streams=True)) as server:
        token = encode_token({"user": "u1"}, JWT_KEY)
        identifier = turbo_identifier("room")
        async with (
            wss(server, tls_files, f"?jid={token}") as first,
            wss(server, tls_files, f"?jid={token}") as second,
            wss(server, tls_files, f"?jid={token}") as third,
        ):
            clients = [first, second, third]
            for ws in clients:
                await welcome(ws)
                assert (await subscribe(ws, identifier))["type"] == "confirm_subscription"
            big = "x" * 200_000
            batch = [{"stream": "room", "data": json.dumps(f"m{i}")} for i in range(20)]
            assert (
                await broadcast(
                    server, tls_files, [*batch, {"stream": "room", "data": json.dumps(big)}]
                )
            ).status == 201
            for ws in clients:
                got = [(await recv_json(ws))["message"] for _ in range(21)]
                assert got == [f"m{i}" for i in range(20)] + [big]


async def test_refusals_over_tls_are_the_plain_text_ones(tls_files: TlsFiles) -> None:
    async with running(tls_config(tls_files, enforce_jwt=True)) as server:
        # no token: the Action Cable refusal, then the close
        async with wss(server, tls_files) as ws:
            assert await recv_json(ws) == {
                "type": "disconnect",
                "reason": "unauthorized",
                "reconnect": False,
            }
            assert await close_code(ws) == 1000
        port = server.main_port
        missing = await https(port, tls_files, "GET", "/nowhere")
        assert (missing.status, missing.body) == (404, b"404 page not found")
        unauthorized = await https(
            port, tls_files, "POST", server.config.http_broadcast_path, b"{}"
        )
        assert unauthorized.status == 401
        # a request that is not HTTP: 400, over TLS
        with trio.fail_after(5):
            stream = await tls_stream(port, tls_files)
            async with stream:
                await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
                answer = await read_response(stream, h11.Connection(h11.CLIENT))
        assert answer.status == 400


# --- HTTP over TLS: health, metrics, SSE -----------------------------------------------------


async def test_health_and_metrics_over_https_keep_the_connection_alive(
    tls_files: TlsFiles,
) -> None:
    async with running(tls_config(tls_files, metrics_http="/metrics")) as server:
        with trio.fail_after(5):
            stream = await tls_stream(server.main_port, tls_files)
            async with stream:
                conn = h11.Connection(h11.CLIENT)
                host = [("host", "127.0.0.1")]
                for target in ("/health", "/metrics"):
                    await stream.send_all(
                        conn.send(h11.Request(method="GET", target=target, headers=host))
                        + conn.send(h11.EndOfMessage())
                    )
                    answer = await read_response(stream, conn)
                    assert answer.status == 200, target
                    conn.start_next_cycle()  # the same TLS connection serves the next one
                assert b"cableway_" in answer.body or b"clients_num" in answer.body


async def test_sse_over_https(tls_files: TlsFiles) -> None:
    cfg = tls_config(tls_files, broker="memory", public_streams=True)
    async with running(cfg) as server:
        with trio.fail_after(5):
            stream = await tls_stream(server.main_port, tls_files)
        async with stream:
            client = SseClient(stream)  # type: ignore[arg-type]
            request = h11.Request(
                method="GET", target="/events?stream=news", headers=[("host", "127.0.0.1")]
            )
            await stream.send_all(client.conn.send(request) + client.conn.send(h11.EndOfMessage()))
            await client.start()
            assert client.status == 200
            assert client.headers["content-type"] == "text/event-stream; charset=utf-8"
            welcome_event = await client.event()
            assert welcome_event is not None
            assert welcome_event["event"] == "welcome"
            confirm = await client.event()
            assert confirm is not None
            assert json.loads(confirm["data"])["type"] == "confirm_subscription"
            answer = await broadcast(server, tls_files, {"stream": "news", "data": '{"n":1}'})
            assert answer.status == 201
            message = await client.event()
            assert message is not None
            assert message["data"] == '{"n":1}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_separate_broadcast_and_metrics_ports_speak_tls_too(tls_files: TlsFiles) -> None:
    """As AnyCable-Go: every listener of the node serves the same certificate."""
    cfg = tls_config(
        tls_files,
        http_broadcast_port=free_port(),
        metrics_http="/metrics",
        metrics_port=free_port(),
    )
    async with running(cfg) as server:
        assert len({server.main_port, server.broadcast_port, server.metrics_port}) == 3
        answer = await broadcast(server, tls_files, {"stream": "s", "data": "1"})
        assert answer.status == 201
        metrics = await https(server.metrics_port, tls_files, "GET", "/metrics")
        assert metrics.status == 200
        assert b"broadcast_msg_total" in metrics.body


# --- what is not TLS never hurts the server --------------------------------------------------


async def test_plain_http_to_the_tls_port_is_told_so_and_the_server_goes_on(
    tls_files: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cableway")
    async with running(tls_config(tls_files)) as server:
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream("127.0.0.1", server.main_port)
            async with stream:
                await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = await read_response(stream, h11.Connection(h11.CLIENT))
        assert answer.status == 400
        assert answer.headers["connection"] == "close"
        assert answer.body == b"Client sent an HTTP request to an HTTPS server.\n"
        assert (await https(server.main_port, tls_files, "GET", "/health")).status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert any("plain HTTP request on the TLS port" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x00\x05hello",  # a handshake record that is no ClientHello
        b"\x16\x03\x01\xff\xff" + b"\x00" * 300,  # a record longer than it is
        b"\x00\x01\x02\x03" * 64,  # not TLS at all
        b"\x16",  # one byte, then EOF
    ],
)
async def test_garbage_and_failed_handshakes_close_quietly(
    tls_files: TlsFiles, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    caplog.set_level(logging.DEBUG, logger="cableway")
    async with running(tls_config(tls_files)) as server:
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream("127.0.0.1", server.main_port)
            async with stream:
                # the server may close (even reset) before all of it is sent
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(garbage)
                    await stream.send_eof()
                    while await stream.receive_some(65536):
                        pass  # the server's alert (if any), then EOF
        assert (await https(server.main_port, tls_files, "GET", "/health")).status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


async def test_a_client_that_does_not_trust_the_certificate_does_not_hurt(
    tls_files: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cableway")
    async with running(tls_config(tls_files)) as server:
        with trio.fail_after(5):
            stream = await trio.open_ssl_over_tcp_stream(
                "127.0.0.1", server.main_port, ssl_context=ssl.create_default_context()
            )
            async with stream:
                with pytest.raises(trio.BrokenResourceError):
                    await stream.do_handshake()
        assert (await https(server.main_port, tls_files, "GET", "/health")).status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert any("TLS handshake from" in r.getMessage() for r in caplog.records)


async def test_the_tls_handshake_is_under_the_handshake_timeout(
    tls_files: TlsFiles, autojump_clock: trio.testing.MockClock
) -> None:
    """A client that connects and never completes its handshake is closed after
    --handshake_timeout (virtual time), and only its connection is."""
    async with running(tls_config(tls_files, handshake_timeout=3.0)) as server:
        silent = await trio.open_tcp_stream("127.0.0.1", server.main_port)
        half = await trio.open_tcp_stream("127.0.0.1", server.main_port)
        async with silent, half:
            await half.send_all(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello that stops
            start = trio.current_time()
            with trio.fail_after(60):
                assert await silent.receive_some(100) == b""
                while await half.receive_some(100):
                    pass
            assert 3.0 <= trio.current_time() - start < 4.0


# --- start-up errors -------------------------------------------------------------------------


@pytest.fixture
def bad_files(tmp_path: Path, tls_files: TlsFiles) -> dict[str, Path]:
    other_cert, other_key = write_pair(tmp_path, "other", trustme.CA())
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    encrypted = tmp_path / "encrypted.key"
    key = serialization.load_pem_private_key(tls_files.key.read_bytes(), None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    return {
        "other_key": other_key,
        "other_cert": other_cert,
        "not_pem": not_pem,
        "encrypted": encrypted,
        "missing": tmp_path / "missing.pem",
    }


@pytest.mark.parametrize(
    ("cert", "key", "fragments"),
    [
        ("missing", None, ["(--ssl_cert)", "No such file"]),
        (None, "missing", ["(--ssl_key)", "No such file"]),
        ("not_pem", None, ["(--ssl_cert)", "is not a PEM certificate"]),
        (None, "not_pem", ["(--ssl_key)", "cannot load the private key"]),
        (None, "other_key", ["(--ssl_key) does not belong to the certificate", "(--ssl_cert)"]),
        (None, "encrypted", ["(--ssl_key) is encrypted"]),
    ],
)
async def test_unusable_tls_files_stop_the_start_naming_the_option(
    tls_files: TlsFiles,
    bad_files: dict[str, Path],
    cert: str | None,
    key: str | None,
    fragments: list[str],
) -> None:
    cfg = config(
        ssl_cert=str(bad_files[cert] if cert else tls_files.cert),
        ssl_key=str(bad_files[key] if key else tls_files.key),
    )
    with pytest.raises(StartupError) as caught:
        await Server(cfg).run(handle_signals=False)
    for fragment in fragments:
        assert fragment in caught.value.message


def test_a_key_that_does_not_match_is_one_error_line_naming_both_options(
    tls_files: TlsFiles, bad_files: dict[str, Path]
) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ANYCABLE_")}
    environment.pop("PORT", None)
    done = subprocess.run(
        [sys.executable, "-m", "cableway", "--host=127.0.0.1", f"--port={free_port()}", "--noauth"],
        env={
            **environment,
            "ANYCABLE_SSL_CERT": str(tls_files.cert),
            "ANYCABLE_SSL_KEY": str(bad_files["other_key"]),
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("cableway: error: ")]
    assert errors == [
        f"cableway: error: the private key {str(bad_files['other_key'])!r} (--ssl_key) does not "
        f"belong to the certificate {str(tls_files.cert)!r} (--ssl_cert)"
    ]


@pytest.mark.parametrize(
    ("argv", "env", "toml", "expected"),
    [
        (["--ssl_cert=/c.pem", "--ssl_key=/k.pem"], {}, None, ("/c.pem", "/k.pem")),
        (
            [],
            {"ANYCABLE_SSL_CERT": "/c.pem", "ANYCABLE_SSL_KEY": "/k.pem"},
            None,
            ("/c.pem", "/k.pem"),
        ),
        (
            [],
            {},
            {"server": {"ssl": {"cert_path": "/c.pem", "key_path": "/k.pem"}}},
            ("/c.pem", "/k.pem"),
        ),
        ([], {}, None, ("", "")),
    ],
)
def test_the_tls_options_come_from_flags_environment_and_anycable_toml(
    argv: list[str], env: dict[str, str], toml: dict[str, object] | None, expected: tuple[str, str]
) -> None:
    cfg = load_config(argv, env, file_values=toml)
    assert (cfg.ssl_cert, cfg.ssl_key) == expected


@pytest.mark.parametrize(
    ("argv", "named"),
    [(["--ssl_cert=/c.pem"], "--ssl_cert"), (["--ssl_key=/k.pem"], "--ssl_key")],
)
def test_one_tls_file_without_the_other_is_refused(argv: list[str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(argv, {})
    assert str(caught.value).startswith("invalid value '/")
    assert f"for {named}: TLS needs both --ssl_cert and --ssl_key" in str(caught.value)


# --- the write path of TLS sessions ----------------------------------------------------------


async def tls_raw_client(server: Server, files: TlsFiles, stream: str) -> RawClient:
    """A raw WebSocket client (every byte parsed, frame by frame) over TLS, subscribed."""
    sock = await tls_stream(server.main_port, files)
    await sock.send_all(
        b"GET /cable HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
    )
    client = RawClient(sock)  # type: ignore[arg-type]
    head = bytearray()
    while b"\r\n\r\n" not in head:
        data = await sock.receive_some(65536)
        assert data
        head += data
    status, _, rest = bytes(head).partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 101")
    client.buf += rest
    await client.receive_until(lambda m: m.get("type") == "welcome")
    command = {"command": "subscribe", "identifier": turbo_identifier(stream)}
    await client.send_text(json.dumps(command))
    await client.receive_until(lambda m: m.get("type") == "confirm_subscription")
    client.messages.clear()
    return client


def batch(count: int, first: int) -> list[dict[str, str]]:
    return [
        {"stream": "burst", "data": json.dumps([first + i, "x" * 60_000])} for i in range(count)
    ]


async def test_a_tls_reader_that_stops_is_dropped_with_whole_frames_and_the_others_get_all(
    tls_files: TlsFiles,
) -> None:
    """As over plain text (tests/integration/test_slow_clients.py): the TLS subscriber that
    stops reading is dropped as ``too_slow`` once its kernel buffer is full and its
    backlog is past ``ws_max_pending_size``; it then reads whole frames, the ``disconnect``
    message and the close (the ciphertext in flight is finished first); the readers get
    everything."""
    async with running(tls_config(tls_files, ws_max_pending_size=256 * 1024)) as server:
        readers = [await tls_raw_client(server, tls_files, "burst") for _ in range(2)]
        stalled = await tls_raw_client(server, tls_files, "burst")
        sent = 0

        async def read_all(client: RawClient, done: trio.Event) -> None:
            while not (done.is_set() and len(client.data()) >= sent):
                assert await client.receive_some(), "dropped"

        with trio.fail_after(30):
            finished = trio.Event()
            async with trio.open_nursery() as nursery:
                for client in readers:
                    nursery.start_soon(read_all, client, finished)
                while not server.metrics.value("disconnected_slow_clients_total"):
                    assert sent < 400, "the stalled client was never dropped"
                    assert (await broadcast(server, tls_files, batch(6, sent))).status == 201
                    sent += 6
                for _ in range(3):
                    assert (await broadcast(server, tls_files, batch(6, sent))).status == 201
                    sent += 6
                finished.set()
            await stalled.read_to_the_end()
        assert server.metrics.value("disconnected_slow_clients_total") == 1
        for client in readers:
            assert client.data() == list(range(sent))
        got = stalled.data()
        assert got == list(range(len(got)))
        assert len(got) < sent
        assert stalled.messages[-1] == {
            "type": "disconnect",
            "reason": "too_slow",
            "reconnect": True,
        }
        assert stalled.closed_with == 1000
        for client in [*readers, stalled]:
            await client.sock.aclose()


async def test_a_tls_socket_that_takes_nothing_ends_the_session_after_the_write_timeout(
    tls_files: TlsFiles,
) -> None:
    """A broadcast larger than the kernel takes, to a TLS client that never reads: the
    session waits ``ws_write_timeout`` for the socket, then ends (the ciphertext left
    behind is never followed by anything)."""
    cfg = tls_config(tls_files, ws_write_timeout=0.5, ws_max_pending_size=64 << 20)
    async with running(cfg) as server:
        stalled = await tls_raw_client(server, tls_files, "burst")
        (session,) = server.sessions
        with trio.fail_after(30):
            for first in range(0, 80, 4):  # 4.8 MB, more than the kernel buffers take
                assert (await broadcast(server, tls_files, batch(4, first))).status == 201
            await session.wait_closed()
        assert server.metrics.value("timeout_server_msg_total") == 1
        assert not server.sessions
        await stalled.sock.aclose()


async def test_graceful_shutdown_tells_tls_clients_and_cancels_handshakes(
    tls_files: TlsFiles,
) -> None:
    """Shutdown sends a TLS WebSocket client ``server_restart`` and the 1001 close, as in
    plain text, and a connection still in its TLS handshake does not hold it up."""
    cfg = tls_config(tls_files, shutdown_timeout=5.0, handshake_timeout=60.0)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server: Server = await nursery.start(
                lambda task_status: Server(cfg).run(handle_signals=False, task_status=task_status)
            )
            silent = await trio.open_tcp_stream("127.0.0.1", server.main_port)
            await silent.send_all(b"\x16\x03\x01")  # a handshake that never completes
            token = encode_token({"user": "u1"}, JWT_KEY)
            async with wss(server, tls_files, f"?jid={token}") as ws:
                await welcome(ws)
                server.shutdown()
                assert await recv_json(ws) == {
                    "type": "disconnect",
                    "reason": "server_restart",
                    "reconnect": True,
                }
                assert await close_code(ws) == 1001
            assert await silent.receive_some(100) == b""  # closed by the shutdown
            await silent.aclose()
