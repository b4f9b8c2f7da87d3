"""Real clients over TLS (``--ssl_cert``, ``--ssl_key``): ``wss://`` and ``https://``.

* ``@rails/actioncable`` in Node (over ``ws``, which uses Node's TLS stack) subscribes over
  ``wss://`` and receives a broadcast POSTed over ``https://``; Node trusts the test CA through
  ``NODE_EXTRA_CA_CERTS`` (the client is not told to skip verification).
* Debian's headless Chromium loads ``cableway --demo`` from ``https://``: Turbo's
  ``<turbo-cable-stream-source>`` over ``wss://``, ``<turbo-stream-source>`` (SSE) and the form's
  POST over ``https://``. Chromium trusts the server's key through
  ``--ignore-certificate-errors-spki-list=<base64 SHA-256 of the leaf's SubjectPublicKeyInfo>``
  (only that key: every other certificate error still fails).

Certificates are made at test time with trustme (CA, then a leaf for 127.0.0.1/localhost).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .conftest import SERVER_ENV, CablewayServer, _attach_section, _cableway_command, _free_port

if TYPE_CHECKING:
    from .conftest import BrowserClient, NodeClient

pytestmark = pytest.mark.interop

STREAM = "Z2lkOi8vY2FibGV3YXkvUm9vbS8x:messages"
HTML = '<turbo-stream action="append" target="messages"><template>Hi</template></turbo-stream>'


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the test CA, PEM
    cert: Path  # the leaf chain, PEM
    key: Path
    spki_sha256: str  # what --ignore-certificate-errors-spki-list takes


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    directory = tmp_path_factory.mktemp("tls-interop")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    certificate = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    files = Certificates(
        ca=directory / "ca.pem",
        cert=directory / "server.crt",
        key=directory / "server.key",
        spki_sha256=base64.b64encode(hashlib.sha256(spki).digest()).decode(),
    )
    ca.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(files.key))
    return files


class TlsServer(CablewayServer):
    """A Cableway server whose every URL is https:// / wss://; this process (urllib) trusts
    the test CA through ``SSL_CERT_FILE``."""

    @property
    def http_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ws_url(self, token: str | None = None) -> str:
        url = f"wss://127.0.0.1:{self.port}/cable"
        return url if token is None else f"{url}?jid={token}"


@pytest.fixture
def tls_server(
    request: pytest.FixtureRequest, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., TlsServer]]:
    if os.environ.get(SERVER_ENV, "").strip():
        pytest.skip(f"the TLS files are Cableway's flags here ({SERVER_ENV} runs another server)")
    # urllib (health checks, broadcasts) and every Node client started from here trust the CA
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca))
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", str(certificates.ca))
    servers: list[TlsServer] = []

    def start(*flags: str) -> TlsServer:
        port = _free_port()
        jwt_secret, turbo_secret, key = (secrets.token_hex(16) for _ in range(3))
        argv = [
            *_cableway_command(),
            "--host", "127.0.0.1",
            "--port", str(port),
            f"--ssl_cert={certificates.cert}",
            f"--ssl_key={certificates.key}",
            *(
                flag.format(jwt=jwt_secret, turbo=turbo_secret, key=key, port=port)
                for flag in flags
            ),
        ]  # fmt: skip
        server = TlsServer(port, jwt_secret, turbo_secret, key, argv)
        _attach_section(request, f"cableway TLS server (port {port})", server.describe)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def test_rails_actioncable_in_node_over_wss(
    tls_server: Callable[..., TlsServer], rails_client: Callable[..., NodeClient]
) -> None:
    # Relies on: the consumer (ws over Node's TLS) verifies the certificate against its CAs,
    # NODE_EXTRA_CA_CERTS included, then speaks the same protocol as over ws://.
    server = tls_server(
        "--jwt_secret={jwt}",
        "--turbo_streams",
        "--turbo_streams_secret={turbo}",
        "--broadcast_key={key}",
        "--http_broadcast_port={port}",
    )
    params = {
        "channel": "Turbo::StreamsChannel",
        "signed_stream_name": server.signed_turbo_stream(STREAM),
    }
    token = server.token({"user_id": 42}, exp=int(time.time()) + 300)
    client = rails_client(
        url=server.ws_url(token), subscriptions=[{"name": "turbo", "params": params}]
    )
    client.wait_for("connected", name="turbo")
    opened = client.wait_for("socket_open")
    assert opened["protocol"] == "actioncable-v1-json"
    [created] = client.find("socket_created")
    assert created["url"].startswith(f"wss://127.0.0.1:{server.port}/cable")

    assert server.broadcast(STREAM, json.dumps(HTML)) == 201  # over https://
    received = client.wait_for("received", name="turbo")
    assert received["message"] == HTML
    assert server.error_lines() == []


def test_chromium_runs_the_demo_over_https_and_wss(
    tls_server: Callable[..., TlsServer],
    browser: Callable[..., BrowserClient],
    certificates: Certificates,
) -> None:
    # Client behaviours relied on: Action Cable makes the relative /cable URL wss:// on an
    # https:// page; EventSource and fetch() use the page's origin; Chromium accepts the
    # certificate only because its key is in the SPKI list (a test CA is not trusted).
    server = tls_server("--demo")
    server.read_demo_banner()
    origin = server.http_url
    client = browser(args=[f"--ignore-certificate-errors-spki-list={certificates.spki_sha256}"])
    assert client.call("goto", url=f"{origin}/")["status"] == 200
    client.call("wait_selector", selector="turbo-cable-stream-source[connected]")
    client.wait_event(
        lambda ev: (
            ev.get("event") == "response"
            and f"{origin}/events?" in str(ev.get("url"))
            and ev.get("status") == 200
        ),
        what="the SSE stream's 200",
    )
    message = "Hello over TLS"
    client.call("fill", selector="#demo-form input[name=text]", value=message)
    client.call("click", selector="#demo-form button[type=submit]")
    for pane in ("websocket", "sse"):
        client.call("wait_text", selector=f"#{pane}-messages", text=message)
    client.call("wait_text", selector="#demo-status", text="201")
    [post] = [ev for ev in client.requests() if ev["method"] == "POST"]
    assert post["url"] == f"{origin}/_broadcast"
    assert [ev["url"] for ev in client.find("websocket")] == [
        f"wss://127.0.0.1:{server.port}/cable"
    ]
    assert server.demo_curl.startswith(f"curl -sS -X POST {origin}/_broadcast ")
    assert client.problems() == []
    assert server.error_lines() == []
