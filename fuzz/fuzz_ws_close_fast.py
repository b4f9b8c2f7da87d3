# Invariant: fast_close_reply answers a client close exactly as wsproto would, or defers.
"""Fuzz the client-close fast path (``cableway.transport.ws.fast_close_reply``) against
wsproto, the path it stands in for.

Each input's first byte picks where the frame starts (0-7 bytes of other data in front
of it, as after whole frames the session has already read); the rest is the bytes read.
When the fast path answers, wsproto (a server connection fed the frame from that
offset) must yield a close first, its reply (``event.response()``) must be the fast
path's bytes, and the connection must be ``CLOSED`` afterwards (the state of the shared
``_CLOSED`` connection the session keeps). When the fast path defers, nothing is
checked: wsproto decides, as before.

Run: ``python fuzz/fuzz_ws_close_fast.py -runs=100000 fuzz/corpus/ws_close_fast/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import CloseConnection

from cableway.transport.ws import _CLOSED, fast_close_reply


def test_one_input(data: bytes) -> None:
    if not data:
        return
    offset = data[0] % 8
    stream = bytes(offset) + data[1:]
    reply = fast_close_reply(stream, offset)
    if reply is None:
        return
    ws = Connection(ConnectionType.SERVER)
    ws.receive_data(stream[offset:])
    event = next(iter(ws.events()))
    assert isinstance(event, CloseConnection), event
    assert ws.state is ConnectionState.REMOTE_CLOSING
    assert bytes(ws.send(event.response())) == reply, (reply, event)
    assert ws.state is ConnectionState.CLOSED
    assert _CLOSED.state is ConnectionState.CLOSED


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway", "wsproto"])
