# Invariant: the upgrade's pure fast steps give what their reference gives, for any input.
"""Differential fuzz of two pure steps of a WebSocket upgrade (sans-IO):

* ``httphead._HEAD``, the request-head pattern, against the pattern it replaced
  (``OWS value OWS`` spelled as nested runs, kept here as the reference): both
  ``fullmatch`` the same inputs with the same groups;
* ``handshake.parse_query`` against ``urllib.parse.parse_qsl`` as the module calls it
  (``keep_blank_values``, 64 fields, ``errors="replace"``): the same parameters, for
  queries it splits directly (no ``%`` or ``+``) and the others.

The first byte picks the mode: even, the rest is a head (or, with the second byte odd,
put into a well-formed upgrade head as extra header lines and target, so the fuzzer
starts from heads the pattern accepts); odd, the rest is a query (Latin-1, so any byte
is a character, ``U+FFFD`` included by way of ``\\xff``).

Run: ``python fuzz/fuzz_head_query.py -runs=100000 fuzz/corpus/head_query/`` (needs
``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from cableway.protocol import httphead
from cableway.protocol.handshake import parse_query

_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_VALUE = rb"(?:[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*)?"
REFERENCE = re.compile(
    rb"([" + _TCHAR + rb"]+) (/[\x21-\x7e]*) HTTP/1\.1\r\n"
    rb"((?:[" + _TCHAR + rb"]+:[ \t]*" + _VALUE + rb"[ \t]*\r\n)*)\r\n"
)
TEMPLATE = (
    b"GET /cable%s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\n%s\r\n"
)


def reference_query(query: str) -> dict[str, str]:
    try:
        return dict(parse_qsl(query, keep_blank_values=True, max_num_fields=64, errors="replace"))
    except ValueError:
        return {}


def head_of(data: bytes) -> bytes:
    if data[:1] and data[0] & 1:
        target, _, lines = data[1:].partition(b"\xff")
        return TEMPLATE % (target, lines.replace(b"\xfe", b"\r\n"))
    return data[1:]


def groups(match: re.Match[bytes] | None) -> tuple[bytes | None, ...] | None:
    return None if match is None else match.groups()


def test_one_input(data: bytes) -> None:
    if not data:
        return
    if data[0] & 1:
        query = data[1:].decode("latin-1").replace("\xff", "\ufffd")
        assert parse_query(query) == reference_query(query), query
        return
    head = head_of(data[1:])
    assert groups(httphead._HEAD.fullmatch(head)) == groups(REFERENCE.fullmatch(head)), head
    size = len(head)
    parsed = httphead.parse_upgrade_head(head, size)
    if parsed is not None:
        assert REFERENCE.fullmatch(head) is not None


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway"])
