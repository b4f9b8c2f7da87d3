"""The strict request-head parser of the HTTP fast path (``cableway.protocol.httphead``).

It accepts only the unremarkable HTTP/1.1 head; everything else (``None``) goes to h11.
Every head it accepts must be one h11 parses to the same method, target, headers and
body length: checked against h11 itself for the accepted shapes.
"""

from __future__ import annotations

import h11
import pytest

from cableway.protocol.httphead import (
    NEED_MORE,
    USE_GENERAL,
    RequestHead,
    framing_error,
    head_size,
    parse_head,
    reason_phrase,
)

MAX = 16384
BENCH_HEAD = (
    b"POST /_broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 3\r\n\r\n"
)


def parse(data: bytes) -> RequestHead | None:
    size = head_size(data, MAX)
    assert size > 0, size
    return parse_head(data, size)


def h11_request(data: bytes) -> tuple[h11.Request, int]:
    """What h11 makes of the same head: the request and its body length."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    length = [int(v) for k, v in event.headers if k == b"content-length"]
    return event, length[0]


def test_the_benchmark_head_is_accepted() -> None:
    head = parse(BENCH_HEAD + b"abc")
    assert head == RequestHead(
        method=b"POST",
        target=b"/_broadcast",
        headers={
            b"host": b"127.0.0.1",
            b"content-type": b"application/json",
            b"content-length": b"3",
        },
        content_length=3,
        keep_alive=True,
        size=len(BENCH_HEAD),
    )


@pytest.mark.parametrize(
    "data",
    [
        BENCH_HEAD,
        b"POST /_broadcast?x=1&y=%20 HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHOST:x\r\nContent-Length:\t12 \t\r\nX-Empty:\r\nX-Sp: a b\tc\r\n\r\n",
        b"PUT /p HTTP/1.1\r\nHost: x\r\nContent-Length: 007\r\nConnection: Keep-Alive\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: upgrade, CLOSE\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 5\r\n\r\n",
    ],
)
def test_accepted_heads_mean_what_they_mean_to_h11(data: bytes) -> None:
    head = parse(data)
    assert head is not None
    assert framing_error(data) is None  # what the fast path takes is never ambiguous
    event, length = h11_request(data)
    assert head.method == event.method
    assert head.target == event.target
    assert head.content_length == length
    assert head.size == len(data)
    joined: dict[bytes, bytes] = {}
    for name, value in event.headers:
        joined[name] = joined[name] + b", " + value if name in joined else value
    assert head.headers == joined
    tokens = [t.strip().lower() for t in joined.get(b"connection", b"").split(b",")]
    assert head.keep_alive is (b"close" not in tokens)


def test_repeated_headers_are_joined_and_connection_close_is_seen() -> None:
    head = parse(
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nAccept: a\r\nAccept: b\r\n"
        b"Connection: keep-alive\r\nConnection: close\r\n\r\n"
    )
    assert head is not None
    assert head.headers[b"accept"] == b"a, b"
    assert head.keep_alive is False


def test_head_size() -> None:
    assert head_size(b"", MAX) == NEED_MORE
    assert head_size(BENCH_HEAD[:-1], MAX) == NEED_MORE
    assert head_size(BENCH_HEAD + b"abc", MAX) == len(BENCH_HEAD)
    # where h11 ends a head, whatever the line ends: LF, optional CR, LF
    assert head_size(b"GET / HTTP/1.1\nHost: x\n\nrest", MAX) == 24
    assert head_size(b"GET / HTTP/1.1\r\nHost: x\n\r\nrest", MAX) == 26
    # h11 refuses at once what cannot start a request line; so must the caller
    for first in (b"\x00", b" ", b"\t", b"\r", b"\n", b"\x16"):
        assert head_size(first + b"GET", MAX) == USE_GENERAL
    # a head that does not end within the limit is the general parser's (431)
    assert head_size(BENCH_HEAD, len(BENCH_HEAD)) == len(BENCH_HEAD)
    assert head_size(BENCH_HEAD, len(BENCH_HEAD) - 1) == USE_GENERAL
    assert head_size(b"GET /" + b"a" * 100, 50) == USE_GENERAL
    assert head_size(b"GET /" + b"a" * 40, 50) == NEED_MORE


def test_head_size_resumes_where_it_stopped() -> None:
    data = b""
    scanned = 0
    for byte in BENCH_HEAD:
        data += bytes([byte])
        size = head_size(data, MAX, scanned)
        if size != NEED_MORE:
            break
        scanned = len(data) - 2
    assert size == len(BENCH_HEAD)


def with_headers(*lines: bytes, request_line: bytes = b"POST /_broadcast HTTP/1.1") -> bytes:
    return request_line + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


HOST = b"Host: x"
CL = b"Content-Length: 5"

REMARKABLE = {
    # request smuggling shapes: the body length must be h11's to decide
    "duplicate Content-Length": with_headers(HOST, CL, CL),
    "conflicting Content-Length": with_headers(HOST, CL, b"Content-Length: 6"),
    "Content-Length list": with_headers(HOST, b"Content-Length: 5, 5"),
    "Content-Length with plus": with_headers(HOST, b"Content-Length: +5"),
    "Content-Length with minus": with_headers(HOST, b"Content-Length: -5"),
    "Content-Length with inner space": with_headers(HOST, b"Content-Length: 1 2"),
    "Content-Length in hex": with_headers(HOST, b"Content-Length: 0x10"),
    "Content-Length with a decimal point": with_headers(HOST, b"Content-Length: 5.0"),
    "Content-Length empty": with_headers(HOST, b"Content-Length:"),
    "Content-Length non-ASCII digit": with_headers(HOST, "Content-Length: ５".encode()),
    "Content-Length too long": with_headers(HOST, b"Content-Length: " + b"1" * 19),
    "no Content-Length": with_headers(HOST),
    "Transfer-Encoding chunked": with_headers(HOST, b"Transfer-Encoding: chunked"),
    "Transfer-Encoding and Content-Length": with_headers(HOST, CL, b"Transfer-Encoding: chunked"),
    "Transfer-Encoding identity": with_headers(HOST, CL, b"transfer-encoding: identity"),
    "bare LF line end": b"POST /_broadcast HTTP/1.1\nHost: x\r\nContent-Length: 5\r\n\r\n",
    "bare LF in a header": with_headers(HOST, b"Content-Length: 5\nX: y"),
    "bare CR in a header": with_headers(HOST, CL, b"X: a\rb"),
    "bare CR ending a line": with_headers(HOST, CL + b"\r"),
    "header without colon": with_headers(HOST, CL, b"X-No-Colon"),
    "space before colon": with_headers(HOST, b"Content-Length : 5"),
    "tab before colon": with_headers(HOST, b"Content-Length\t: 5"),
    "obs-fold": with_headers(HOST, CL, b"X: a", b" folded"),
    "obs-fold with tab": with_headers(HOST, CL, b"X: a", b"\tfolded"),
    "obs-fold first": with_headers(b" X: a", HOST, CL),
    "empty header name": with_headers(HOST, CL, b": x"),
    "non-token header name": with_headers(HOST, CL, b"X(y): z"),
    "NUL in a value": with_headers(HOST, CL, b"X: a\x00b"),
    "control char in a value": with_headers(HOST, CL, b"X: a\x01b"),
    "DEL in a value": with_headers(HOST, CL, b"X: a\x7fb"),
    "vertical tab in a value": with_headers(HOST, CL, b"X: a\x0bb"),
    "obs-text in a value": with_headers(HOST, CL, b"X: caf\xe9"),
    "no Host": with_headers(CL),
    "two Host": with_headers(HOST, HOST, CL),
    "Expect": with_headers(HOST, CL, b"Expect: 100-continue"),
    "Upgrade": with_headers(HOST, CL, b"Connection: upgrade", b"Upgrade: websocket"),
    "HTTP/1.0": with_headers(HOST, CL, request_line=b"POST /_broadcast HTTP/1.0"),
    "HTTP/1.2": with_headers(HOST, CL, request_line=b"POST /_broadcast HTTP/1.2"),
    "HTTP/2.0": with_headers(HOST, CL, request_line=b"POST /_broadcast HTTP/2.0"),
    "lower-case version": with_headers(HOST, CL, request_line=b"POST /_broadcast http/1.1"),
    "absolute-form target": with_headers(
        HOST, CL, request_line=b"POST http://x/_broadcast HTTP/1.1"
    ),
    "asterisk target": with_headers(HOST, CL, request_line=b"OPTIONS * HTTP/1.1"),
    "space in target": with_headers(HOST, CL, request_line=b"POST /_broad cast HTTP/1.1"),
    "two spaces": with_headers(HOST, CL, request_line=b"POST  /_broadcast HTTP/1.1"),
    "tab separator": with_headers(HOST, CL, request_line=b"POST\t/_broadcast HTTP/1.1"),
    "trailing space": with_headers(HOST, CL, request_line=b"POST /_broadcast HTTP/1.1 "),
    "non-token method": with_headers(HOST, CL, request_line=b"PO(ST /_broadcast HTTP/1.1"),
    "no method": with_headers(HOST, CL, request_line=b" /_broadcast HTTP/1.1"),
    "non-ASCII target": with_headers(HOST, CL, request_line=b"POST /caf\xe9 HTTP/1.1"),
}


@pytest.mark.parametrize("name", sorted(REMARKABLE))
def test_anything_unusual_goes_to_the_general_parser(name: str) -> None:
    data = REMARKABLE[name] + b"hello"
    size = head_size(data, MAX)
    assert size == USE_GENERAL or parse_head(data, size) is None


def test_a_head_over_the_limit_goes_to_the_general_parser() -> None:
    assert head_size(BENCH_HEAD, len(BENCH_HEAD) - 1) == USE_GENERAL


def test_a_leading_empty_line_goes_to_the_general_parser() -> None:
    assert head_size(b"\r\n" + BENCH_HEAD, MAX) == USE_GENERAL


def test_pathological_values_parse_in_linear_time() -> None:
    # no catastrophic backtracking: spaces and tabs between value characters, and a
    # value that fails at its very end, at the head size limit (no timing asserted:
    # an exponential regex would not finish)
    value = b" \t".join([b"a"] * 5000)
    assert parse(with_headers(HOST, CL, b"X: " + value)) is not None
    assert parse(with_headers(HOST, CL, b"X: " + value + b"\x01")) is None


REQ = b"POST /p HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "both"),
        (b"transfer-encoding: CHUNKED\r\ncontent-length: 0\r\n", "both"),
        (b"Transfer-Encoding: gzip\r\n", "does not end in chunked"),
        (b"Transfer-Encoding: chunked, gzip\r\n", "does not end in chunked"),
        (b"Transfer-Encoding:\r\n", "does not end in chunked"),
        (b"Transfer-Encoding: chunked, chunked\r\n", "more than once"),
        (b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", "several"),
        (b"Transfer-Encoding: x\r\n  chunked\r\n", "obs-fold"),
        (b"Content-Length: 5\r\n\t6\r\n", "obs-fold"),
        (b"Content-Length: 5\r\nContent-Length: 6\r\n", "conflicting"),
        (b"Content-Length: 5, 6\r\n", "conflicting"),
        (b"Content-Length: -5\r\n", "invalid"),
    ],
)
def test_ambiguous_framings_are_named(headers: bytes, reason: str) -> None:
    found = framing_error(REQ + headers + b"\r\nbody")
    assert found is not None
    assert reason in found


def test_transfer_encoding_in_http10_is_ambiguous() -> None:
    head = b"POST /p HTTP/1.0\nTransfer-Encoding: chunked\n\n"
    assert framing_error(head) == "Transfer-Encoding in an HTTP/1.0 request"


@pytest.mark.parametrize(
    "headers",
    [
        b"",
        b"Content-Length: 5\r\n",
        b"Content-Length: 5\r\ncontent-length: 5\r\n",  # the same value twice
        b"Transfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: gzip, Chunked\r\n",  # h11 then answers 501 itself
        b"X-Note: mentions content-length: 5\r\nX-Fold: a\r\n b\r\n",
    ],
)
def test_clear_framings_are_left_to_the_general_parser(headers: bytes) -> None:
    assert framing_error(REQ + headers + b"\r\nContent-Length: 9\r\n") is None


def test_reason_phrases_are_gos() -> None:
    assert reason_phrase(201) == b"Created"
    assert reason_phrase(413) == b"Request Entity Too Large"
    assert reason_phrase(422) == b"Unprocessable Entity"
    assert reason_phrase(299) == b"Status"


def test_a_repeated_head_parses_the_same_from_any_buffer() -> None:
    # parse_head keeps the results of recent heads: a head seen before, in a bytearray
    # or in bytes, long or short, with a body behind it or not, is parsed the same
    long_head = BENCH_HEAD[:-2] + b"X-Pad: " + b"p" * 2000 + b"\r\n\r\n"
    for data in (BENCH_HEAD, long_head, BENCH_HEAD.replace(b"POST", b"P@ST")):
        first = parse(data)
        for buf in (bytearray(data + b"abc"), data + b"xyz", bytearray(data)):
            assert parse_head(buf, len(data)) == first
    assert parse(long_head) is not None
    assert parse(BENCH_HEAD.replace(b"POST", b"P@ST")) is None
