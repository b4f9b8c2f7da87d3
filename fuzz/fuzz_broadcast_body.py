# Invariant: a broadcast body parsed orjson first has strict_json's value and verdict.
"""Fuzz ``cableway.protocol.messages.json_value`` (orjson first) against
:func:`~cableway.protocol.messages.strict_json`, and ``parse_broadcast`` of a body
against the verdict of the body's ``strict_json`` value (the code before orjson).

The first byte picks how the rest becomes the body (bytes, as the endpoint reads it):

* ``0x00``-``0x3F``: the rest as it is (any bytes: not UTF-8, BOMs, UTF-16, ...);
* ``0x40``-``0x7F``: the rest put into a publication, ``{"stream":"<rest>","data":
  "<rest>","meta":{"transient":<rest>}}`` with a batch around it when the byte is odd
  (escapes, surrogates, duplicate keys and odd values where the reader looks);
* ``0x80``-``0xBF``: a publication between ``n`` brackets of each kind, ``n`` from
  the byte (0 to 1 300: around orjson's and the interpreter's nesting limits and
  ``_SHALLOW``), the rest inside;
* ``0xC0``-``0xFF``: a publication with a number from the rest's digits, its length
  from the byte (up to ~5 000 digits: past 64 bits, a double's range and the int
  digit limit), with a sign, a fraction or an exponent picked by the low bits.

Invariants: ``json_value(body)`` raises what ``strict_json(body)`` raises (the same
class), or returns the same value: the same types, keys in the same order, floats with
the same ``repr`` (so ``-0.0``), with one allowed difference: an integer outside
orjson's 64-bit range is its nearest float. ``parse_broadcast(body)`` equals the
verdict of ``strict_json``'s value (the same publications or command, or the same
refusal). For each publication, ``broadcast_text`` (the one-subscriber delivery's
text) equals ``EncodedBroadcast(...).for_identifier`` with and without an offset.

Run: ``python fuzz/fuzz_broadcast_body.py -runs=1000000 -max_len=4096 fuzz/corpus/broadcast_body/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

from typing import Any

from cableway.protocol import broadcast, messages
from cableway.protocol.errors import RemoteProtocolError


def body_of(raw: bytes) -> bytes:
    if not raw:
        return b""
    mode, rest = raw[0], raw[1:]
    if mode < 0x40:
        return rest
    if mode < 0x80:
        one = (
            b'{"stream":"' + rest + b'","data":"' + rest + b'","meta":{"transient":' + rest + b"}}"
        )
        return b"[" + one + b"," + one + b"]" if mode & 1 else one
    if mode < 0xC0:
        depth = (mode - 0x80) * 21
        opener, closer = (b"[", b"]") if mode & 1 else (b'{"a":', b"}")
        return b'{"stream":"s","data":"d","x":' + opener * depth + rest + closer * depth + b"}"
    digits = bytes(ch for ch in rest if 0x30 <= ch <= 0x39) or b"1"
    length = 1 + (mode - 0xC0) * 80
    number = (digits * (length // len(digits) + 1))[:length]
    if mode & 1:
        number = b"-" + number
    if mode & 2:
        number += b".5"
    if mode & 4:
        number += b"e" + str(mode % 400).encode()
    return b'{"stream":"s","data":"d","n":' + number + b"}"


def same(got: Any, want: Any) -> bool:
    """``got`` (orjson first) is ``want`` (strict_json), as the docstring says (a walk
    with a stack of its own: the values nest deeper than the recursion limit allows)."""
    todo = [(got, want)]
    while todo:
        got, want = todo.pop()
        if type(want) is int and type(got) is float:
            if -(2**63) <= want < 2**64 or got != float(want):
                return False
        elif type(got) is not type(want):
            return False
        elif isinstance(want, float):
            if repr(got) != repr(want):
                return False
        elif isinstance(want, list):
            if len(got) != len(want):
                return False
            todo.extend(zip(got, want, strict=True))
        elif isinstance(want, dict):
            if list(got) != list(want):
                return False
            todo.extend((got[key], want[key]) for key in want)
        elif got != want:
            return False
    return True


def outcome(parse: Any, body: bytes) -> tuple[str, Any]:
    try:
        return "value", parse(body)
    except RecursionError:
        return "error", RecursionError
    except ValueError:
        return "error", ValueError


def reference(body: bytes) -> Any:
    """``strict_json`` as many frames deep as ``json_value``'s call of it (the
    interpreter's recursion limit decides what is nested too deeply)."""
    return messages.strict_json(body)


def _as_parse_broadcast(body: bytes) -> Any:
    return reference(body)


def reference_verdict(body: bytes) -> Any:
    """The verdict of the code before orjson, as deep as ``verdict``'s parse."""
    try:
        value = _as_parse_broadcast(body)
    except RecursionError:
        return "nested"
    except ValueError:
        return "invalid"
    try:
        return broadcast._broadcast_of(value, 10_000)
    except RemoteProtocolError as exc:
        return str(exc)


def verdict(body: bytes) -> Any:
    try:
        return broadcast.parse_broadcast(body)
    except RemoteProtocolError as exc:
        text = str(exc)
        return {"body nested too deeply": "nested", "body is not valid JSON": "invalid"}.get(
            text, text
        )


def test_one_input(raw: bytes) -> None:
    body = body_of(raw)
    got = outcome(messages.json_value, body)
    want = outcome(reference, body)
    assert got[0] == want[0], (body[:200], got, want)
    if want[0] == "error":
        assert got[1] is want[1], (body[:200], got, want)
    else:
        assert same(got[1], want[1]), (body[:200], repr(got[1])[:200], repr(want[1])[:200])
    got_verdict = verdict(body)
    assert got_verdict == reference_verdict(body), (body[:200], got_verdict, want)
    if isinstance(got_verdict, list):  # the one-subscriber delivery's text
        for pub in got_verdict[:4]:
            for offset, epoch in ((None, None), (7, "e"), (0, None)):
                text = broadcast.broadcast_text(pub, pub.stream, offset, epoch)
                encoded = broadcast.EncodedBroadcast(pub, offset=offset, epoch=epoch)
                assert text == encoded.for_identifier(pub.stream), (pub, offset, epoch)


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway"])
