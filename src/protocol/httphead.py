"""A small, strict HTTP/1.1 request-head parser for the unremarkable case (sans-IO).

The transport's front door hands every request to h11, which handles the whole of
HTTP/1.1 (bare LF line ends, obs-fold, chunked bodies, odd versions, the errors and
their statuses). That generality costs more than everything else a broadcast ``POST``
does, so the common shape is recognised here first:

* ``METHOD SP /origin-form-target SP HTTP/1.1 CRLF``, the method an RFC 9110 token and
  the target visible ASCII starting with ``/``;
* header lines ``name ":" OWS value OWS CRLF``: the name a token (no space before the
  colon), the value visible ASCII with inner spaces or tabs only (no CR, LF, NUL, other
  control characters or obs-text), no obs-fold (a line starting with a space or tab);
* every line ended by CRLF, the head ended by an empty line, within the size limit;
* exactly one ``Host`` and exactly one ``Content-Length`` of 1-18 ASCII digits; no
  ``Transfer-Encoding``, ``Expect`` or ``Upgrade``.

Whatever does not match returns ``None``: the caller then gives the same bytes to the
general parser, so an unusual request is answered exactly as before, statuses and bytes
included. A head accepted here is one h11 parses to the same method, target, headers
and framing, so both paths agree on where the request (and its body) ends: no
request-smuggling gap between them.

This module does no I/O and keeps no state but a bounded memo of recent heads (a
function of their bytes alone); the driver owns the buffer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

__all__ = [
    "NEED_MORE",
    "USE_GENERAL",
    "RequestHead",
    "UpgradeHead",
    "fold_headers",
    "framing_error",
    "head_size",
    "parse_head",
    "parse_upgrade_head",
    "reason_phrase",
]

#: :func:`head_size`: the head is not complete yet (and may still be unremarkable)
NEED_MORE = 0
#: :func:`head_size`: the general parser must decide now (oversized or bad first byte)
USE_GENERAL = -1

_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
#: a header line's ``OWS value OWS``: the value visible ASCII with inner spaces or tabs,
#: i.e. (with the OWS around it) any run of visible ASCII, spaces and tabs; written as
#: that one class (the same language as ``[ \t]*(?:[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*)?
#: [ \t]*``, without its backtracking: ~40 % of the match's time on an upgrade head;
#: ``tests/protocol/test_head_query_fast.py`` and ``fuzz/fuzz_head_query.py`` check the two agree)
_FIELD_REST = rb"[\t\x20-\x7e]*"
_HEAD = re.compile(
    rb"([" + _TCHAR + rb"]+) (/[\x21-\x7e]*) HTTP/1\.1\r\n"
    rb"((?:[" + _TCHAR + rb"]+:" + _FIELD_REST + rb"\r\n)*)\r\n"
)
#: where a head ends for h11 (and so for the front door): LF, optional CR, LF
_END = re.compile(rb"\n\r?\n")
#: headers that make a request remarkable (the general parser handles them)
_REFUSED = frozenset((b"transfer-encoding", b"expect", b"upgrade"))
#: headers that must appear exactly once
_SINGLE = frozenset((b"host", b"content-length"))
_MAX_LENGTH_DIGITS = 18


class RequestHead(NamedTuple):
    """An unremarkable HTTP/1.1 request head."""

    method: bytes
    #: the request target as sent (origin-form: path and optional query)
    target: bytes
    #: lower-cased names; the values of a repeated header joined with ``", "``
    headers: dict[bytes, bytes]
    content_length: int
    #: False when a ``Connection`` header lists ``close``
    keep_alive: bool
    #: bytes of the head, the empty line ending it included
    size: int


def head_size(buf: bytes | bytearray, max_size: int, start: int = 0) -> int:
    """Where the request head at the start of ``buf`` ends, as the general parser sees it.

    Returns the head's length (its terminating empty line included, at most
    ``max_size``), :data:`NEED_MORE` when more bytes are needed, or :data:`USE_GENERAL`
    when the general parser must decide with what is there: the first byte cannot start
    a request line (h11 refuses such input at once, so must the caller), or ``max_size``
    bytes hold no complete head.

    Args:
        start: where to resume searching for the end (a caller that keeps appending to
            ``buf`` passes ``len(buf) - 2`` of its last unsuccessful call), so that a
            head trickled byte by byte is scanned once, not once per byte.
    """
    if not buf:
        return NEED_MORE
    if buf[0] < 0x21:
        return USE_GENERAL
    match = _END.search(buf, max(0, start), max_size)
    if match is not None:
        return match.end()
    return USE_GENERAL if len(buf) > max_size else NEED_MORE


#: heads up to this size are memoised (:func:`parse_head`)
_MEMO_SIZE = 1024
#: how many distinct heads are memoised (with their results: at most ~1 MiB)
_MEMO_COUNT = 256


def parse_head(buf: bytes | bytearray, size: int) -> RequestHead | None:
    """Parse the head ``buf[:size]`` (``size`` from :func:`head_size`).

    ``None`` when the head is not of the unremarkable shape described in the module
    docstring: the caller must use the general parser for this request.

    An application's broadcasts repeat the same head byte for byte (only
    ``Content-Length`` varies, within a few values), so the result for the
    :data:`_MEMO_COUNT` most recent heads of up to :data:`_MEMO_SIZE` bytes is kept:
    a repeated head costs one copy and one lookup instead of the parse (a function of
    the bytes alone, so the answer is the same). The result is shared: callers must not
    change its ``headers``.
    """
    if size <= _MEMO_SIZE:
        return _parse_memo(bytes(buf[:size]))
    return _parse(buf, size)


def _parse_bytes(head: bytes) -> RequestHead | None:
    return _parse(head, len(head))


_parse_memo = lru_cache(maxsize=_MEMO_COUNT)(_parse_bytes)


def _parse(buf: bytes | bytearray, size: int) -> RequestHead | None:
    match = _HEAD.fullmatch(buf, 0, size)
    if match is None:
        return None
    headers: dict[bytes, bytes] = {}
    for line in match.group(3).split(b"\r\n")[:-1]:
        raw_name, _, raw_value = line.partition(b":")
        name = raw_name.lower()
        value = raw_value.strip(b" \t")
        if name in headers:
            if name in _SINGLE:
                return None
            headers[name] += b", " + value
        else:
            if name in _REFUSED:
                return None
            headers[name] = value
    length = headers.get(b"content-length")
    if (
        length is None
        or b"host" not in headers
        or not length.isdigit()
        or len(length) > _MAX_LENGTH_DIGITS
    ):
        return None
    connection = headers.get(b"connection")
    keep_alive = connection is None or b"close" not in [
        token.strip().lower() for token in connection.split(b",")
    ]
    return RequestHead(match.group(1), match.group(2), headers, int(length), keep_alive, size)


class UpgradeHead(NamedTuple):
    """An unremarkable HTTP/1.1 request head with no body (a WebSocket upgrade's)."""

    method: bytes
    #: the request target as sent (origin-form: path and optional query)
    target: bytes
    #: the header lines in order, lower-cased names, values without surrounding OWS (as
    #: h11 lists them: a repeated header is listed once per line)
    headers: list[tuple[bytes, bytes]]
    #: bytes of the head, the empty line ending it included
    size: int


#: headers that give a request a body or an interim answer: the general parser's
_BODY_HEADERS = frozenset((b"content-length", b"transfer-encoding", b"expect"))


def parse_upgrade_head(buf: bytes | bytearray, size: int) -> UpgradeHead | None:
    """Parse the head ``buf[:size]`` of a request without a body (``size`` from
    :func:`head_size`), such as a WebSocket upgrade.

    The same shape as :func:`parse_head` (the module docstring) except for the framing:
    no ``Content-Length``, ``Transfer-Encoding`` or ``Expect`` at all, ``Upgrade``
    allowed, exactly one ``Host``. ``None`` otherwise: the caller must use the general
    parser for this request. A head accepted here is one h11 parses to the same method,
    target and header list, ending at the same byte (with no body).
    """
    match = _HEAD.fullmatch(buf, 0, size)
    if match is None:
        return None
    headers: list[tuple[bytes, bytes]] = []
    hosts = 0
    for line in match.group(3).split(b"\r\n")[:-1]:
        raw_name, _, raw_value = line.partition(b":")
        name = raw_name.lower()
        if name in _BODY_HEADERS:
            return None
        if name == b"host":
            hosts += 1
        headers.append((name, raw_value.strip(b" \t")))
    if hosts != 1:
        return None
    return UpgradeHead(match.group(1), match.group(2), headers, size)


#: reason phrases as Go's ``net/http`` (AnyCable-Go) writes them, for the statuses the
#: server sends; HTTP/1.1 makes them optional, but clients and logs show them
_REASONS = {
    101: b"Switching Protocols",
    200: b"OK",
    201: b"Created",
    204: b"No Content",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Request Entity Too Large",
    414: b"Request URI Too Long",
    422: b"Unprocessable Entity",
    426: b"Upgrade Required",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Unavailable",
    505: b"HTTP Version Not Supported",
}


def reason_phrase(status: int) -> bytes:
    """The reason phrase of ``status`` (Go's text; ``b"Status"`` for one not listed)."""
    return _REASONS.get(status, b"Status")


_LINE_END = re.compile(rb"\r?\n")
#: an HTTP/1.0 request line (lower-cased)
_HTTP10 = re.compile(rb"[^ ]+ [^ ]+ http/1\.0")


def framing_error(head: bytes | bytearray) -> str | None:
    """Why the body framing of a request head is ambiguous (RFC 9112 §6.1, §6.3), if it is.

    ``head`` is the raw request head (it may be followed by other bytes: only the lines
    up to the first empty one are read). A request whose framing two parsers could
    read differently is a request-smuggling route behind a proxy; the caller answers
    it ``400`` and closes the connection. Ambiguous here:

    * both ``Content-Length`` and ``Transfer-Encoding`` (§6.1: "MUST close");
    * a ``Transfer-Encoding`` whose final coding is not ``chunked`` (§6.3: "MUST respond
      with 400 and then close"), or that lists ``chunked`` more than once, or comes in
      several header lines;
    * ``Transfer-Encoding`` in an HTTP/1.0 request (§6.1: faulty framing);
    * several ``Content-Length`` values that differ (§6.3), or one that is not digits;
    * an obs-fold line (a line starting with a space or tab) continuing either header.

    Anything else returns ``None``: the general parser decides what it means.
    """
    lowered = bytes(head).lower()
    if b"transfer-encoding" not in lowered and b"content-length" not in lowered:
        return None  # the common case: no framing header at all
    lines = _LINE_END.split(lowered)
    codings: list[bytes] = []
    te_lines = 0
    lengths: set[bytes] = set()
    previous = b""
    for line in lines[1:]:
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if previous in (b"transfer-encoding", b"content-length"):
                return f"obs-fold in {previous.decode()}"
            continue
        name, colon, value = line.partition(b":")
        previous = name if colon else b""
        if name == b"transfer-encoding":
            te_lines += 1
            codings.extend(c.strip(b" \t") for c in value.split(b","))
        elif name == b"content-length":
            lengths.update(v.strip(b" \t") for v in value.split(b","))
    if te_lines:
        if lengths:
            return "both Content-Length and Transfer-Encoding"
        if _HTTP10.fullmatch(lines[0]):
            return "Transfer-Encoding in an HTTP/1.0 request"
        if te_lines > 1:
            return "several Transfer-Encoding headers"
        if not codings or codings[-1] != b"chunked":
            return "Transfer-Encoding does not end in chunked"
        if codings.count(b"chunked") > 1:
            return "chunked applied more than once"
    elif len(lengths) > 1:
        return "conflicting Content-Length values"
    elif lengths and not all(v.isdigit() for v in lengths):
        return "invalid Content-Length"
    return None


def fold_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header lines (lower-cased names) as one value per name, the values of a repeated
    name joined with ``", "`` in order (RFC 9110 §5.3); names ASCII, values Latin-1.
    Both drivers' request views use it (h11's and the ASGI server's header lists)."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("ascii", "replace")
        text = value.decode("latin-1")
        headers[key] = headers[key] + ", " + text if key in headers else text
    return headers
