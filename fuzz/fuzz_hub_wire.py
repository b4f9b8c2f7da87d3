# Invariant: FrameReader yields the same JSON objects however reads split, or HubWireError.
"""Fuzz the workers' hub protocol (``cableway --workers``): framing and codecs.

Invariants, for any bytes:

* :class:`~cableway.transport.hubwire.FrameReader` returns JSON objects (dicts) or raises
  :class:`~cableway.transport.hubwire.HubWireError`; nothing else escapes.
* Feeding the same bytes in two reads split anywhere yields the same messages (or the
  same error) as one read: a frame split across reads is whole or not yet returned.
* Every message re-encoded with :func:`~cableway.transport.hubwire.encode` reads back
  equal.
* The codecs (publication, history entry and query, session snapshot, presence event)
  applied to each message's values return a value or raise ``HubWireError``; a value
  they return encodes back to what they read (round trip).

The first input byte picks the split point of the second read.

Run: ``python fuzz/fuzz_hub_wire.py -runs=50000 fuzz/corpus/hub_wire/`` (needs ``pip
install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import sys
from typing import Any

from cableway.transport.hubwire import (
    FrameReader,
    HubWireError,
    encode,
    entry_from_wire,
    entry_to_wire,
    event_from_wire,
    event_to_wire,
    publication_from_wire,
    publication_to_wire,
    query_from_wire,
    query_to_wire,
    snapshot_from_wire,
    snapshot_to_wire,
)

#: small enough that the fuzzer reaches "too long" frames
MAX_FRAME = 4096

_CODECS: list[tuple[Any, Any]] = [
    (publication_from_wire, publication_to_wire),
    (entry_from_wire, entry_to_wire),
    (query_from_wire, query_to_wire),
    (snapshot_from_wire, snapshot_to_wire),
    (event_from_wire, event_to_wire),
]


def _read(chunks: list[bytes]) -> list[dict[str, Any]] | str:
    reader = FrameReader(MAX_FRAME)
    out: list[dict[str, Any]] = []
    try:
        for chunk in chunks:
            out.extend(reader.feed(chunk))
    except HubWireError as exc:
        return f"error after {len(out)}: {type(exc).__name__}"
    return out


def test_one_input(raw: bytes) -> None:
    if not raw:
        return
    split, data = raw[0], raw[1:]
    at = split % (len(data) + 1)
    whole = _read([data])
    parts = _read([data[:at], data[at:]])
    if isinstance(whole, str) or isinstance(parts, str):
        # an error in one read is an error however the bytes are split
        assert isinstance(whole, str), (whole, parts)
        assert isinstance(parts, str), (whole, parts)
        return
    assert whole == parts
    for message in whole:
        assert isinstance(message, dict)
        again = FrameReader(MAX_FRAME * 8).feed(encode(message))
        assert again == [message]
        for value in message.values():
            for decode, to_wire in _CODECS:
                try:
                    decoded = decode(value)
                except HubWireError:
                    continue
                assert decode(to_wire(decoded)) == decoded


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
