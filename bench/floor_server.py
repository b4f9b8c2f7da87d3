"""The floor: the least a Python server can do to fan out, on one selectors loop.

It accepts sockets, completes a minimal WebSocket handshake (``welcome`` on connect,
``confirm_subscription`` for the first ``subscribe``), and serves ``POST /_broadcast``
on a second port. For each publication it builds the frame once and writes it to every
subscriber of the stream with **one** ``send()`` per socket. Nothing else: no outbox, no
validation beyond what the benchmark needs (the signed stream name is verified, once per
subscription, so that subscribe rates compare like with like; a JWT in ``?jid=`` is
accepted unread).

Pings, as the Action Cable protocol has them and real clients expect: every WebSocket
connection gets ``{"type":"ping","message":<unix time>}`` every ``?pi=`` seconds (3 by
default, ``?pi=0``: none), its first one ``pi`` seconds after its ``welcome``; an SSE
stream gets the same as ``event: ping`` / ``data: …`` (as Cableway sends it). The frame is
built once per second of wall-clock time and written to every socket that is due, with one
``send()`` each. Due times are spread as Cableway's are (each connection's own schedule,
from the time it connected), and like Cableway's shared timer the floor wakes at most
every 10 ms (``TIMER_QUANTUM``) and writes every ping due by then: a ping is at most that
late, never early. Connections are kept in a FIFO per interval: with one interval, due
times come in connection order, so a tick costs only the sockets it writes to.

``--jitter`` spreads the first ping of each connection as Cableway does (due
``(0.5 + random()) * pi`` after its ``welcome``, so that a reconnect storm's pings do not
come all at once): first pings wait in a heap, later ones in the FIFO of their interval.

``--coalesce`` writes all the frames of one batch (one POST carrying an array) to a
socket with a single ``send()``: the floor of coalesced writes.

``GET /events?stream=NAME`` on the main port is a bare Server-Sent Events stream
(``data: <message>\\n\\n`` per publication) for the SSE fan-out scenario.

Usage: python bench/floor_server.py --port P --broadcast-port B --secret S [--coalesce] [--jitter]
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import heapq
import hmac
import json
import random
import selectors
import signal
import socket
import struct
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"
WELCOME = '{"type":"welcome"}'
TIMER_QUANTUM = 0.01  # as Cableway's shared timer: pings at most this late, never early
DEFAULT_PI = 3.0
HTTP_201 = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
HTTP_404 = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\n"
)


def text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def verify(signed: str, secret: bytes) -> str | None:
    data, _, digest = signed.rpartition("--")
    want = hmac.new(secret, data.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, digest):
        return None
    value = json.loads(base64.b64decode(data))
    return value if isinstance(value, str) else None


class Client:
    """One accepted socket (WebSocket, SSE or broadcast HTTP)."""

    __slots__ = ("buf", "dead", "kind", "pending", "sock", "stream", "upgraded")

    def __init__(self, sock: socket.socket, kind: str) -> None:
        self.sock = sock
        self.kind = kind  # "main" until upgraded to "ws"/"sse", or "http" (broadcast port)
        self.buf = b""
        self.pending = bytearray()
        self.stream: tuple[str, str] | None = None
        self.upgraded = False
        self.dead = False


class Floor:
    def __init__(self, secret: str, coalesce: bool, jitter: bool = False) -> None:
        self.secret = secret.encode()
        self.coalesce = coalesce
        self.jitter = jitter
        # --jitter: (due, sequence, interval, client) of every first ping not yet sent
        self.first_pings: list[tuple[float, int, float, Client]] = []
        self.first_seq = 0
        self.sel = selectors.DefaultSelector()
        # stream -> identifier -> list of sockets (WebSocket); stream -> sockets (SSE)
        # members as insertion-ordered dicts: delivery in subscription order, and a leaving
        # client is removed in O(1) (a list made every churn disconnect scan the stream)
        self.subs: dict[str, dict[str, dict[Client, None]]] = {}
        self.sse: dict[str, dict[Client, None]] = {}
        self.running = True
        # ping interval -> FIFO of (due time, client); due times ascend within a FIFO
        self.pings: dict[float, collections.deque[tuple[float, Client]]] = {}
        self.ping_second = -1
        self.ping_frame = b""
        self.ping_event = b""
        self.pings_sent = 0
        self.next_tick = 0.0

    # -- plumbing ------------------------------------------------------------------

    def listen(self, port: int, kind: str) -> None:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", port))
        lsock.listen(4096)
        lsock.setblocking(False)
        self.sel.register(lsock, selectors.EVENT_READ, ("listen", kind))

    def accept(self, lsock: socket.socket, kind: str) -> None:
        for _ in range(256):
            try:
                sock, _addr = lsock.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = Client(sock, kind)
            self.sel.register(sock, selectors.EVENT_READ, client)

    def send(self, client: Client, data: bytes) -> None:
        """One ``send()``; what the kernel does not take waits for writability."""
        if client.pending:
            client.pending += data
            return
        try:
            n = client.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self.drop(client)
            return
        if n < len(data):
            client.pending += data[n:]
            self.sel.modify(client.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)

    def flush(self, client: Client) -> None:
        try:
            n = client.sock.send(client.pending)
        except BlockingIOError:
            return
        except OSError:
            self.drop(client)
            return
        del client.pending[:n]
        if not client.pending:
            self.sel.modify(client.sock, selectors.EVENT_READ, client)

    def drop(self, client: Client) -> None:
        try:
            self.sel.unregister(client.sock)
        except (KeyError, ValueError):
            return
        self.forget(client)
        client.sock.close()

    def forget(self, client: Client) -> None:
        """Mark ``client`` dead and take it out of its stream's members (O(1))."""
        client.dead = True  # its ping schedule entry is skipped when it comes due
        if client.stream is not None:
            stream, identifier = client.stream
            if client.kind == "sse":
                members = self.sse.get(stream, {})
            else:
                members = self.subs.get(stream, {}).get(identifier, {})
            members.pop(client, None)

    def ping_due(self) -> float:
        """Seconds until the next tick that has pings to write (1.0 when none)."""
        now = time.monotonic()
        first = min((q[0][0] for q in self.pings.values() if q), default=now + 1.0)
        if self.first_pings:
            first = min(first, self.first_pings[0][0])
        return max(TIMER_QUANTUM, first - now) if first > now else 0.0

    def tick(self) -> None:
        """Write the ping frame to every socket due by now (one ``send()`` each)."""
        now = time.monotonic()
        second = int(time.time())
        if second != self.ping_second:  # one frame per second of wall clock, shared
            self.ping_second = second
            text = '{"type":"ping","message":' + str(second) + "}"
            self.ping_frame = text_frame(text.encode())
            self.ping_event = f"event: ping\ndata: {text}\n\n".encode()
        frame, event, send = self.ping_frame, self.ping_event, self.send
        first = self.first_pings
        while first and first[0][0] <= now:
            due, _, interval, client = heapq.heappop(first)
            if client.dead:
                continue
            send(client, frame if client.kind == "ws" else event)
            self.pings_sent += 1
            self.pings.setdefault(interval, collections.deque()).append((due + interval, client))
        for interval, queue in self.pings.items():
            while queue and queue[0][0] <= now:
                due, client = queue.popleft()
                if client.dead:
                    continue
                send(client, frame if client.kind == "ws" else event)
                self.pings_sent += 1
                queue.append((due + interval, client))

    def run(self) -> None:
        while self.running:
            timeout = min(1.0, max(0.0, self.next_tick - time.monotonic()))
            events = self.sel.select(timeout=timeout)
            if time.monotonic() >= self.next_tick:
                self.tick()
                self.next_tick = time.monotonic() + self.ping_due()
            for key, mask in events:
                data = key.data
                if isinstance(data, tuple):
                    self.accept(key.fileobj, data[1])  # type: ignore[arg-type]
                    continue
                client: Client = data
                if mask & selectors.EVENT_WRITE:
                    self.flush(client)
                if mask & selectors.EVENT_READ:
                    self.readable(client)

    def readable(self, client: Client) -> None:
        try:
            chunk = client.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.drop(client)
            return
        client.buf += chunk
        if client.kind == "http":
            self.http_requests(client)
        elif client.kind == "main":
            self.handshake(client)
        elif client.kind == "ws":
            self.ws_frames(client)
        else:
            client.buf = b""  # SSE clients say nothing that matters

    # -- WebSocket -----------------------------------------------------------------

    def handshake(self, client: Client) -> None:
        end = client.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head, client.buf = client.buf[:end].decode("latin-1"), client.buf[end + 4 :]
        lines = head.split("\r\n")
        target = lines[0].split(" ")[1] if " " in lines[0] else "/"
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        query = dict(p.partition("=")[::2] for p in target.partition("?")[2].split("&") if p)
        if target.startswith("/events"):
            stream = query.get("stream", "")
            client.kind = "sse"
            client.stream = (stream, "")
            self.sse.setdefault(stream, {})[client] = None
            self.send(client, SSE_HEAD)
            self.schedule_pings(client, query)
            return
        key = headers.get("sec-websocket-key")
        if not key:
            self.send(client, HTTP_404)
            self.drop(client)
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())
        response = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n"
        )
        if "actioncable-v1-json" in headers.get("sec-websocket-protocol", ""):
            response += b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n"
        client.kind = "ws"
        self.send(client, response + b"\r\n" + text_frame(WELCOME.encode()))
        self.schedule_pings(client, query)
        if client.buf:
            self.ws_frames(client)

    def schedule_pings(self, client: Client, query: dict[str, str]) -> None:
        """First ping ``?pi=`` seconds from now (3 by default; 0: no pings)."""
        try:
            interval = float(query.get("pi") or DEFAULT_PI)
        except ValueError:
            interval = DEFAULT_PI
        if interval > 0 and self.jitter:
            due = time.monotonic() + interval * (0.5 + random.random())
            self.first_seq += 1
            heapq.heappush(self.first_pings, (due, self.first_seq, interval, client))
            self.next_tick = min(self.next_tick, due)
        elif interval > 0:
            queue = self.pings.setdefault(interval, collections.deque())
            due = time.monotonic() + interval
            queue.append((due, client))
            self.next_tick = min(self.next_tick, due)

    def ws_frames(self, client: Client) -> None:
        buf = client.buf
        while len(buf) >= 6:
            opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
            pos = 2
            if n == 126:
                if len(buf) < 8:
                    break
                n, pos = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                self.drop(client)  # no client of ours sends that much
                return
            if len(buf) < pos + 4 + n:
                break
            mask = buf[pos : pos + 4]
            body = bytes(b ^ mask[i & 3] for i, b in enumerate(buf[pos + 4 : pos + 4 + n]))
            buf = buf[pos + 4 + n :]
            if opcode == 8:
                self.drop(client)
                return
            if opcode == 1 and client.stream is None:
                self.subscribe(client, body)
        client.buf = buf

    def subscribe(self, client: Client, body: bytes) -> None:
        command = json.loads(body)
        identifier = command.get("identifier", "")
        params = json.loads(identifier)
        if "signed_stream_name" in params:
            stream = verify(params["signed_stream_name"], self.secret)
        else:
            stream = params.get("stream_name")
        ident_json = json.dumps(identifier)
        if stream is None:
            reply = '{"type":"reject_subscription","identifier":' + ident_json + "}"
        else:
            client.stream = (stream, identifier)
            self.subs.setdefault(stream, {}).setdefault(identifier, {})[client] = None
            reply = '{"type":"confirm_subscription","identifier":' + ident_json + "}"
        self.send(client, text_frame(reply.encode()))

    # -- broadcasts ----------------------------------------------------------------

    def http_requests(self, client: Client) -> None:
        while True:
            buf = client.buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = buf[:end].lower()
            at = head.find(b"content-length:")
            length = 0
            if at >= 0:
                line_end = head.find(b"\r\n", at)
                length = int(head[at + 15 : line_end if line_end >= 0 else None])
            if len(buf) < end + 4 + length:
                return
            body = buf[end + 4 : end + 4 + length]
            client.buf = buf[end + 4 + length :]
            if head.startswith(b"post /_broadcast"):
                value = json.loads(body)
                self.publish(value if isinstance(value, list) else [value])
                self.send(client, HTTP_201)
            else:
                self.send(client, HTTP_404)

    def publish(self, publications: list[dict[str, str]]) -> None:
        # (stream, identifier) -> frames, in order; one send per frame per socket unless
        # --coalesce, then one send per socket for the whole batch
        batches: dict[tuple[str, str], list[bytes]] = {}
        sse_batches: dict[str, list[bytes]] = {}
        for pub in publications:
            stream, data = pub["stream"], pub["data"]
            for identifier in self.subs.get(stream, ()):
                payload = '{"identifier":' + json.dumps(identifier) + ',"message":' + data + "}"
                batches.setdefault((stream, identifier), []).append(text_frame(payload.encode()))
            if self.sse.get(stream):
                sse_batches.setdefault(stream, []).append(f"data: {data}\n\n".encode())
        send = self.send
        for (stream, identifier), frames in batches.items():
            members = list(self.subs[stream][identifier])
            if self.coalesce and len(frames) > 1:
                frames = [b"".join(frames)]
            for frame in frames:
                for client in members:
                    send(client, frame)
        for stream, events in sse_batches.items():
            members = list(self.sse[stream])
            if self.coalesce and len(events) > 1:
                events = [b"".join(events)]
            for event in events:
                for client in members:
                    send(client, event)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--broadcast-port", type=int, required=True)
    parser.add_argument("--secret", default="bench-secret")
    parser.add_argument("--coalesce", action="store_true")
    parser.add_argument("--jitter", action="store_true", help="spread first pings as Cableway")
    args = parser.parse_args()
    floor = Floor(args.secret, args.coalesce, args.jitter)
    floor.listen(args.port, "main")
    floor.listen(args.broadcast_port, "http")

    def stop(*_: object) -> None:
        floor.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"floor listening on {args.port} (broadcasts on {args.broadcast_port})", flush=True)
    floor.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
