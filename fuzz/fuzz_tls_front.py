# Invariant: whatever arrives on a TLS port, accepting it never raises, never logs above debug.
"""Fuzz the TLS front door: raw bytes into ``TlsDoor.accept`` (``--ssl_cert``/``--ssl_key``).

Each input is what a client sends on a TLS port, then EOF, over a real loopback socket pair:
a byte that is not a TLS handshake record (plain HTTP gets Go's ``400``), a ClientHello
whole, cut short or bent, a record longer than it is. Then:

* ``accept`` returns (never raises) and, since no input can finish a handshake (that needs
  the client's keys), returns ``None`` with the socket closed;
* nothing is logged above DEBUG (a TLS failure is a debug line, never an error);
* an input that starts with an ASCII letter is answered with the plain-text ``400`` and
  nothing else; any other input gets only TLS records (a ServerHello flight, an alert) or
  nothing at all.

The certificate is made by trustme at import time (the dev extra). Run:
``python fuzz/fuzz_tls_front.py -runs=20000 -max_len=2048 fuzz/corpus/tls_front/`` (needs
``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import logging
import socket
import ssl
import tempfile
from pathlib import Path

import trio
import trustme

from cableway.transport.tls import TlsDoor, server_context

_CA = trustme.CA()
_DIR = Path(tempfile.mkdtemp(prefix="cableway-fuzz-tls-"))
_LEAF = _CA.issue_cert("127.0.0.1", "localhost")
(_DIR / "cert.pem").write_bytes(b"".join(blob.bytes() for blob in _LEAF.cert_chain_pems))
_LEAF.private_key_pem.write_to_path(str(_DIR / "key.pem"))
CONTEXT: ssl.SSLContext = server_context(str(_DIR / "cert.pem"), str(_DIR / "key.pem"))
ANSWER = b"HTTP/1.1 400 Bad Request\r\n"


class Loud(logging.Handler):
    """Collects records above DEBUG from the TLS door: each one is a finding."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _serve(data: bytes) -> tuple[object, bytes]:
    server_sock, client_sock = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    client = trio.SocketStream(client_sock)
    door = TlsDoor(CONTEXT, handshake_timeout=5.0)
    received = bytearray()
    result: list[object] = []

    async def accept() -> None:
        result.append(await door.accept(trio.SocketStream(server_sock)))

    async def talk() -> None:
        try:
            if data:
                await client.send_all(data)
            await client.send_eof()
            while chunk := await client.receive_some(65536):
                received.extend(chunk)
        except trio.BrokenResourceError:
            pass  # the server closed (or reset) first

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept)
            nursery.start_soon(talk)
    await client.aclose()
    return result[0], bytes(received)


def test_one_input(data: bytes) -> None:
    loud = Loud()
    logger = logging.getLogger("cableway")
    logger.addHandler(loud)
    try:
        secure, received = trio.run(_serve, data)
    finally:
        logger.removeHandler(loud)
    assert secure is None, "a handshake completed without a client"
    assert not loud.records, [record.getMessage() for record in loud.records]
    if data[:1].isalpha():
        assert received.startswith(ANSWER), received[:80]
        assert received.endswith(b"Client sent an HTTP request to an HTTPS server.\n")
    else:
        assert not received or received[0] in (0x15, 0x16), received[:16]  # alert, handshake


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway"])
