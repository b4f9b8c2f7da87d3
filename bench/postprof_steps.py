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
        print("-- the whole delivery (Node.publish of one publication, one subscriber)")
        publish_one(pub)

    trio.run(in_trio)


def publish_one(pub: Publication) -> None:
    """``Node.publish([pub])`` to the one subscriber of its stream: a real WebSocket
    session (pings every 3 s, none due) whose socket is ``/dev/null`` (every write
    taken whole), the server as ``bench/run.py`` runs it for (c) (``--broker=none``)."""
    import os
    import socket

    from cableway.config import Config
    from cableway.protocol.handshake import websocket_open
    from cableway.transport.server import Server
    from cableway.transport.ws import WebSocketSession

    server = Server(Config(host="127.0.0.1", port=0, public=True, broker="none"))
    ours, peer = socket.socketpair()
    opening = websocket_open(
        headers={},
        query="",
        subprotocols=["actioncable-v1-json"],
        fresh_sid="bench",
        jwt_param="jid",
        ping_interval=3.0,
        ping_precision="s",
    )
    core = server.session_rules.websocket_core(opening, now=0.0, ping_jitter=0.0)
    assert not isinstance(core, type(None))
    core.accept("{}")  # type: ignore[union-attr]
    core.events()  # type: ignore[union-attr]
    session = WebSocketSession(
        server,
        trio.SocketStream(trio.socket.from_stdlib_socket(ours)),
        core,  # type: ignore[arg-type]
    )
    session.scheduled_at = trio.current_time() + 1e9  # no ping due during the loop
    null = os.open(os.devnull, os.O_WRONLY)
    session._fd = null
    node = server.node
    node.registry.add(pub.stream, IDENTIFIER, session)
    publications = [pub]
    step(
        "node.publish([pub]) -> one subscriber (write to /dev/null)",
        lambda: node.publish(publications),
    )
    os.close(null)
    ours.close()
    peer.close()


if __name__ == "__main__":
    main()
