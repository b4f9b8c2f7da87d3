"""Micro-benchmarks (``timeit``, best of 7) of the per-POST steps Cableway does above the
trio floor in scenario (c), on the load generator's own request (200-byte pad, signed Turbo
identifier): what each costs alone, next to the floor's equivalent. See docs/benchmarks.md,
"Where Cableway's per-POST time goes above the trio floor"::

    .venv/bin/python bench/postprof_steps.py
"""

from __future__ import annotations

import contextlib
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


def step(name: str, fn: Callable[[], object], number: int = 100_000, per: int = 1) -> float:
    """Best of 7 of ``number`` calls of ``fn``, in µs per step (``fn`` does ``per``)."""
    best = min(timeit.repeat(fn, number=number, repeat=7)) / (number * per) * 1e6
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

    print("-- the POST loop (fast_requests over POSTs already read, publish a no-op)")
    intake_loop()

    async def in_trio() -> None:
        step("trio.current_time() (fan_out's early-ping clock)", trio.current_time)
        step("time.time()", __import__("time").time)
        print("-- the whole delivery (Node.publish of one publication, one subscriber)")
        publish_one(pub)

    trio.run(in_trio)


def publish_one(pub: Publication) -> None:
    """``Node.publish([pub])`` to the one subscriber of its stream: a real WebSocket
    session (pings every 3 s, none due) on one end of a socket pair, the server as
    ``bench/run.py`` runs it for (c) (``--broker=none``).

    Every write must be taken whole, as in (c) where the client keeps up: the peer end
    is drained after every ``BATCH`` publishes (one ``recv_into`` per ~64 KiB, a few
    hundredths of a µs per publish, included). Since ``abb0a0c`` the fan-out writes with
    ``send`` on the session's socket, not ``os.write`` on ``_fd``: the earlier version of
    this step, which pointed ``_fd`` at ``/dev/null`` and never drained the pair, timed
    the refused-write path (``BlockingIOError``, the outbox, a flush to ``/dev/null``)
    once the pair's buffer was full: 4.0 µs instead of the ~2.5 µs of a write taken whole.
    The session is checked to be writable, its outbox empty, at the end."""
    import socket

    from cableway.config import Config
    from cableway.protocol.handshake import websocket_open
    from cableway.transport.server import Server
    from cableway.transport.ws import WebSocketSession

    server = Server(Config(host="127.0.0.1", port=0, public=True, broker="none"))
    ours, peer = socket.socketpair()
    peer.setblocking(False)
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
    node = server.node
    node.registry.add(pub.stream, IDENTIFIER, session)
    publications = [pub]
    sink = bytearray(1 << 16)
    publish = node.publish

    def drain() -> None:
        try:
            while peer.recv_into(sink):
                pass
        except BlockingIOError:
            pass

    def batch() -> None:
        for _ in range(BATCH):
            publish(publications)
        drain()

    def sends_only() -> None:
        sock = session._sock
        assert sock is not None
        for _ in range(BATCH):
            sock.send(frame)
        drain()

    sent_before = server.metrics._values["data_sent_total"]
    publish(publications)
    frame_size = server.metrics._values["data_sent_total"] - sent_before
    drain()
    frame = b"x" * frame_size
    step(
        "node.publish([pub]) -> one subscriber (socket pair, drained)",
        batch,
        number=100_000 // BATCH,
        per=BATCH,
    )
    step("  send() of the same frame + drain alone", sends_only, number=100_000 // BATCH, per=BATCH)
    assert session._writable, "a write was not taken whole"
    assert not session.outbox.size, "a write was not taken whole"
    ours.close()
    peer.close()


def intake_loop() -> None:
    """``fast_requests`` (the broadcast endpoint's raw POST loop) over ``BATCH`` of the
    load generator's keep-alive POSTs already in the buffer: per POST the head (found,
    parsed and checked, or known), the body copy, ``judge``, ``account``, the held
    ``201``; ``server.publish`` does nothing (the delivery is timed below)."""
    from types import SimpleNamespace

    from cableway.ops.metrics import Metrics
    from cableway.transport import broadcast_endpoint

    request = (
        b"POST /_broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
    )
    data = request * BATCH

    class Done(Exception):
        pass

    class FakeConn:
        max_head = 16384
        scanned = 0
        eof = False
        held = 0
        buf = bytearray()
        deadline = SimpleNamespace(deadline=0.0)
        answers = 0

        async def wait_head(self, *_args: object, **_kwargs: object) -> None:
            raise Done

        def created_raw(self, answer: bytes) -> None:
            self.answers += 1

    config = SimpleNamespace(http_broadcast_path="/_broadcast", broadcast_key=None)
    server = SimpleNamespace(
        config=config,
        max_broadcast_body=65536,
        idle_scopes=set(),
        metrics=Metrics(),
        handshake_timeout=10.0,
        publish=lambda _publications: None,
    )
    conn = FakeConn()

    def loop() -> None:
        conn.buf = bytearray(data)
        coroutine = broadcast_endpoint.fast_requests(server, conn)  # type: ignore[arg-type]
        with contextlib.suppress(Done):
            coroutine.send(None)

    step("fast_requests loop, per POST (publish a no-op)", loop, number=100_000 // BATCH, per=BATCH)
    assert conn.answers >= BATCH, "a POST was not served on the fast path"


#: publishes between two drains of the socket pair's peer end
BATCH = 100


if __name__ == "__main__":
    main()
