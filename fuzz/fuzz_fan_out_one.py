# Invariant: fan_out_one gives one subscriber exactly what fan_out([it], ...) gives it.
"""Fuzz the one-subscriber delivery path (``cableway.transport.fanout.fan_out_one``)
against the batch fan-out (``fan_out``) it stands in for.

The input: 8 state bytes, then ``identifier 0xFF data 0xFF stream`` (UTF-8; an
invalid byte such as 0xFF becomes U+FFFD, which separates the three). The state bytes pick

0. the kind of session: a WebSocket, or an event stream with its unwrap/raw/chunked
   flags (kinds that leave some messages out);
1. ``exclude_socket``: none, the session itself, another session;
2. whether the subscription waits for its history (held), and the offset/epoch stamp;
3. closing, a close pending, or open;
4. the output state: free, bytes pending, a writer running, over the bound with a
   writer on a socket that takes nothing, no descriptor;
5. the ping interval (1-4 s) and precision;
6. the time of the delivery, from 0 to past the first ping (so a ping due soon rides
   the write, or not);
7. the publication's ``broadcast_type``.

The same session is built twice on socket pairs in that state; the message (built by
``EncodedBroadcast`` from the publication, as the node does) goes to one copy through
``fan_out([session], ...)`` and to the other through ``fan_out_one(session, ...)``.
Invariant: the same (deliveries, bytes written), the same bytes at the peer (byte for
byte: the wall clock of a ping is fixed), the same outbox, held messages, ping
schedule, pending close and counters.

Run: ``python fuzz/fuzz_fan_out_one.py -runs=100000 -max_len=1024 fuzz/corpus/fan_out_one/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import socket
from typing import Any

import trio
import trio.testing

from cableway.config import Config
from cableway.protocol.broadcast import EncodedBroadcast, Publication
from cableway.protocol.handshake import websocket_open
from cableway.transport import fanout
from cableway.transport.fanout import fan_out, fan_out_one
from cableway.transport.server import Server
from cableway.transport.session import Session
from cableway.transport.sse import SseSession
from cableway.transport.ws import WebSocketSession

CONFIG = Config(host="127.0.0.1", port=0, public=True)
UNIX = 1_700_000_000.25


class _FixedTime:
    """The fan-out's wall clock (a ping's timestamp), the same in both runs."""

    @staticmethod
    def time() -> float:
        return UNIX


fanout.time = _FixedTime  # type: ignore[assignment]


def _session(state: bytes, peers: list[socket.socket]) -> Session:
    server = Server(CONFIG)
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    peers += [ours, peer]
    opening = websocket_open(
        headers={},
        query=f"pi={1 + state[5] % 4}",
        subprotocols=["actioncable-v1-json"],
        fresh_sid="me",
        jwt_param="jid",
        ping_interval=3.0,
        ping_precision="ms" if state[5] & 0x80 else "s",
    )
    core = server.session_rules.websocket_core(opening, now=0.0, ping_jitter=0.0)
    assert not isinstance(core, type(None))
    core.accept("{}")  # type: ignore[union-attr]
    core.events()  # type: ignore[union-attr]
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    kind = state[0] % 9
    session: Session
    if kind == 0:
        session = WebSocketSession(server, stream, core)  # type: ignore[arg-type]
    else:
        flags = kind - 1
        session = SseSession(
            server,
            stream,
            core,  # type: ignore[arg-type]
            unwrap=bool(flags & 1),
            raw=bool(flags & 2),
            chunked=bool(flags & 4),
        )
    server.schedule(session)
    return session


def _prepare(session: Session, state: bytes, identifier: str) -> None:
    if state[2] & 1:
        session.core.held = {identifier}
    closing = state[3] % 3
    if closing == 1:
        session._closing = True
    elif closing == 2:
        session._pending_close = ("remote", True, 1000, "")
    earlier = session.encode('{"identifier":"e","message":"' + "x" * (state[4] >> 3) + '"}')
    assert earlier is not None
    output = state[4] % 5
    if output == 1:
        session.outbox.push(earlier)
    elif output == 2:
        session._writer_active = True
        session.outbox.push(earlier)
    elif output == 3:
        session._writer_active = True
        session._fd = -1
        session.outbox.max_bytes = 1 + (state[4] >> 3)
        session.outbox.push(earlier + earlier)
    elif output == 4:
        session._fd = -1
    session._recheck()  # the "writable now" flag, as the session keeps it when these change


def _read(peer: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def _deliver(state: bytes, identifier: str, text: str, offset: int | None, one: bool) -> Any:
    peers: list[socket.socket] = []
    try:
        session = _session(state, peers)
        _prepare(session, state, identifier)
        exclude = (None, session.sid, "other")[state[1] % 3]
        due = session.core.next_deadline() or 0.0
        at = (due + 1.0) * state[6] / 255

        async def main() -> tuple[int, int]:
            clock.jump(at)
            if one:
                return fan_out_one(session, identifier, text, offset, exclude)
            return fan_out(
                [session], identifier, [text], [offset], None if exclude is None else [exclude]
            )

        clock = trio.testing.MockClock()
        result = trio.run(main, clock=clock)
        return (
            result,
            _read(peers[1]),
            b"".join(bytes(chunk) for chunk in session.outbox._chunks),
            session.held.held(identifier),
            session.timer_deadline(),  # (the cached pings given back)
            session.scheduled_at,
            session._pending_close,
            session.server.metrics.snapshot(),
        )
    finally:
        for sock in peers:
            sock.close()


def test_one_input(data: bytes) -> None:
    if len(data) < 8:
        return
    state, rest = data[:8], data[8:].decode("utf-8", "replace")
    identifier, _, rest = rest.partition("\ufffd")
    payload, _, stream = rest.partition("\ufffd")
    offset, epoch = (None, None) if not state[2] & 2 else (state[2] >> 2, "ep")
    kinds = (None, "presence", "x\ud800", "")
    pub = Publication(stream or "s", payload, broadcast_type=kinds[state[7] % 4])
    text = EncodedBroadcast(pub, offset=offset, epoch=epoch).for_identifier(identifier)
    batch = _deliver(state, identifier, text, offset, one=False)
    single = _deliver(state, identifier, text, offset, one=True)
    assert single == batch, (single, batch)


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway"])
