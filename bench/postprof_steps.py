"""Micro-benchmarks (``timeit``, best of 7) of the per-POST steps Cableway does above the
trio floor in scenario (c), on the load generator's own request (200-byte pad, signed Turbo
identifier): what each costs alone, next to the floor's equivalent. See docs/benchmarks.md,
"Where Cableway's per-POST time goes above the trio floor"::

    .venv/bin/python bench/postprof_steps.py
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable

import trio

from cableway.node.intake import judge
from cableway.node.publish import runs
from cableway.protocol import messages
from cableway.protocol.broadcast import EncodedBroadcast, Publication
from cableway.protocol.wsframe import text_frame

PAD = "x" * 200
DATA = '["cwb",1,12345,1733560000000000000,"' + PAD + '"]'
BODY = json.dumps({"stream": "s123", "data": DATA}, separators=(",", ":")).encode()
IDENTIFIER = json.dumps(
    {"channel": "Turbo::StreamsChannel", "signed_stream_name": "ImJzMTIzIg==--" + "0" * 64},
    separators=(",", ":"),
)


def step(name: str, fn: Callable[[], object], number: int = 100_000) -> float:
    best = min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6
    print(f"{name:58s} {best:5.2f} us")
    return best


def main() -> None:
    verdict = judge(BODY)
    assert isinstance(verdict, list)
    pub: Publication = verdict[0]
    encoded = EncodedBroadcast(pub)
    text = encoded.for_identifier(IDENTIFIER)
    value = json.loads(BODY)

    def floor_frame() -> bytes:
        payload = '{"identifier":' + json.dumps(IDENTIFIER) + ',"message":' + value["data"] + "}"
        return text_frame(payload.encode())

    print("-- intake (Cableway: judge = strict JSON + checks + Publication)")
    step("judge(body)", lambda: judge(BODY))
    step("  floor: json.loads(body)", lambda: json.loads(BODY))
    print("-- encoding (Cableway: data re-parsed to check it is JSON, then built)")
    step("EncodedBroadcast(pub) (message_json: strict_json(data))", lambda: EncodedBroadcast(pub))
    step("  message_json(data) alone", lambda: messages.message_json(DATA))
    step("  strict_json(data) alone", lambda: messages.strict_json(DATA))
    step("  _SURROGATE.search(data) alone", lambda: messages._SURROGATE.search(DATA))
    step("for_identifier(identifier)", lambda: encoded.for_identifier(IDENTIFIER))
    step("to_wire + text_frame", lambda: text_frame(messages.to_wire(text)))
    step("  floor: concat with json.dumps(identifier) + text_frame", floor_frame)
    print("-- publish -> deliver (per-call set-up paid once per POST)")
    stamped = [(pub, None, None)]
    step("list(runs([stamped]))", lambda: list(runs(stamped)))

    async def in_trio() -> None:
        step("trio.current_time() (fan_out's early-ping clock)", trio.current_time)
        step("time.time()", __import__("time").time)

    trio.run(in_trio)


if __name__ == "__main__":
    main()
