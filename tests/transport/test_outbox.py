"""The outbox on a real socket pair: what the kernel takes in part is finished first.

Chunks pushed are runs of whole frames; after any number of partial writes, dropping the
unstarted output leaves exactly the rest of the chunk on the wire, so what the peer
reads in the end is a run of whole chunks.
"""

from __future__ import annotations

import contextlib
import socket

import pytest

from cableway.transport.outbox import Outbox


def _chunks(count: int) -> list[bytes]:
    return [bytes([65 + i % 26]) * (7_000 + 911 * i) for i in range(count)]


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return out
        if not data:
            return out
        out += data


@pytest.mark.parametrize("reads", [0, 1, 3])
def test_dropping_keeps_only_the_rest_of_the_chunk_in_flight(reads: int) -> None:
    a, b = _pair()
    with a, b:
        chunks = _chunks(40)
        outbox = Outbox(max_bytes=10_000)
        for chunk in chunks:
            outbox.push(chunk)
        received = b""
        for _ in range(reads + 1):
            for _ in range(100):  # pragma: no branch - bounded: until the kernel is full
                try:
                    outbox.write_to(a.fileno())
                except BlockingIOError:
                    break
            received += _read_all(b)
        assert outbox.size == sum(map(len, chunks)) - len(received)
        assert outbox.started, "the kernel took a whole number of chunks: no partial write"
        assert outbox.backlog == outbox.size - outbox.started
        assert outbox.over
        outbox.drop_unstarted()
        assert outbox.size == outbox.started
        assert not outbox.backlog
        # the rest of the chunk in flight, then a marker (a disconnect, a close frame)
        outbox.push(b"<end>")
        for _ in range(1000):  # pragma: no branch - bounded
            if not outbox.size:
                break
            with contextlib.suppress(BlockingIOError):
                outbox.write_to(a.fileno())
            received += _read_all(b)
        received += _read_all(b)
        assert received.endswith(b"<end>")
        body = received[: -len(b"<end>")]
        # a run of whole chunks, in order
        assert body == b"".join(chunks[: len(_split(body, chunks))])


def _split(body: bytes, chunks: list[bytes]) -> list[bytes]:
    out, at = [], 0
    for chunk in chunks:
        if at >= len(body):
            break
        assert body[at : at + len(chunk)] == chunk, "a chunk cut short"
        out.append(chunk)
        at += len(chunk)
    assert at == len(body)
    return out


def test_a_push_is_never_refused_and_the_bound_is_on_the_backlog() -> None:
    outbox = Outbox(max_bytes=100)
    outbox.push(b"x" * 1000)  # one push past the bound: queued whole
    assert outbox.size == 1000
    assert outbox.over
    outbox.push_started(b"")  # nothing
    assert outbox.take_nowait() == b"x" * 1000
    assert not outbox.size
    assert not outbox.over
    outbox.close()
    outbox.push(b"late")
    assert not outbox.size
