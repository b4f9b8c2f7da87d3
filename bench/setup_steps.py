"""The pure steps of one connection's set-up, timed in-process (``timeit``).

    .venv/bin/python bench/setup_steps.py

What ``bench/setup_cost.py`` measures whole (server CPU per connection over sockets),
split into the steps that need no socket: the head's parse and checks, the handshake's
mapping (``websocket_open``), the ``101``'s bytes, the core and its identification, the
``subscribe`` command with its confirmation, the client's close, and the session's
removal. Each is timed warm (best of 5 repeats); a server in the mix runs them cold,
between other work, so these are lower bounds. Configured as ``bench/run.py`` starts
Cableway (public mode, signed Turbo streams, ``--broker=none``).
"""

from __future__ import annotations

import json
import secrets
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import WS_KEY, client_frame, sign_stream_name
from run import PING_INTERVAL, SECRET

from cableway.config import Config
from cableway.protocol.httphead import head_size, parse_upgrade_head
from cableway.transport.httpconn import Request
from cableway.transport.server import Server
from cableway.transport.upgrade import answer_101, handshake_refusal, upgrade_headers

try:
    from cableway.transport.ws import fast_close_reply
except ImportError:  # a baseline before it (PYTHONPATH=<dir holding the other cableway>)
    fast_close_reply = None

HEAD = (
    f"GET /cable?pi={PING_INTERVAL} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
).encode()
IDENTIFIER = json.dumps(
    {"channel": "Turbo::StreamsChannel", "signed_stream_name": sign_stream_name("churn", SECRET)},
    separators=(",", ":"),
)
SUBSCRIBE = json.dumps({"command": "subscribe", "identifier": IDENTIFIER}, separators=(",", ":"))
CLOSE = b"\x88\x82\x01\x02\x03\x04" + bytes((0x03 ^ 1, 0xE8 ^ 2))


def main() -> None:
    config = Config(
        host="127.0.0.1",
        port=0,
        public=True,
        turbo_streams=True,
        turbo_streams_secret=SECRET,
        broker="none",
    )
    server = Server(config)
    rules = server.session_rules
    buf = bytearray(HEAD)

    def head() -> Request:
        size = head_size(buf, 65536, 0)
        parsed = parse_upgrade_head(buf, size)
        assert parsed is not None
        request = Request.from_head(parsed.method, parsed.target, parsed.headers)
        assert handshake_refusal(request) is None
        rules.origin_refusal([v for k, v in request.raw_headers if k == b"origin"])
        return request

    request = head()

    def opening() -> object:
        return rules.websocket_open(
            headers=request.headers,
            query=request.query,
            subprotocols=request.header_list("sec-websocket-protocol"),
            fresh_sid=secrets.token_urlsafe(16)[:21],
        )

    op = rules.websocket_open(
        headers=request.headers, query=request.query, subprotocols=[], fresh_sid="x" * 21
    )

    def answer() -> bytes:
        return answer_101(upgrade_headers(request.headers["sec-websocket-key"], op))

    def core_and_identify() -> object:
        core = rules.websocket_core(op, now=0.0, ping_jitter=0.5)
        rules.identify(core, op, None, now=0.0, unix_time=time.time(), metrics=server.metrics)
        core.events()
        return core

    def subscribe() -> object:
        core = rules.websocket_core(op, now=0.0, ping_jitter=0.5)
        rules.identify(core, op, None, now=0.0, unix_time=time.time(), metrics=server.metrics)
        core.events()
        core.receive_message(SUBSCRIBE, now=0.0)
        return core.events()

    steps = {
        "head: size, parse, Request, checks": head,
        "websocket_open (query, pings, sid, token)": opening,
        "101: accept token and bytes": answer,
        "core + identify + welcome": core_and_identify,
        "core + identify + welcome + subscribe + confirm": subscribe,
        "subscribe frame bytes (client side, for scale)": lambda: client_frame(SUBSCRIBE),
    }
    if fast_close_reply is not None:
        close_reply = fast_close_reply
        steps["client close 1000: fast_close_reply"] = lambda: close_reply(CLOSE, 0)
    for name, fn in steps.items():
        number = 20000
        best = min(timeit.repeat(fn, number=number, repeat=5)) / number
        print(f"{best * 1e6:8.2f} us  {name}")


if __name__ == "__main__":
    main()
