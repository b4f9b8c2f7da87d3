"""WebSocket compression (permessage-deflate): bytes on the wire and server CPU per delivery.

    .venv/bin/python bench/compression.py                      # 500 subscribers, 200 broadcasts
    .venv/bin/python bench/compression.py --total 1000 --count 300 --json compression.jsonl

One Cableway (``--enable_ws_compression --public``, CPU 0) serves, in the same run, two phases
per template, one after the other, with the same subscribers count and the same broadcasts:
``plain`` (the clients offer no compression) and ``deflate`` (every client offers what
browsers offer, ``permessage-deflate; client_max_window_bits``). Each broadcast is a typical
Turbo Stream, a different one each time: ``message``, a ``<turbo-stream action="append">``
whose template is a 1.3-1.5 KB chat message partial (Tailwind classes, an avatar, a
timestamp, a delete form with a random authenticity token); ``list``, an ``update`` whose
template is a 2.3 KB list of eight member rows. The readers (raw sockets on one epoll loop,
CPU 1) count the bytes of the WebSocket frames they receive; the server's CPU time
(``/proc/<pid>/stat``) over a phase, divided by its deliveries, is the CPU per delivery. The
first reader of each phase decodes every message (inflating the compressed ones): both
phases must carry the same messages.

Then, in this process, the small-message question: for payloads of a few sizes (a ping, a
confirmation, a short broadcast), the compressed frame against the plain one and the time to
compress it, which is why payloads under ``COMPRESS_MIN_SIZE`` go out uncompressed.
Bounded in count and time (``--max-seconds`` per phase).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import tempfile
import time
import timeit
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

from run import (  # bench/ is not a package
    LOADGEN_CPU,
    SERVER_CPU,
    can_pin,
    free_port,
    machine,
    say,
    spawn,
    stop,
    stop_all,
    wait_listening,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
OFFER = "permessage-deflate; client_max_window_bits"
IDENTIFIER = json.dumps({"channel": "$pubsub", "stream_name": "room"})
_TEXT = (
    "the deploy went out fine and the dashboard looks good now but we should keep an eye "
    "on the queue latency tonight because the import job is still running for the big "
    "customer and it may spill over into the morning batch window"
)
WORDS = _TEXT.split()


def turbo_stream(seq: int) -> str:
    """A 1.3-1.5 KB Turbo Stream append of one chat message partial (deterministic per seq)."""
    rnd = random.Random(seq)
    author = rnd.choice(["Alice Martin", "Bob Okafor", "Chen Wei", "Dana Kowalski"])
    body = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(12, 30)))
    token = base64.b64encode(rnd.randbytes(64)).decode()
    minute = seq % 60
    return (
        f'<turbo-stream action="append" target="room_messages"><template>'
        f'<div id="message_{100000 + seq}" class="message flex items-start gap-3 px-4 py-2 '
        f'hover:bg-gray-50" data-controller="message" data-message-author-id-value="{seq % 7}">'
        f'<img class="h-8 w-8 rounded-full" src="/rails/active_storage/representations/'
        f'redirect/eyJfcmFpbHMiOnsiZGF0YSI6{seq % 97},avatar.png" alt="{author}">'
        f'<div class="min-w-0 flex-1"><div class="flex items-baseline gap-2">'
        f'<span class="font-semibold text-gray-900">{author}</span>'
        f'<time class="text-xs text-gray-500" datetime="2026-12-07T06:{minute:02d}:00Z" '
        f'data-controller="local-time">06:{minute:02d}</time></div>'
        f'<div class="prose prose-sm text-gray-800"><p>{body}</p></div>'
        f'<div class="mt-1 flex gap-2 text-xs">'
        f'<form class="button_to" method="post" action="/rooms/1/messages/{100000 + seq}">'
        f'<input type="hidden" name="_method" value="delete" autocomplete="off">'
        f'<button class="text-red-600 hover:underline" data-turbo-confirm="Delete this '
        f'message?" type="submit">Delete</button><input type="hidden" '
        f'name="authenticity_token" value="{token}" autocomplete="off"></form>'
        f'<a class="text-gray-600 hover:underline" data-turbo-frame="message_{100000 + seq}" '
        f'href="/rooms/1/messages/{100000 + seq}/edit">Edit</a></div></div></div>'
        f"</template></turbo-stream>"
    )


def turbo_list(seq: int) -> str:
    """A 2.3 KB Turbo Stream update of a list partial: who is in the room (eight rows)."""
    rnd = random.Random(seq)
    names = [
        "Alice Martin",
        "Bob Okafor",
        "Chen Wei",
        "Dana Kowalski",
        "Emeka Obi",
        "Farah Haddad",
        "Goran Ilic",
        "Hana Sato",
        "Ines Duarte",
        "Jonas Berg",
    ]
    rows = "".join(
        f'<li id="member_{i}" class="flex items-center gap-2 px-3 py-1.5 text-sm">'
        f'<span class="h-2 w-2 rounded-full {rnd.choice(["bg-green-500", "bg-yellow-400"])}">'
        f'</span><a class="truncate text-gray-800 hover:underline" href="/users/{i}">{name}</a>'
        f'<span class="ml-auto text-xs text-gray-400">{rnd.randint(1, 59)}m</span></li>'
        for i, name in enumerate(rnd.sample(names, 8), start=seq)
    )
    return (
        '<turbo-stream action="update" target="room_members"><template>'
        f'<ul class="divide-y divide-gray-100" data-count="{seq}">{rows}</ul>'
        "</template></turbo-stream>"
    )


TEMPLATES = {"message": turbo_stream, "list": turbo_list}


def client_frame(text: str) -> bytes:
    payload = text.encode()
    n = len(payload)
    head = bytes((0x81, 0x80 | n)) if n < 126 else struct.pack("!BBH", 0x81, 0x80 | 126, n)
    return head + b"\x00\x00\x00\x00" + payload


class Reader:
    """One subscriber: its socket, the bytes of the frames it got, its frame parser."""

    def __init__(self, port: int, offer: bool) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.frames: list[tuple[int, bytes]] = []  # (first byte, payload), decoding readers
        self.count = 0
        self.wire = 0
        ext = f"Sec-WebSocket-Extensions: {OFFER}\r\n" if offer else ""
        self.sock.sendall(
            (
                "GET /cable?pi=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: actioncable-v1-json\r\n{ext}\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.negotiated = b"permessage-deflate" in head.lower()
        self.sock.sendall(
            client_frame(json.dumps({"command": "subscribe", "identifier": IDENTIFIER}))
        )
        while not any(b"confirm_subscription" in p for _, p in self.frames):
            self.feed(self.sock.recv(65536), keep=True)
        self.frames.clear()
        self.count = self.wire = 0
        self.sock.setblocking(False)

    def feed(self, data: bytes, *, keep: bool) -> None:
        self.wire += len(data)
        buf = self.buf + data
        i, end = 0, len(buf)
        while end - i >= 2:
            n = buf[i + 1] & 0x7F
            head = 2
            if n == 126:
                if end - i < 4:
                    break
                n, head = struct.unpack_from("!H", buf, i + 2)[0], 4
            elif n == 127:
                if end - i < 10:
                    break
                n, head = struct.unpack_from("!Q", buf, i + 2)[0], 10
            if end - i < head + n:
                break
            if keep:
                self.frames.append((buf[i], buf[i + head : i + head + n]))
            self.count += 1
            i += head + n
        self.buf = buf[i:]

    def messages(self) -> list[str]:
        out = []
        for b0, payload in self.frames:
            if b0 & 0x40:
                payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
            out.append(json.loads(payload)["message"])
        return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(
    name: str, template: str, offer: bool, port: int, bport: int, pid: int, args: argparse.Namespace
) -> dict[str, Any]:
    readers = [Reader(port, offer) for _ in range(args.total)]
    assert all(r.negotiated is offer for r in readers), "unexpected negotiation"
    ep = select.epoll()
    table = {r.sock.fileno(): r for r in readers}
    for fd in table:
        ep.register(fd, select.EPOLLIN)
    pub = socket.create_connection(("127.0.0.1", bport))
    pub.setblocking(False)
    expected = args.count * args.total
    interval = 1.0 / args.rate
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    deadline = t0 + args.max_seconds
    sent = received = 0
    responses = b""
    while received < expected and time.monotonic() < deadline:
        now = time.monotonic()
        if sent < args.count and now >= t0 + sent * interval:
            html = TEMPLATES[template](sent)
            body = json.dumps({"stream": "room", "data": json.dumps(html)}).encode()
            pub.sendall(
                b"POST /_broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            sent += 1
        for fd, _ in ep.poll(0.002):
            reader = table[fd]
            try:
                data = reader.sock.recv(262144)
            except BlockingIOError:
                continue
            before = reader.count
            reader.feed(data, keep=reader is readers[0])
            received += reader.count - before
        with contextlib.suppress(BlockingIOError):
            responses += pub.recv(65536)
    wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
    pub.settimeout(2.0)  # the last responses may still be on their way
    with contextlib.suppress(TimeoutError):
        while responses.count(b"HTTP/1.1 ") < sent:
            data = pub.recv(65536)
            if not data:
                break
            responses += data
    wire = sum(r.wire for r in readers)
    messages = readers[0].messages()
    for r in readers:
        r.sock.close()
    pub.close()
    ep.close()
    return {
        "phase": name,
        "template": template,
        "subscribers": args.total,
        "broadcasts": sent,
        "posts_ok": responses.count(b"HTTP/1.1 20"),
        "deliveries": received,
        "expected": expected,
        "wire_bytes_per_delivery": round(wire / max(received, 1), 1),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_us_per_delivery": round(cpu / max(received, 1) * 1e6, 3),
        "wall_s": round(wall, 2),
        "messages": messages,
    }


def small_messages() -> list[dict[str, Any]]:
    """Compressed vs plain frame size and compress time for small payloads."""
    from cableway.protocol.wsframe import Deflater, data_frame

    deflater = Deflater()
    samples = {
        "ping": '{"type":"ping","message":1765090800}',
        "confirm": '{"identifier":' + json.dumps(IDENTIFIER) + ',"type":"confirm_subscription"}',
        "remove": json.dumps(
            {
                "identifier": IDENTIFIER,
                "message": '<turbo-stream action="remove" target="message_100042"></turbo-stream>',
            }
        ),
        "typing": json.dumps(
            {
                "identifier": IDENTIFIER,
                "message": '<turbo-stream action="update" target="typing"><template>'
                "Alice is typing</template></turbo-stream>",
            }
        ),
        "append": json.dumps({"identifier": IDENTIFIER, "message": turbo_stream(7)}),
    }
    rows = []
    for name, text in samples.items():
        payload = text.encode()
        plain = len(data_frame(payload))
        packed = len(data_frame(deflater.compress(payload), compressed=True))
        loops = 20000
        seconds = timeit.timeit(lambda p=payload: deflater.compress(p), number=loops)  # type: ignore[misc]
        rows.append(
            {
                "message": name,
                "payload": len(payload),
                "plain_frame": plain,
                "deflate_frame": packed,
                "compress_us": round(seconds / loops * 1e6, 2),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total", type=int, default=500, help="subscribers per phase")
    parser.add_argument("--count", type=int, default=200, help="broadcasts per phase")
    parser.add_argument("--rate", type=float, default=20.0, help="broadcasts per second")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per phase")
    parser.add_argument("--json", help="append JSON lines (meta and results) here")
    args = parser.parse_args()
    if can_pin():
        os.sched_setaffinity(0, {LOADGEN_CPU})
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    meta = machine() | {"argv": sys.argv[1:]}
    say(f"machine: {meta['cpu']} x{meta['cpus']}, load {meta['loadavg']}, commit {meta['commit']}")
    port, bport = free_port(), free_port()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cableway-compression-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "cableway",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--http_broadcast_port={bport}",
            "--public",
            "--broker=none",
            "--enable_ws_compression",
            "--log_level=warn",
        ]
        server = spawn(cmd, SERVER_CPU, Path(tmp) / "server.log")
        try:
            if not wait_listening(server, [port, bport]):
                raise SystemExit("cableway did not start")
            for template in TEMPLATES:
                for name, offer in (("plain", False), ("deflate", True)):
                    results.append(phase(name, template, offer, port, bport, server.pid, args))
                    say(f"{template} {name}: done")
        finally:
            stop(server)
    summaries = []
    ok = True
    for plain, deflate in zip(results[::2], results[1::2], strict=True):
        same = plain.pop("messages") == deflate.pop("messages")
        complete = all(r["deliveries"] == r["expected"] for r in (plain, deflate))
        ok = ok and same and complete
        summaries.append(
            {
                "template": plain["template"],
                "same_messages": same,
                "wire_ratio": round(
                    deflate["wire_bytes_per_delivery"] / plain["wire_bytes_per_delivery"], 3
                ),
                # None when a phase was too short for the CPU clock (10 ms ticks)
                "cpu_ratio": round(
                    deflate["server_cpu_us_per_delivery"] / plain["server_cpu_us_per_delivery"],
                    3,
                )
                if plain["server_cpu_us_per_delivery"]
                else None,
            }
        )
    small = small_messages()
    for row in (*results, *summaries, *small):
        print(json.dumps(row))
    if args.json:
        with open(args.json, "a") as f:
            for record in (meta, *results, *summaries, *small):
                f.write(json.dumps(record) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
