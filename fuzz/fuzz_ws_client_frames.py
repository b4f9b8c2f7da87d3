"""Fuzz the client-frame fast parser (:func:`cableway.protocol.wsframe.parse_client_frame`)
against wsproto, without a server or an event loop.

Invariant: from offset 0, the parser either declines (``None``: the driver hands the rest
to wsproto) or returns a message and an offset that moves forward, within the input.
Every frame it accepts is one wsproto reads the same way: fed those bytes alone, a server
wsproto connection yields exactly one finished text or binary message with the same data
(text as ``str``, binary as ``bytes``), no larger than the message limit. Nothing may
escape but ``None``.

The input is the raw byte stream a client sends after the upgrade (the ``ws_frames``
seeds are the same kind of input; a leading ``FF FF`` is just two more bytes here).

Run: ``python fuzz/fuzz_ws_client_frames.py -runs=200000 -max_len=4096
fuzz/corpus/ws_client_frames/`` (needs ``pip install atheris``); ``tests/test_fuzz_corpus.py``
replays the corpus.
"""

from __future__ import annotations

from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, TextMessage

from cableway.protocol.wsframe import parse_client_frame

MESSAGE_LIMIT = 512


def wsproto_reads(frame: bytes) -> list[tuple[str, str | bytes, bool]]:
    """What a fresh server wsproto connection makes of ``frame`` alone."""
    peer = Connection(ConnectionType.SERVER)
    peer.receive_data(frame)
    read: list[tuple[str, str | bytes, bool]] = []
    for event in peer.events():
        if isinstance(event, TextMessage):
            read.append(("text", event.data, event.message_finished))
        elif isinstance(event, BytesMessage):
            read.append(("bytes", bytes(event.data), event.message_finished))
        else:
            read.append((type(event).__name__, b"", False))
    return read


def test_one_input(data: bytes) -> None:
    i = 0
    while True:
        parsed = parse_client_frame(data, i, MESSAGE_LIMIT)
        if parsed is None:
            return
        message, after = parsed
        assert i < after <= len(data), (i, after)
        kind = "text" if isinstance(message, str) else "bytes"
        size = len(message.encode("utf-8")) if isinstance(message, str) else len(message)
        assert size <= MESSAGE_LIMIT, size
        assert wsproto_reads(data[i:after]) == [(kind, message, True)], data[i:after]
        i = after


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway", "wsproto"])
