"""Per-POST steps of scenario (c), Cableway's and the floor's, on the bench's request.

A micro-benchmark (``timeit``, best of 7 x 100 000) of each step one ``POST /_broadcast``
of ``bench/loadgen.py``'s (c) costs in Cableway's broadcast intake and in
``bench/floor_server.py``'s handler, to tell the per-POST Python both must do from the
machinery around it (docs/benchmarks.md, "Many streams: the broadcast intake's
per-POST cost")::

    .venv/bin/python bench/intake_steps.py
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable

from cableway.node.intake import account, judge
from cableway.ops.metrics import Metrics
from cableway.protocol import messages
from cableway.protocol.broadcast import EncodedBroadcast, Publication
from cableway.protocol.httphead import _parse, head_size, parse_head
from cableway.protocol.wsframe import text_frame

BODY = b'{"stream":"s123","data":"[\\"cwb\\",1,12345,1733560000000000000,\\"\\"]"}'
REQUEST = (
    b"POST /_broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)
IDENTIFIER = '{"channel":"$pubsub","stream_name":"s123"}'
N = 100_000


def step(name: str, fn: Callable[[], object]) -> float:
    best = min(timeit.repeat(fn, number=N, repeat=7)) / N * 1e6
    print(f"{name:48s} {best:.2f} us")
    return best


def main() -> None:
    buf = bytearray(REQUEST * 50)
    size = head_size(buf, 8192)
    end = size + len(BODY)
    metrics = Metrics()
    verdict = judge(bytes(buf[size:end]))
    assert isinstance(verdict, list)
    pub: Publication = verdict[0]
    encoded = EncodedBroadcast(pub)
    text = encoded.for_identifier(IDENTIFIER)

    def counters() -> None:
        metrics.inc("broadcast_msg_total")
        metrics.inc("server_msg_total", 1)
        metrics.inc("data_sent_total", 100)

    print("-- Cableway")
    total = step("head_size (h11's head end: LF, optional CR, LF)", lambda: head_size(buf, 8192))
    step("  parse_head, not memoised", lambda: _parse(buf, size))
    total += step("parse_head, memoised head", lambda: parse_head(buf, size))
    total += step("body copy bytes(buf[size:end])", lambda: bytes(buf[size:end]))
    step("  strict_json(body) alone", lambda: messages.strict_json(BODY))
    total += step("judge(body): JSON + Publication", lambda: judge(BODY))
    total += step("account (1 counter)", lambda: account(verdict, metrics))
    total += step("EncodedBroadcast: message_json (data re-parse)", lambda: EncodedBroadcast(pub))
    step("  message_json(data) alone", lambda: messages.message_json(pub.data))
    total += step("for_identifier", lambda: encoded.for_identifier(IDENTIFIER))
    total += step("to_wire + text_frame", lambda: text_frame(messages.to_wire(text)))
    total += step("3 more counters (node, deliver_run)", counters)
    print(f"{'sum':48s} {total:.2f} us")

    print("-- floor (bench/floor_server.py: http_requests + publish)")
    raw = bytes(buf)

    def floor_head() -> int:
        stop = raw.find(b"\r\n\r\n")
        head = raw[:stop].lower()
        at = head.find(b"content-length:")
        line_end = head.find(b"\r\n", at)
        return int(head[at + 15 : line_end if line_end >= 0 else None])

    value = json.loads(BODY)
    total = step("find + lower + find + int", floor_head)
    total += step("body slice", lambda: raw[size:end])
    total += step("json.loads(body)", lambda: json.loads(BODY))
    total += step(
        "payload concat (json.dumps(identifier))",
        lambda: '{"identifier":' + json.dumps(IDENTIFIER) + ',"message":' + value["data"] + "}",
    )
    total += step("text_frame(payload.encode())", lambda: text_frame(text.encode()))
    print(f"{'sum':48s} {total:.2f} us")


if __name__ == "__main__":
    main()
