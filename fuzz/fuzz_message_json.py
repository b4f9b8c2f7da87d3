# Invariant: message_json (orjson first) answers exactly what the strict_json rule answers.
"""Fuzz ``cableway.protocol.messages.message_json`` against its definition.

``message_json`` asks orjson first whether a publication's ``data`` is JSON, and
:func:`~cableway.protocol.messages.strict_json` only when orjson refuses it or the text
has many brackets. The reference here is the rule itself, with ``strict_json`` alone
(the code before orjson): ``data`` that ``strict_json`` parses to something other than
``None`` is embedded as sent (whitespace around it stripped), re-encoded when it holds
a lone surrogate, and anything else is sent as a JSON string.

The first byte picks how the rest becomes ``data``:

* ``0x00``-``0x7F``: the rest as UTF-8 (a byte that is not UTF-8 becomes U+FFFD;
  a CESU-style encoded surrogate, ``ED A0 80``, becomes a lone surrogate);
* ``0x80``-``0xBF``: the rest, between ``n`` brackets of each kind, ``n`` from the
  byte (0 to 1 300: around orjson's and the interpreter's nesting limits and
  ``_SHALLOW``);
* ``0xC0``-``0xFF``: a number: the rest's digits repeated to a length from the byte
  (up to ~5 000 digits: past a double's range and the int digit limit), with a
  sign, a fraction or an exponent picked by the low bits.

Invariant: ``message_json(data) == reference(data)``.

Run: ``python fuzz/fuzz_message_json.py -runs=1000000 -max_len=4096 fuzz/corpus/message_json/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

from typing import Any

from cableway.protocol import messages


def reference(data: str) -> str:
    """``message_json`` as defined (``strict_json`` alone)."""
    if data[:1] not in messages._JSON_START:
        return messages.dumps(data)
    try:
        value: Any = messages.strict_json(data)
    except (ValueError, RecursionError):
        return messages.dumps(data)
    if value is None:  # (the same frames deep as message_json's strict_json call)
        return messages.dumps(data)
    if messages._SURROGATE.search(data):
        return messages.dumps(value)
    return data.strip(" \t\r\n")


def data_of(raw: bytes) -> str:
    if not raw:
        return ""
    mode, rest = raw[0], raw[1:]
    text = rest.decode("utf-8", "surrogatepass") if _cesu(rest) else rest.decode("utf-8", "replace")
    if mode < 0x80:
        return text
    if mode < 0xC0:
        depth = (mode - 0x80) * 21
        opener, closer = ("[", "]") if mode & 1 else ('{"a":', "}")
        return opener * depth + text + closer * depth
    digits = "".join(ch for ch in text if ch.isdigit() and ch.isascii()) or "1"
    length = 1 + (mode - 0xC0) * 80
    number = (digits * (length // len(digits) + 1))[:length]
    if mode & 1:
        number = "-" + number
    if mode & 2:
        number += ".5"
    if mode & 4:
        number += "e" + str(mode % 400)
    return number


def _cesu(data: bytes) -> bool:
    try:
        data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return False
    return True


def test_one_input(raw: bytes) -> None:
    data = data_of(raw)
    got = messages.message_json(data)
    want = reference(data)
    assert got == want, (data[:200], got[:200], want[:200])


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway"])
