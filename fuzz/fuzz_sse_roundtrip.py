# Invariant: ValueError for a bad event/id, else exactly one event, same data, no injected field.
"""Fuzz SSE framing (security O7/O8) against a WHATWG EventSource parser.

Invariant: ``encode_event`` raises ``ValueError`` exactly when ``event``/``id`` holds a
control character (CR, LF, NUL, other C0, DEL, C1) or a lone surrogate; otherwise the
WHATWG parser below reads back exactly one event whose data is the input with CR/CRLF
turned into LF (lone surrogates into U+FFFD) and no field the encoder did not write.
``message_to_event`` of a data message built from the same string also yields one such
event (``None`` only when unwrapping meets an unencodable number or extreme nesting).

The input bytes are split on ``0xFE`` into ``data``, ``event`` and ``id`` (missing parts
are ``None``); invalid UTF-8 becomes lone surrogates (``surrogateescape``), so unencodable
strings are exercised too. Any other exception or a second event is a bug.

Run: ``python fuzz/fuzz_sse_roundtrip.py -runs=50000 fuzz/corpus/sse_roundtrip/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import json
import re
import sys

from cableway.protocol import messages
from cableway.protocol.sse import encode_event, message_to_event

_BREAK = re.compile(r"\r\n|\r|\n")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def whatwg_parse(stream: bytes) -> tuple[list[list[tuple[str, str]]], list[str]]:
    """Blocks of (field, value) lines ended by a blank line, and the undispatched rest."""
    text = stream.decode("utf-8", "replace").removeprefix("\ufeff")
    *lines, tail = _BREAK.split(text)
    blocks: list[list[tuple[str, str]]] = []
    block: list[tuple[str, str]] = []
    rest: list[str] = []
    for line in lines:
        if line == "":
            blocks.append(block)
            block, rest = [], []
            continue
        rest.append(line)
        if line.startswith(":"):
            continue
        name, sep, value = line.partition(":")
        block.append((name, value[1:] if sep and value.startswith(" ") else value))
    if tail:
        rest.append(tail)
    return blocks, rest


def one_event(stream: bytes, *, event: str | None, id: str | None) -> str:
    """Check the stream is one event with exactly the expected fields; return its data."""
    blocks, rest = whatwg_parse(stream)
    assert len(blocks) == 1, blocks
    assert rest == [], rest
    names = [name for name, _ in blocks[0]]
    n_data = names.count("data")
    assert n_data >= 1
    assert names == ["event"] * bool(event) + ["data"] * n_data + ["id"] * (id is not None)
    fields = dict(blocks[0])
    assert fields.get("event", "") == (event or "")
    assert fields.get("id") == id
    return "\n".join(value for name, value in blocks[0] if name == "data")


def expected(data: str) -> str:
    return _SURROGATE.sub("\ufffd", _BREAK.sub("\n", data))


def test_one_input(raw: bytes) -> None:
    parts = [p.decode("utf-8", "surrogateescape") for p in raw.split(b"\xfe", 2)]
    data = parts[0]
    event = parts[1] if len(parts) > 1 else None
    id = parts[2] if len(parts) > 2 else None

    assert one_event(encode_event(data), event=None, id=None) == expected(data)
    try:
        out = encode_event(data, event=event, id=id)
    except ValueError:
        assert _FORBIDDEN.search((event or "") + (id or "")), (event, id)
    else:
        assert not _FORBIDDEN.search((event or "") + (id or ""))
        assert one_event(out, event=event, id=id) == expected(data)

    # the same string as a broadcast payload, through the protocol message encoder
    text = messages.data_message(
        messages.dumps("{}"),
        messages.message_json(data),
        stream_id=id,
        epoch="e",
        offset=len(raw),
    )
    position = f"{len(raw)}/e/{id}" if id and not _FORBIDDEN.search(id) else None
    full = message_to_event(text, unwrap=False, raw=False)
    assert full is not None
    body = one_event(full, event=None, id=position)
    assert json.loads(body) == json.loads(_SURROGATE.sub("\ufffd", text))
    unwrapped = message_to_event(text, unwrap=True, raw=False)
    if unwrapped is not None:  # None only for unencodable numbers / extreme nesting
        one_event(unwrapped, event=None, id=position)
    assert message_to_event(text, unwrap=True, raw=True) == unwrapped


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
