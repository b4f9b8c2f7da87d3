"""The upgrade's pure fast steps against their references: the request-head pattern
(``OWS value OWS`` as one character class) against the nested pattern it replaced, and
``parse_query``'s direct split against ``urllib.parse.parse_qsl``."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st

from cableway.protocol import httphead
from cableway.protocol.handshake import parse_query

_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_VALUE = rb"(?:[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*)?"
REFERENCE = re.compile(
    rb"([" + _TCHAR + rb"]+) (/[\x21-\x7e]*) HTTP/1\.1\r\n"
    rb"((?:[" + _TCHAR + rb"]+:[ \t]*" + _VALUE + rb"[ \t]*\r\n)*)\r\n"
)

#: the pieces that decide a header line's fate (visible, blanks, line ends, controls,
#: obs-text), the visible and blank ones most often
_LINE_BYTES = st.lists(
    st.sampled_from(
        [b"a", b"Z", b":", b"/", b"!", b"~", b" ", b"\t", b"  ", b" \t"] * 4
        + [b"\r", b"\n", b"\r\n", b"\x00", b"\x01", b"\x7f", b"\x80", b"\xff"]
    ),
    max_size=12,
).map(b"".join)


def _head(lines: list[bytes]) -> bytes:
    return b"GET /cable?pi=3 HTTP/1.1\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


def _groups(match: re.Match[bytes] | None) -> tuple[bytes | None, ...] | None:
    return None if match is None else match.groups()


@given(st.lists(st.tuples(_LINE_BYTES, _LINE_BYTES), max_size=5))
def test_head_pattern_matches_the_nested_one(fields: list[tuple[bytes, bytes]]) -> None:
    head = _head([b"Host: x"] + [b"X-" + name + b":" + value for name, value in fields])
    assert _groups(httphead._HEAD.fullmatch(head)) == _groups(REFERENCE.fullmatch(head))


def test_head_pattern_reads_blanks_and_rejects_controls() -> None:
    # tabs and spaces around and inside a value are OWS and inner blanks, parsed away
    head = _head([b"Host: x", b"A:\t b \t c\t ", b"B:", b"C: \t"])
    parsed = httphead.parse_upgrade_head(head, len(head))
    assert parsed is not None
    assert parsed.headers == [(b"host", b"x"), (b"a", b"b \t c"), (b"b", b""), (b"c", b"")]
    for bad in (b"A: b\rc", b"A: b\x00", b"A: \x7f", b"A: \x80", b"A b: c", b" A: b"):
        head = _head([b"Host: x", bad])
        assert httphead.parse_upgrade_head(head, len(head)) is None, bad


def _reference_query(query: str) -> dict[str, str]:
    try:
        return dict(parse_qsl(query, keep_blank_values=True, max_num_fields=64, errors="replace"))
    except ValueError:
        return {}


@given(st.text(alphabet="ab=&%+;3F\ufffd ", max_size=40))
def test_parse_query_is_parse_qsl(query: str) -> None:
    assert parse_query(query) == _reference_query(query)


def test_parse_query_plain_queries() -> None:
    assert parse_query("") == {}
    assert parse_query("pi=3") == {"pi": "3"}
    assert parse_query("pi=3&&ptp&jid=a=b&pi=4") == {"pi": "4", "ptp": "", "jid": "a=b"}
    assert parse_query("a&" * 63 + "pi=3") == {"a": "", "pi": "3"}  # 64 fields
    assert parse_query("a&" * 64 + "pi=3") == {}  # 65: refused, as parse_qsl refuses
    assert parse_query("a&" * 64) == {}  # 65 fields, the last empty
