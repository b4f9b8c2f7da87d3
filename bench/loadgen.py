"""A lean load generator: raw non-blocking sockets on one epoll loop, in one process.

It opens thousands of WebSocket (or SSE) subscribers, publishes over HTTP
(``POST /_broadcast``, keep-alive and pipelined, open loop), and measures what arrives.
It runs a *program* (a JSON list of steps, see :func:`main`) against one target and
prints one JSON line per step result on stdout; progress goes to stderr.

How it stays cheap:

* Set-up (HTTP upgrade, ``welcome``, ``subscribe``, ``confirm_subscription``) parses
  WebSocket frames properly; client frames are masked with a zero key (valid, free).
* Once subscribed, a connection's byte stream is scanned with one compiled regular
  expression for the benchmark marker that every publication carries
  (``["cwb",<phase>,<seq>,<t_ns>,"pad..."]``, found with ``bytes.find`` then one
  anchored regex match) and counts Action Cable pings, instead of parsing frame by
  frame in Python. The marker survives WebSocket framing, SSE
  ``data:`` lines and JSON escaping, and a partial marker at the end of a read is kept
  for the next read. Each publication carries one marker, so counts are exact.
* ``t_ns`` is the publication's *intended* send time (``time.monotonic_ns``, shared by
  every process on the machine), so latency includes any queueing the load generator or
  the server adds (no coordinated omission).

It reports its own CPU share for every measured window and flags ``loadgen_limited``
when it was above 85 % of a core: the figures of that window then bound the load
generator, not the server.

Several nodes (scenario f): with ``"nodes": [{"port", "pid", "cpu"}, ...]`` in the spec,
subscribers are spread over the nodes in turn (half each for two), publications still go
to ``broadcast_port`` (node 0), and every publish result carries a ``nodes`` list: per
node latency, loss, reordering and CPU per delivery; the top-level ``server_cpu_s``,
``server_cpu_frac``, ``us_per_delivery`` and ``us_per_post`` are then summed over the nodes,
and ``cpu_other_frac`` says, per CPU that hosts a node, what share of the window other
processes took. ``"watch": [{"name", "pid", "cpu"}]`` names other processes of the set-up
(redis-server) whose CPU is reported (``<name>_cpu_s``, ``<name>_cpu_frac``).
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import json
import os
import re
import resource
import select
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

MARK = re.compile(rb'cwb\\?", ?(\d+), ?(\d+), ?(\d+),')
TAIL = 72  # longest partial marker kept between reads
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RECV = 65536
LOADGEN_LIMIT = 0.85

CONNECTING, HANDSHAKE, WELCOME, SUBSCRIBING, READY, DEAD = range(6)


def log(*args: object) -> None:
    print("[loadgen]", *args, file=sys.stderr, flush=True)


def sign_stream_name(stream: str, secret: str) -> str:
    """Rails' MessageVerifier format (same as cableway.auth.signed_streams)."""
    import base64
    import hashlib
    import hmac

    payload = base64.b64encode(json.dumps(stream).encode())
    digest = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    return payload.decode() + "--" + digest


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[i])


class ServerProbe:
    """CPU time (ns precision when the kernel lets us) and RSS of the server process."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.clock: int | None = None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            clk = ctypes.c_int()
            if libc.clock_getcpuclockid(pid, ctypes.byref(clk)) == 0:
                time.clock_gettime_ns(clk.value)
                self.clock = clk.value
        except (OSError, AttributeError):
            self.clock = None
        self.tck = os.sysconf("SC_CLK_TCK")

    def ticks(self) -> tuple[float, float]:
        """(utime, stime) in seconds from /proc (10 ms resolution)."""
        with open(f"/proc/{self.pid}/stat") as f:
            rest = f.read().rpartition(")")[2].split()
        return int(rest[11]) / self.tck, int(rest[12]) / self.tck

    def cpu(self) -> float:
        if self.clock is not None:
            try:
                return time.clock_gettime_ns(self.clock) / 1e9
            except OSError:
                pass
        return sum(self.ticks())

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    @staticmethod
    def cpu_busy(cpu: int) -> float:
        """Busy seconds of one CPU (all processes, irq included) from /proc/stat."""
        tck = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(f"cpu{cpu} "):
                    v = [int(x) for x in line.split()[1:]]
                    return (sum(v[:8]) - v[3] - v[4]) / tck
        return 0.0

    def alive(self) -> bool:
        return os.path.exists(f"/proc/{self.pid}")


class TreeProbe(ServerProbe):
    """A server of several processes (``cableway --workers N``): the supervisor (with the
    hub) and every descendant, found by scanning ``/proc`` for parent pids at each read.

    ``cpu()``, ``ticks()`` and ``rss_kib()`` are summed over the tree; ``split()`` gives
    each process's own CPU (a process gone between two reads loses its last share: the
    workers live as long as the run). ``cpu_busy()`` counts every CPU in ``cpus`` (the
    processes are not pinned to one CPU).
    """

    def __init__(self, pid: int, cpus: list[int]) -> None:
        super().__init__(pid)
        self.cpus = cpus
        self.probes: dict[int, ServerProbe] = {pid: self}

    def pids(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo += children.get(pid, [])
        return out

    def split(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for pid in self.pids():
            probe = self.probes.get(pid)
            if probe is None:
                probe = self.probes[pid] = ServerProbe(pid)
            try:
                out[pid] = ServerProbe.cpu(probe)
            except OSError:
                continue
        return out

    def cpu(self) -> float:
        return sum(self.split().values())

    def ticks(self) -> tuple[float, float]:
        user = system = 0.0
        for pid in self.pids():
            try:
                u, s = ServerProbe.ticks(self.probes.get(pid) or ServerProbe(pid))
            except OSError:
                continue
            user, system = user + u, system + s
        return user, system

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                total += ServerProbe.rss_kib(self.probes.get(pid) or ServerProbe(pid))
        return total

    def cpu_busy(self, cpu: int) -> float:  # type: ignore[override]
        return sum(ServerProbe.cpu_busy(c) for c in self.cpus)


class Conn:
    __slots__ = (
        "buf",
        "dups",
        "epoch",
        "fd",
        "got",
        "history_done",
        "kind",
        "last",
        "node",
        "offset",
        "outbuf",
        "pings",
        "restored",
        "sid",
        "sock",
        "state",
        "stream",
        "subscribe",
        "t_ready",
        "t_start",
        "tail",
        "token",
    )

    def __init__(self, sock: socket.socket, kind: str, stream: str, node: int = 0) -> None:
        self.sock = sock
        self.node = node
        self.fd = sock.fileno()
        self.kind = kind  # "ws", "ext" (extended protocol, frames parsed), "sse" or "pub"
        self.state = CONNECTING
        self.stream = stream
        self.buf = b""
        self.tail = b""
        self.outbuf = bytearray()
        self.last = -1
        self.pings: list[int] = []
        self.subscribe = b""
        self.t_start = 0
        self.t_ready = 0
        self.token = ""  # the JWT sent as ?jid= (empty: none)
        # extended protocol (kind "ext"): session id, stream position, restore progress
        self.sid = ""
        self.epoch = ""
        self.offset = 0
        self.restored = 0  # monotonic_ns of the restored welcome (0: not yet)
        self.history_done = 0  # monotonic_ns of confirm_history (0: not yet)
        self.dups = 0
        self.got = 0  # publications of this phase received (extended protocol)

    def renew(self, sock: socket.socket) -> None:
        """The same client on a new socket (a reconnect): position and session kept."""
        self.sock = sock
        self.fd = sock.fileno()
        self.state = CONNECTING
        self.buf = b""
        self.tail = b""
        self.outbuf = bytearray()
        self.restored = self.history_done = 0


def client_frame(text: str) -> bytes:
    """A masked client text frame (zero mask key: the payload is sent as is)."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return head + b"\x00\x00\x00\x00" + payload


class LoadGen:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.host: str = spec.get("host", "127.0.0.1")
        self.port: int = spec["port"]
        self.bport: int = spec["broadcast_port"]
        self.path: str = spec.get("path", "/cable")
        self.secret: str = spec.get("secret", "bench-secret")
        self.signed: bool = spec.get("signed", True)
        self.payload: int = spec.get("payload", 200)
        self.server_cpu: int = spec.get("server_cpu", 0)
        self.loadgen_cpu: int | None = spec.get("loadgen_cpu")
        self.pad = "x" * self.payload
        #: "server_tree": the server is a process tree (--workers N), its CPU summed
        self.tree: dict[str, Any] | None = spec.get("server_tree")
        if self.tree is not None:
            cpus = list(self.tree.get("cpus") or [self.server_cpu])
            self.probe: ServerProbe = TreeProbe(spec["server_pid"], cpus)
        else:
            self.probe = ServerProbe(spec["server_pid"])
        # the nodes clients connect to (one unless scenario f); node 0 is the server above
        self.multi = "nodes" in spec
        nodes = spec.get("nodes") or [
            {"port": self.port, "pid": spec["server_pid"], "cpu": self.server_cpu}
        ]
        self.node_ports: list[int] = [n["port"] for n in nodes]
        self.node_cpus: list[int | None] = [n.get("cpu") for n in nodes]
        self.node_probes = [self.probe] + [ServerProbe(n["pid"]) for n in nodes[1:]]
        self.watch = [
            (w["name"], ServerProbe(w["pid"]), w.get("cpu")) for w in spec.get("watch", [])
        ]
        self.node_lats = [array.array("q") for _ in nodes]
        self.node_reordered = [0] * len(nodes)
        self.ep = select.epoll()
        self.table: dict[int, Conn] = {}
        self.clients: list[Conn] = []
        self.subs: dict[str, int] = {}  # stream -> ready subscribers
        self.pubs: list[Conn] = []
        self.inflight = 0
        self.failed = 0
        self.fail_reasons: dict[str, int] = {}
        self.dropped = 0  # ready connections the server closed
        self.sse_status: int | None = None
        # per phase
        self.phase = 0
        self.received = 0
        self.reordered = 0
        self.stale = 0
        self.ping_log = False
        self.responses = 0
        self.http_errors = 0
        self.match = MARK.match
        self.identifiers: dict[str, str] = {}
        self.metrics_path: str = spec.get("metrics_path", "")
        self.jwt_secret: str = spec.get("jwt_secret", "")
        self.tokens: list[str] = []
        self.pi: int = int(spec.get("pi", 3))
        self.window_mark: str = spec.get("window_mark", "")
        #: keep-alive connections the POSTs are spread over (a stream keeps to one)
        self.publishers: int = int(spec.get("publishers", 2))
        self.not_restored = 0
        self.history_rejected = 0
        self.rss0 = self.probe.rss_kib()
        self.cpu0 = self.probe.cpu()

    # -- connections -----------------------------------------------------------------

    def identifier(self, stream: str) -> str:
        ident = self.identifiers.get(stream)
        if ident is None:
            if self.signed:
                params = {
                    "channel": "Turbo::StreamsChannel",
                    "signed_stream_name": sign_stream_name(stream, self.secret),
                }
            else:
                params = {"channel": "$pubsub", "stream_name": stream}
            ident = self.identifiers[stream] = json.dumps(params, separators=(",", ":"))
        return ident

    def open_client(
        self, kind: str, stream: str, pi: int, node: int = 0, again: Conn | None = None
    ) -> Conn | None:
        """Open one client (or reopen ``again`` on a new socket, same session/position).

        ``kind`` "ext" speaks ``actioncable-v1-ext-json`` and reconnects with ``?sid=``;
        a client with a ``token`` sends it as ``?jid=``.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        # abortive close: no TIME_WAIT pile-up across targets
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if again is None:
            conn = Conn(sock, kind, stream, node)
            if self.tokens:
                conn.token = self.tokens[len(self.clients) % len(self.tokens)]
        else:
            conn = again
            conn.renew(sock)
        conn.t_start = time.monotonic_ns()
        port = self.node_ports[conn.node]
        if kind in ("ws", "ext"):
            query = f"pi={pi}"
            if conn.token:
                query += f"&jid={conn.token}"
            if conn.sid:
                query += f"&sid={conn.sid}"
            proto = "actioncable-v1-ext-json" if kind == "ext" else "actioncable-v1-json"
            conn.outbuf += (
                f"GET {self.path}?{query} HTTP/1.1\r\nHost: {self.host}:{port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {proto}\r\n\r\n"
            ).encode()
            message = {"command": "subscribe", "identifier": self.identifier(stream)}
            conn.subscribe = client_frame(json.dumps(message, separators=(",", ":")))
        else:
            conn.outbuf += (
                f"GET /events?stream={stream}&pi={pi} HTTP/1.1\r\nHost: {self.host}:{port}\r\n"
                "Accept: text/event-stream\r\n\r\n"
            ).encode()
        err = sock.connect_ex((self.host, port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.fail(None, f"connect:{errno.errorcode.get(err, err)}")
            return None
        self.table[conn.fd] = conn
        if again is None:
            self.clients.append(conn)
        self.ep.register(conn.fd, select.EPOLLOUT)
        self.inflight += 1
        return conn

    def fail(self, conn: Conn | None, reason: str) -> None:
        self.fail_reasons[reason] = self.fail_reasons.get(reason, 0) + 1
        if conn is None:
            self.failed += 1
            return
        if conn.state == READY:
            self.dropped += 1
            self.subs[conn.stream] -= 1
        elif conn.state != DEAD:
            self.failed += 1
            self.inflight -= 1
        conn.state = DEAD
        self.table.pop(conn.fd, None)
        with contextlib.suppress(OSError, ValueError):
            self.ep.unregister(conn.fd)
        conn.sock.close()

    def ready(self, conn: Conn, rest: bytes, now: int) -> None:
        conn.state = READY
        conn.t_ready = now
        conn.buf = b""
        self.inflight -= 1
        self.subs[conn.stream] = self.subs.get(conn.stream, 0) + 1
        if rest:
            self.consume(conn, rest, now)

    def setup(self, conn: Conn, ev: int) -> None:
        """Everything before READY: connect, upgrade, welcome, subscribe, confirm."""
        if conn.state == CONNECTING:
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.fail(conn, f"connect:{errno.errorcode.get(err, err)}")
                return
            conn.state = HANDSHAKE
            self.ep.modify(conn.fd, select.EPOLLIN)
            self.write(conn, b"")
            return
        if ev & select.EPOLLOUT and conn.outbuf:
            self.write(conn, b"")
        if not ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
            return
        try:
            data = conn.sock.recv(RECV)
        except BlockingIOError:
            return
        except OSError as exc:
            self.fail(conn, f"recv:{exc.__class__.__name__}")
            return
        if not data:
            self.fail(conn, f"eof-in-state-{conn.state}")
            return
        conn.buf += data
        now = time.monotonic_ns()
        if conn.state == HANDSHAKE:
            end = conn.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = conn.buf[9:12]
            rest = conn.buf[end + 4 :]
            if conn.kind == "sse":
                self.sse_status = int(status)
                if status != b"200":
                    self.fail(conn, f"sse-status-{status.decode()}")
                    return
                self.ready(conn, rest, now)
                return
            if status != b"101":
                self.fail(conn, f"upgrade-status-{status.decode()}")
                return
            conn.state = WELCOME
            conn.buf = rest
        self.setup_frames(conn, now)

    def setup_frames(self, conn: Conn, now: int) -> None:
        buf = conn.buf
        while len(buf) >= 2:
            n, pos = buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, pos = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, pos = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < pos + n:
                break
            opcode, payload, buf = buf[0] & 0x0F, buf[pos : pos + n], buf[pos + n :]
            if opcode == 8:
                self.fail(conn, "closed-during-setup")
                return
            if opcode != 1:
                continue
            if conn.state == WELCOME and b"welcome" in payload:
                conn.state = SUBSCRIBING
                self.write(conn, conn.subscribe)
            elif conn.state == SUBSCRIBING and b"confirm_subscription" in payload:
                self.ready(conn, buf, now)
                return
            elif b"reject_subscription" in payload or b"disconnect" in payload:
                self.fail(conn, "rejected")
                return
        conn.buf = buf

    def write(self, conn: Conn, data: bytes) -> None:
        if data:
            conn.outbuf += data
        if not conn.outbuf:
            return
        try:
            n = conn.sock.send(conn.outbuf)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self.fail(conn, f"send:{exc.__class__.__name__}")
            return
        del conn.outbuf[:n]
        want = select.EPOLLIN | (select.EPOLLOUT if conn.outbuf else 0)
        with contextlib.suppress(OSError):
            self.ep.modify(conn.fd, want)

    # -- the hot path ------------------------------------------------------------------

    def consume(self, conn: Conn, data: bytes, now: int) -> None:
        if conn.tail:
            data = conn.tail + data
        find, match = data.find, self.match
        phase = self.phase
        lats = self.node_lats[conn.node]
        n = len(data)
        end = 0
        i = find(b"cwb")
        while i >= 0:
            m = match(data, i)
            if m is None:
                if n - i < TAIL:
                    break  # a marker cut by the end of this read: kept for the next
                i = find(b"cwb", i + 3)
                continue
            end = m.end()
            p, s, t = m.groups()
            i = find(b"cwb", end)
            if int(p) != phase:
                self.stale += 1
                continue
            seq = int(s)
            if seq <= conn.last:
                self.reordered += 1
                self.node_reordered[conn.node] += 1
            conn.last = seq
            self.received += 1
            lats.append(now - int(t))
        if self.ping_log:
            conn.pings.extend([now] * data.count(b'"ping"'))
        # a partial marker starts with "c" and is shorter than TAIL
        j = data.rfind(b"c", max(end, n - TAIL))
        conn.tail = data[j:] if j >= 0 else b""

    def poll(self, timeout: float) -> None:
        table = self.table
        for fd, ev in self.ep.poll(timeout, 4096):
            conn = table.get(fd)
            if conn is None:
                continue
            if conn.kind == "ext":
                self.ext_event(conn, ev)
                continue
            if conn.state == READY:
                if conn.kind == "pub":
                    self.pub_event(conn, ev)
                    continue
                try:
                    data = conn.sock.recv(RECV)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.fail(conn, "closed-by-server")
                    continue
                self.consume(conn, data, time.monotonic_ns())
            else:
                self.setup(conn, ev)

    # -- the extended protocol (frames parsed one by one: sessions, positions, history) --

    def ext_event(self, conn: Conn, ev: int) -> None:
        if conn.state == CONNECTING:
            self.setup(conn, ev)  # connected: the request goes out, HANDSHAKE next
            return
        if ev & select.EPOLLOUT and conn.outbuf:
            self.write(conn, b"")
        if not ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
            return
        try:
            data = conn.sock.recv(RECV)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            reason = "closed-by-server" if conn.state == READY else f"eof-in-state-{conn.state}"
            self.fail(conn, reason)
            return
        conn.buf += data
        now = time.monotonic_ns()
        if conn.state == HANDSHAKE:
            end = conn.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = conn.buf[9:12]
            if status != b"101":
                self.fail(conn, f"upgrade-status-{status.decode()}")
                return
            conn.state = WELCOME
            conn.buf = conn.buf[end + 4 :]
        buf = conn.buf
        while len(buf) >= 2:
            n, pos = buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, pos = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, pos = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < pos + n:
                break
            opcode, payload, buf = buf[0] & 0x0F, buf[pos : pos + n], buf[pos + n :]
            if opcode == 8:
                self.fail(conn, "closed-by-server")
                return
            if opcode == 1 and not self.ext_message(conn, payload, now):
                return
        conn.buf = buf

    def ext_ready(self, conn: Conn, now: int) -> None:
        if conn.state != READY:
            conn.state = READY
            conn.t_ready = now
            self.inflight -= 1
            self.subs[conn.stream] = self.subs.get(conn.stream, 0) + 1

    def ext_history(self, conn: Conn) -> dict[str, Any]:
        return {"streams": {conn.stream: {"epoch": conn.epoch, "offset": conn.offset}}}

    def ext_message(self, conn: Conn, payload: bytes, now: int) -> bool:
        """One server message to an extended-protocol client; False: the client is gone."""
        if payload.startswith(b'{"type":"ping"'):
            if self.ping_log:
                conn.pings.append(now)
            return True
        msg = json.loads(payload)
        kind = msg.get("type")
        ident = self.identifier(conn.stream)
        if kind == "welcome":
            old, conn.sid = conn.sid, msg.get("sid") or ""
            if old and msg.get("restored") and ident in (msg.get("restored_ids") or ()):
                conn.restored = now
                self.ext_ready(conn, now)  # restored: subscribed again, no confirmation
                command = {"command": "history", "identifier": ident}
                command["history"] = self.ext_history(conn)
                self.write(conn, client_frame(json.dumps(command)))
                return True
            conn.state = SUBSCRIBING
            command = {"command": "subscribe", "identifier": ident}
            if old:  # not restored: subscribe again, asking for what was missed
                self.not_restored += 1
                command["history"] = self.ext_history(conn)
            self.write(conn, client_frame(json.dumps(command)))
        elif kind == "confirm_subscription":
            self.ext_ready(conn, now)
        elif kind == "confirm_history":
            conn.history_done = now
        elif kind == "reject_history":
            conn.history_done = now
            self.history_rejected += 1
        elif kind in ("reject_subscription", "disconnect"):
            self.fail(conn, f"{kind}:{msg.get('reason', '')}")
            return False
        elif kind is None and isinstance(msg.get("message"), list):
            body = msg["message"]
            if msg.get("offset"):
                conn.offset, conn.epoch = int(msg["offset"]), str(msg.get("epoch", ""))
            if len(body) < 4 or body[0] != "cwb":
                return True
            if body[1] != self.phase:
                self.stale += 1
            elif body[2] <= conn.last:
                conn.dups += 1  # the same publication twice (history and live overlap)
            else:
                conn.last = body[2]
                conn.got += 1
                self.received += 1
                self.node_lats[conn.node].append(now - body[3])
        return True

    def step_blip(self, step: dict[str, Any]) -> dict[str, Any]:
        """A network blip: every extended-protocol client loses its socket at once and
        reconnects with ``?sid=``, then asks for what it missed (``history`` from its
        last offset). Before: ``before`` live publications (positions known); while away:
        ``missed`` publications; after every session is back: one live publication.
        Each client must get every publication exactly once."""
        before, missed = int(step.get("before", 2)), int(step.get("missed", 5))
        timeout, window = float(step.get("timeout", 120.0)), int(step.get("window", 1 << 30))
        self.begin_phase()
        conns = [c for c in self.clients if c.kind == "ext" and c.state == READY]
        n = len(conns)
        stream = conns[0].stream if conns else "fan"
        deadline = time.monotonic() + timeout

        def publish(seqs: range) -> None:
            now = time.monotonic_ns()
            for seq in seqs:  # one connection: the server sees them in order
                self.post(self.pubs[0], [self.entry(stream, seq, now)], False)
            self.write(self.pubs[0], b"")

        def wait(cond: Any) -> None:
            while not cond() and time.monotonic() < deadline:
                self.poll(0.02)

        for conn in conns:
            conn.got = 0
        publish(range(before))
        wait(lambda: self.received >= n * before and self.responses >= before)
        live_before = self.received
        # the blip: every socket reset at once (RST, no close frame), as a network drop
        for conn in conns:
            self.table.pop(conn.fd, None)
            with contextlib.suppress(OSError, ValueError):
                self.ep.unregister(conn.fd)
            conn.sock.close()
            conn.state = DEAD
            self.subs[conn.stream] -= 1
        publish(range(before, before + missed))
        wait(lambda: self.responses >= before + missed)
        self.not_restored = self.history_rejected = 0
        failed0 = self.failed
        self.fail_reasons = {}
        cpu0, t0 = self.probe.cpu(), time.monotonic_ns()
        t_complete = 0
        opened = 0
        last_seq = before + missed - 1
        while time.monotonic() < deadline:
            while self.inflight < window and opened < n:
                self.open_client("ext", conns[opened].stream, self.pi, again=conns[opened])
                opened += 1
            self.poll(0.02)
            if opened >= n and self.inflight == 0:
                back = [c for c in conns if c.state == READY]
                if all(c.history_done and c.last >= last_seq for c in back):
                    t_complete = time.monotonic_ns()
                    break
        cpu = self.probe.cpu() - cpu0
        restored = [c.restored for c in conns if c.restored]
        history = [c.history_done for c in conns if c.history_done]
        received_missed = self.received - live_before
        # after: one live publication to every client that is back, waited for (bounded)
        back = [c for c in conns if c.state == READY]
        publish(range(before + missed, before + missed + 1))
        deadline = time.monotonic() + 15.0
        wait(lambda: all(c.last > last_seq for c in back))
        expected = len(back) * (before + missed + 1)
        got = sum(c.got for c in back)
        lats = sorted(x - t0 for x in restored)
        return {
            "op": "blip",
            "clients": n,
            "before": before,
            "missed": missed,
            "restored": len(restored),
            "not_restored": self.not_restored,
            "history_confirmed": len(history),
            "history_rejected": self.history_rejected,
            "failed": self.failed - failed0,
            "fail_reasons": dict(self.fail_reasons),
            "missed_expected": n * missed,
            "missed_received": received_missed,
            # over the clients that are back (a failed reconnect is counted in "failed")
            "back": len(back),
            "expected": expected,
            "received": got,
            "lost": expected - got,
            "duplicated": sum(c.dups for c in conns),
            "stale": self.stale,
            "complete": bool(t_complete),
            "restore_all_s": round(max(restored, default=t0) / 1e9 - t0 / 1e9, 3),
            "restore_p50_s": round(percentile(lats, 0.5) / 1e9, 3),
            "complete_s": round((t_complete - t0) / 1e9, 3) if t_complete else None,
            "history_all_s": round((max(history, default=t0) - t0) / 1e9, 3),
            "server_cpu_s": round(cpu, 4),
            "server_us_per_reconnect": round(cpu / n * 1e6, 1) if n else None,
        }

    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.poll(min(left, 0.1))

    # -- publishing ----------------------------------------------------------------------

    def open_pub(self) -> Conn:
        sock = socket.create_connection((self.host, self.bport), timeout=5)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn = Conn(sock, "pub", "")
        conn.state = READY
        conn.last = 0
        self.table[conn.fd] = conn
        self.ep.register(conn.fd, select.EPOLLIN)
        return conn

    def pub_event(self, conn: Conn, ev: int) -> None:
        if ev & select.EPOLLOUT:
            self.write(conn, b"")
        if not ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
            return
        try:
            data = conn.sock.recv(RECV)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # the server may close an idle keep-alive connection; only a close with
            # requests in flight is an error
            if conn.last > 0:
                self.http_errors += conn.last
            self.table.pop(conn.fd, None)
            with contextlib.suppress(OSError, ValueError):
                self.ep.unregister(conn.fd)
            conn.sock.close()
            self.pubs[self.pubs.index(conn)] = self.open_pub()
            return
        buf = conn.buf + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at)
                length = int(head[at + 15 : stop if stop >= 0 else None])
            if len(buf) < end + 4 + length:
                break
            if head[9:12] != b"201":
                self.http_errors += 1
            self.responses += 1
            conn.last -= 1
            buf = buf[end + 4 + length :]
        conn.buf = buf

    def post(self, conn: Conn, entries: list[str], as_array: bool) -> None:
        body = ("[" + ",".join(entries) + "]" if as_array else entries[0]).encode()
        conn.last += 1  # requests in flight on this connection
        conn.outbuf += (
            b"POST /_broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )

    def entry(self, stream: str, seq: int, t_ns: int) -> str:
        # data is a JSON text (a list) carried as a JSON string: quotes escaped
        return (
            '{"stream":"' + stream + '","data":"[\\"cwb\\",' + str(self.phase) + ","
            f'{seq},{t_ns},\\"{self.pad}\\"]"}}'
        )

    # -- steps -------------------------------------------------------------------------

    def step_connect(self, step: dict[str, Any]) -> dict[str, Any]:
        total, kind = step["total"], step.get("proto", "ws")
        mode, pi = step.get("streams", "one"), step.get("pi", 0)
        window, timeout = step.get("window", 256), step.get("timeout", 120.0)
        start = len(self.clients)
        new = total - start
        if step.get("jwt"):  # one HS256 token per client, made before the clock starts
            self.tokens = make_tokens(self.jwt_secret, start, new)
        cpu0 = self.probe.cpu()
        busy0 = self.probe.cpu_busy(self.server_cpu)
        t0 = time.monotonic_ns()
        deadline = time.monotonic() + timeout
        opened = 0
        failed0 = self.failed
        nodes = len(self.node_ports)
        while time.monotonic() < deadline:
            while self.inflight < window and opened < new:
                if mode == "one":
                    stream = "fan"
                elif mode == "own":
                    stream = f"s{start + opened}"
                else:
                    stream = mode  # a named stream (e.g. "idle" in the mix)
                self.open_client(kind, stream, pi, (start + opened) % nodes)
                opened += 1
            if opened >= new and self.inflight == 0:
                break
            self.poll(0.05)
            if kind == "sse" and self.sse_status is not None and self.sse_status != 200:
                break
        batch = self.clients[start:]
        ready = [c for c in batch if c.state == READY]
        times = sorted(c.t_ready - c.t_start for c in ready)
        t_last = max((c.t_ready for c in ready), default=t0)
        elapsed = (t_last - t0) / 1e9
        cpu = self.probe.cpu() - cpu0  # the whole step, set-up of every connection
        other = self.probe.cpu_busy(self.server_cpu) - busy0 - cpu
        wall = (time.monotonic_ns() - t0) / 1e9
        self.tokens = []
        self.run_for(step.get("settle", 1.0))
        rss = self.probe.rss_kib()
        live = sum(1 for c in self.clients if c.state == READY)
        return {
            "op": "connect",
            "proto": kind,
            "total": total,
            "opened": opened,
            "ready": len(ready),
            "live": live,
            "failed": self.failed - failed0,
            "fail_reasons": dict(self.fail_reasons),
            "timed_out": self.inflight,
            "sse_status": self.sse_status,
            "seconds": round(elapsed, 3),
            "conn_per_s": round(len(ready) / elapsed, 1) if elapsed > 0 else None,
            "setup_p50_ms": round(percentile(times, 0.5) / 1e6, 2),
            "setup_p99_ms": round(percentile(times, 0.99) / 1e6, 2),
            "window": window,
            "jwt": bool(step.get("jwt")),
            "server_cpu_s": round(cpu, 4),
            "server_us_per_conn": round(cpu / len(ready) * 1e6, 1) if ready else None,
            "server_cpu_other_frac": round(max(0.0, other) / wall, 3) if wall > 0 else None,
            "server_rss_kib": rss,
            "server_rss0_kib": self.rss0,
            "rss_per_conn_kib": round((rss - self.rss0) / live, 2) if live else None,
        }

    def step_hold(self, step: dict[str, Any]) -> dict[str, Any]:
        """Stay idle for a while, recording ping arrivals: are pings on time?"""
        for conn in self.clients:
            conn.pings = []
        self.ping_log = True
        cpu0, t0 = self.probe.cpu(), time.monotonic()
        busy0 = self.probe.cpu_busy(self.server_cpu)
        self.run_for(step["seconds"])
        cpu = self.probe.cpu() - cpu0
        wall = time.monotonic() - t0
        other = self.probe.cpu_busy(self.server_cpu) - busy0 - cpu
        self.ping_log = False
        gaps: list[int] = []
        pinged = 0
        live = [c for c in self.clients if c.state == READY]
        for conn in live:
            if conn.pings:
                pinged += 1
            gaps.extend(b - a for a, b in zip(conn.pings, conn.pings[1:], strict=False))
        gaps.sort()
        pings = sum(len(c.pings) for c in live)
        interval = step.get("interval", 3.0)
        return {
            "op": "hold",
            "seconds": step["seconds"],
            "live": len(live),
            "pinged": pinged,
            "gaps": len(gaps),
            "interval_s": interval,
            "gap_p50_s": round(percentile(gaps, 0.5) / 1e9, 3),
            "gap_p99_s": round(percentile(gaps, 0.99) / 1e9, 3),
            "gap_max_s": round(percentile(gaps, 1.0) / 1e9, 3),
            "server_cpu_frac_idle": round(cpu / wall, 4),
            "server_cpu_other_frac": round(max(0.0, other) / wall, 3),
            "pings": pings,
            "server_cpu_s": round(cpu, 4),
            # every CPU second of the idle server, divided over the pings it sent
            "us_per_ping": round(cpu / pings * 1e6, 2) if pings else None,
            "server_rss_kib": self.probe.rss_kib(),
        }

    def streams_for(self, mode: str) -> list[str]:
        if mode == "one":
            return ["fan"] if self.subs.get("fan") else []
        return [s for s, n in self.subs.items() if n > 0 and s != "fan"]

    def begin_phase(self) -> None:
        self.phase += 1
        self.received = self.reordered = self.stale = 0
        self.responses = self.http_errors = 0
        self.node_lats = [array.array("q") for _ in self.node_ports]
        self.node_reordered = [0] * len(self.node_ports)
        for conn in self.clients:
            conn.last = -1
        if not self.pubs:
            self.pubs = [self.open_pub() for _ in range(self.publishers)]

    def warmup(self, mode: str, timeout: float = 15.0) -> dict[str, Any]:
        """One publication per stream, waited for: every subscription is live."""
        self.begin_phase()
        streams = self.streams_for(mode)
        expected = sum(self.subs[s] for s in streams)
        now = time.monotonic_ns()
        for i in range(0, len(streams), 1000):
            chunk = streams[i : i + 1000]
            self.post(self.pubs[0], [self.entry(s, 0, now) for s in chunk], True)
        self.write(self.pubs[0], b"")
        deadline = time.monotonic() + timeout
        while self.received < expected and time.monotonic() < deadline:
            self.poll(0.05)
        return {"warmup_expected": expected, "warmup_received": self.received}

    def step_publish(self, step: dict[str, Any]) -> dict[str, Any]:
        rate, duration = float(step["rate"]), float(step["duration"])
        batch, mode = int(step.get("batch", 1)), step.get("streams", "one")
        drain = float(step.get("drain", 3.0))
        warm = self.warmup(mode) if step.get("warmup", True) else {}
        self.begin_phase()
        streams = self.streams_for(mode)
        m = len(streams)
        posts = max(1, round(rate * duration))
        if m == 0:
            return {"op": "publish", "error": "no subscribers", **warm}
        per_entry = self.subs[streams[0]] if mode == "one" else 1
        expected = posts * batch * per_entry
        node_subs = [0] * len(self.node_ports)
        if self.multi:  # subscribers per node, for each node's expected deliveries
            wanted = set(streams)
            for conn in self.clients:
                if conn.state == READY and conn.stream in wanted:
                    node_subs[conn.node] += 1
        interval = int(1e9 / rate)
        pubs = self.pubs
        npub = len(pubs)
        k = 0
        if self.window_mark:  # tells bench/run.py --profile-window to start recording
            Path(self.window_mark).write_text(str(duration))
        split0 = self.probe.split() if isinstance(self.probe, TreeProbe) else {}
        lg0, cpu0 = time.process_time(), self.probe.cpu()
        stat0, busy0 = self.probe.ticks(), self.probe.cpu_busy(self.server_cpu)
        node_cpu0 = [p.cpu() for p in self.node_probes]
        watch_cpu0 = [p.cpu() for _name, p, _cpu in self.watch]
        cpus = {cpu_id for cpu_id in self.node_cpus if cpu_id is not None}
        busy_cpu0 = {cpu_id: self.probe.cpu_busy(cpu_id) for cpu_id in cpus}
        t0 = time.monotonic_ns() + 10_000_000
        t_sent = t0
        last_progress = (0, time.monotonic())
        churn = Churn(self, float(step.get("churn", 0)), t0) if step.get("churn") else None
        while True:
            now = time.monotonic_ns()
            if churn is not None and k < posts:
                churn.run(now)
            if k < posts:
                n = 0
                while k < posts and t0 + k * interval <= now and n < 256:
                    due = t0 + k * interval
                    entries = []
                    for j in range(batch):
                        g = k * batch + j
                        entries.append(self.entry(streams[g % m], g // m, due))
                    # a stream's publications always take the same connection: the
                    # server sees them in order (across connections, order is undefined)
                    self.post(pubs[(k * batch) % m % npub], entries, batch > 1)
                    k += 1
                    n += 1
                if n:
                    for conn in pubs:
                        self.write(conn, b"")
                    t_sent = now
                timeout = max(0.0, (t0 + k * interval - time.monotonic_ns()) / 1e9)
                self.poll(min(timeout, 0.05) if k < posts else 0)
                continue
            if self.received >= expected and self.responses >= posts:
                break
            if self.received != last_progress[0]:
                last_progress = (self.received, time.monotonic())
            if time.monotonic() - last_progress[1] > drain or (now - t_sent) / 1e9 > drain * 5:
                break  # nothing arrived for `drain` seconds, or bounded overall
            self.poll(0.05)
        t_end = time.monotonic_ns()
        cpu = self.probe.cpu() - cpu0
        stat1 = self.probe.ticks()
        other = self.probe.cpu_busy(self.server_cpu) - busy0 - cpu
        lg_cpu = time.process_time() - lg0
        split1 = self.probe.split() if isinstance(self.probe, TreeProbe) else {}
        if self.tree is not None and self.loadgen_cpu in (self.tree.get("cpus") or []):
            other -= lg_cpu  # the load generator shares the server's CPUs
        wall = (t_end - t0) / 1e9
        node_cpu = [p.cpu() - c0 for p, c0 in zip(self.node_probes, node_cpu0, strict=True)]
        watch_cpu = [p.cpu() - c0 for (_n, p, _c), c0 in zip(self.watch, watch_cpu0, strict=True)]
        others: dict[int, float] = {}
        if self.multi:
            # what else ran on each node's CPU: busy time less every process of ours there
            for cpu_id in cpus:
                ours = 0.0
                for x, node_cpu_id in zip(node_cpu, self.node_cpus, strict=True):
                    ours += x if node_cpu_id == cpu_id else 0.0
                for x, (_n, _p, watch_cpu_id) in zip(watch_cpu, self.watch, strict=True):
                    ours += x if watch_cpu_id == cpu_id else 0.0
                ours += lg_cpu if cpu_id == self.loadgen_cpu else 0.0
                others[cpu_id] = self.probe.cpu_busy(cpu_id) - busy_cpu0[cpu_id] - ours
            other = max(others.values(), default=0.0)
        lats = sorted(x for node in self.node_lats for x in node)
        delivered = self.received / expected if expected else 0.0
        p99 = percentile(lats, 0.99) / 1e6
        offered = rate * batch * per_entry
        lg_frac = lg_cpu / wall if wall > 0 else 0.0
        passed = (
            delivered >= 0.999
            and p99 <= 1000.0
            and self.http_errors == 0
            and self.reordered == 0
            and self.responses >= posts
        )
        result = {
            "op": "publish",
            "rate": rate,
            "batch": batch,
            "streams": mode,
            "subscribers": sum(self.subs[s] for s in streams),
            "posts": posts,
            "responses": self.responses,
            "http_errors": self.http_errors,
            "expected": expected,
            "received": self.received,
            "delivered_frac": round(delivered, 6),
            "lost": expected - self.received,
            "reordered": self.reordered,
            "stale": self.stale,
            "dropped_conns": self.dropped,
            "lat_p50_ms": round(percentile(lats, 0.5) / 1e6, 2),
            "lat_p99_ms": round(p99, 2),
            "lat_max_ms": round(percentile(lats, 1.0) / 1e6, 2),
            "wall_s": round(wall, 3),
            "server_cpu_s": round(cpu, 4),
            "server_user_s": round(stat1[0] - stat0[0], 2),
            "server_sys_s": round(stat1[1] - stat0[1], 2),
            "server_cpu_frac": round(cpu / wall, 3) if wall > 0 else None,
            # anything else that ran on the server's CPU (other processes, irq): noise
            "server_cpu_other_frac": round(max(0.0, other) / wall, 3) if wall > 0 else None,
            "us_per_delivery": round(cpu / self.received * 1e6, 3) if self.received else None,
            "us_per_post": round(cpu / posts * 1e6, 2),
            "offered_deliveries_per_s": round(offered, 1),
            "achieved_deliveries_per_s": round(self.received / wall, 1) if wall > 0 else None,
            "loadgen_cpu_frac": round(lg_frac, 3),
            "loadgen_limited": lg_frac > LOADGEN_LIMIT,
            "passed": passed,
            **warm,
            **(churn.result() if churn is not None else {}),
        }
        if split1:
            # the supervisor (the hub runs in it) and each worker, in pid order
            root = self.probe.pid
            per = {pid: c - split0.get(pid, 0.0) for pid, c in split1.items()}
            hub = per.pop(root, 0.0)
            result["hub_cpu_s"] = round(hub, 4)
            result["hub_us_per_post"] = round(hub / posts * 1e6, 2)
            result["workers_cpu_s"] = [round(per[pid], 4) for pid in sorted(per)]
            result["workers_us_per_post"] = round(sum(per.values()) / posts * 1e6, 2)
        if self.multi:
            result["cpu_other_frac"] = {
                str(cpu_id): round(max(0.0, x) / wall, 3) if wall > 0 else None
                for cpu_id, x in sorted(others.items())
            }
            # "server" is every node together; each node's own share is in "nodes"
            total = sum(node_cpu)
            result["server_cpu_s"] = round(total, 4)
            result["server_cpu_frac"] = round(total / wall, 3) if wall > 0 else None
            result["us_per_delivery"] = round(total / self.received * 1e6, 3) if lats else None
            result["us_per_post"] = round(total / posts * 1e6, 2)
            result["nodes"] = [
                self.node_result(i, node_subs[i] * posts * batch, node_cpu[i], wall)
                for i in range(len(self.node_ports))
            ]
            for (name, _p, _c), x in zip(self.watch, watch_cpu, strict=True):
                result[f"{name}_cpu_s"] = round(x, 4)
                result[f"{name}_us_per_post"] = round(x / posts * 1e6, 2)
                result[f"{name}_cpu_frac"] = round(x / wall, 4) if wall > 0 else None
        return result

    def node_result(self, i: int, expected: int, cpu: float, wall: float) -> dict[str, Any]:
        lats = sorted(self.node_lats[i])
        return {
            "node": i,
            "cpu": self.node_cpus[i],
            "expected": expected,
            "received": len(lats),
            "lost": expected - len(lats),
            "reordered": self.node_reordered[i],
            "lat_p50_ms": round(percentile(lats, 0.5) / 1e6, 2),
            "lat_p99_ms": round(percentile(lats, 0.99) / 1e6, 2),
            "lat_max_ms": round(percentile(lats, 1.0) / 1e6, 2),
            "server_cpu_s": round(cpu, 4),
            "server_cpu_frac": round(cpu / wall, 3) if wall > 0 else None,
            "us_per_delivery": round(cpu / len(lats) * 1e6, 3) if lats else None,
        }

    def step_sweep(self, step: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for rate in step["rates"]:
            result = self.step_publish({**step, "rate": rate, "warmup": not out})
            result["op"] = "sweep"
            out.append(result)
            emit(result)
            log(
                f"rate {rate}/s: delivered {result.get('delivered_frac')} "
                f"p99 {result.get('lat_p99_ms')} ms server cpu {result.get('server_cpu_frac')} "
                f"loadgen cpu {result.get('loadgen_cpu_frac')}"
            )
            if not result.get("passed"):
                break
            self.run_for(step.get("pause", 0.5))
        return out

    # -- churn -------------------------------------------------------------------------

    def server_clients(self) -> int | None:
        """The server's ``clients_num`` gauge from its metrics endpoint (None: unknown)."""
        if not self.metrics_path:
            return None
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                sock.sendall(
                    f"GET {self.metrics_path} HTTP/1.1\r\nHost: {self.host}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
        except OSError:
            return None
        m = re.search(rb"^anycable_go_clients_num(?:{[^}]*})? (\d+)", data, re.M)
        return int(m.group(1)) if m else None

    def leave(self, conns: list[Conn], timeout: float) -> dict[str, int]:
        """Half the connections close cleanly (a close frame, the server's reply, EOF),
        the other half drop the TCP connection (RST, no close frame)."""
        clean: dict[int, Conn] = {}
        dropped = 0
        close = client_frame_close(1000)
        for i, conn in enumerate(conns):
            if conn.state != READY:
                continue
            if i % 2:
                self.table.pop(conn.fd, None)
                with contextlib.suppress(OSError, ValueError):
                    self.ep.unregister(conn.fd)
                conn.sock.close()  # SO_LINGER 0: an RST, as a client that vanishes
                conn.state = DEAD
                dropped += 1
            else:
                with contextlib.suppress(OSError):
                    conn.sock.send(close)
                clean[conn.fd] = conn
        deadline = time.monotonic() + timeout
        closed = 0
        while clean and time.monotonic() < deadline:
            for fd, _ev in self.ep.poll(0.05, 4096):
                conn = clean.get(fd)
                if conn is None:
                    continue
                try:
                    data = conn.sock.recv(RECV)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    continue  # the server's disconnect/close frames; EOF follows
                del clean[fd]
                self.table.pop(fd, None)
                with contextlib.suppress(OSError, ValueError):
                    self.ep.unregister(fd)
                conn.sock.close()
                conn.state = DEAD
                closed += 1
        for conn in clean.values():  # the server never closed: count, then drop
            self.table.pop(conn.fd, None)
            with contextlib.suppress(OSError, ValueError):
                self.ep.unregister(conn.fd)
            conn.sock.close()
            conn.state = DEAD
        return {"closed_clean": closed, "dropped": dropped, "clean_timed_out": len(clean)}

    def step_churn(self, step: dict[str, Any]) -> list[dict[str, Any]]:
        """Rounds of N connections that subscribe, receive one broadcast and leave (half
        cleanly, half by dropping the TCP connection); the server's RSS after each round,
        once its ``clients_num`` is back to 0."""
        total, rounds = int(step["total"]), int(step["rounds"])
        mode, window = step.get("streams", "one"), int(step.get("window", 256))
        timeout = float(step.get("timeout", 60.0))
        out: list[dict[str, Any]] = []
        for r in range(1, rounds + 1):
            self.clients, self.subs = [], {}
            self.begin_phase()
            t0 = time.monotonic()
            deadline = t0 + timeout
            opened = 0
            while time.monotonic() < deadline:
                while self.inflight < window and opened < total:
                    stream = "churn" if mode == "one" else f"churn-{r}-{opened}"
                    self.open_client("ws", stream, 0)
                    opened += 1
                if opened >= total and self.inflight == 0:
                    break
                self.poll(0.05)
            ready = [c for c in self.clients if c.state == READY]
            t_connected = time.monotonic()
            rss_connected = self.probe.rss_kib()
            # one broadcast per stream, waited for
            streams = sorted(s for s, n in self.subs.items() if n > 0)
            now = time.monotonic_ns()
            for i in range(0, len(streams), 1000):
                chunk = streams[i : i + 1000]
                self.post(self.pubs[0], [self.entry(s, 0, now) for s in chunk], True)
            self.write(self.pubs[0], b"")
            while self.received < len(ready) and time.monotonic() < deadline:
                self.poll(0.05)
            received = self.received
            left = self.leave(ready, max(1.0, deadline - time.monotonic()))
            # the server lets go of every session (bounded), then its RSS
            gone = None
            while time.monotonic() < deadline:
                gone = self.server_clients()
                if gone == 0 or gone is None:
                    break
                self.poll(0.05)
            rss = self.probe.rss_kib()
            result = {
                "op": "churn",
                "round": r,
                "total": total,
                "streams": mode,
                "ready": len(ready),
                "failed": self.failed,
                "received": received,
                "server_clients_after": gone,
                "connect_s": round(t_connected - t0, 2),
                "round_s": round(time.monotonic() - t0, 2),
                "server_rss_connected_kib": rss_connected,
                "server_rss_kib": rss,
                "server_rss0_kib": self.rss0,
                **left,
            }
            self.failed = 0
            self.fail_reasons = {}
            out.append(result)
            emit(result)
            log(
                f"round {r}: {len(ready)}/{total} ready, {received} received, "
                f"rss {rss_connected} -> {rss} KiB, {left}"
            )
        return out


class Churn:
    """Connects and disconnects at ``rate`` per second each, while a publish step runs:
    clients that connect, subscribe (to the stream ``churn``, never published to) and
    leave about one second later, half with a close frame, half with a reset."""

    def __init__(self, gen: LoadGen, rate: float, t0: int) -> None:
        self.gen, self.rate, self.t0 = gen, rate, t0
        self.live: list[Conn] = []
        self.opened = self.closed = 0
        self.failed0 = gen.failed
        self.close = client_frame_close(1000)

    def run(self, now: int) -> None:
        gen = self.gen
        due = int((now - self.t0) / 1e9 * self.rate) + 1 if now >= self.t0 else 0
        while self.opened < due:
            conn = gen.open_client("ws", "churn", gen.pi)
            if conn is not None:
                self.live.append(conn)
            self.opened += 1
        # each leaves ~1 s after it came: closes trail opens by `rate`
        while self.live and self.closed < due - self.rate:
            conn = self.live[0]
            if conn.state not in (READY, DEAD):
                break  # not set up yet: it leaves once it is (counted late, not lost)
            self.live.pop(0)
            self.closed += 1
            if conn.state == DEAD:
                continue
            gen.table.pop(conn.fd, None)
            with contextlib.suppress(OSError, ValueError):
                gen.ep.unregister(conn.fd)
            if self.closed % 2:
                with contextlib.suppress(OSError):
                    conn.sock.send(self.close)
            conn.sock.close()  # SO_LINGER 0: a reset (after the close frame, for half)
            conn.state = DEAD
            gen.subs[conn.stream] -= 1

    def result(self) -> dict[str, Any]:
        ready = sum(1 for c in self.gen.clients if c.stream == "churn" and c.t_ready)
        return {
            "churn_rate": self.rate,
            "churn_opened": self.opened,
            "churn_ready": ready,
            "churn_closed": self.closed,
            "churn_failed": self.gen.failed - self.failed0,
        }


def make_tokens(secret: str, first: int, count: int) -> list[str]:
    """HS256 identification tokens (``cableway.tokens``), one per user ``first...``."""
    from cableway.tokens import identification_token

    if not secret:
        raise SystemExit("jwt: the spec has no jwt_secret")
    return [identification_token({"user_id": first + i}, secret) for i in range(count)]


def client_frame_close(code: int) -> bytes:
    """A masked client close frame (zero mask key)."""
    return bytes((0x88, 0x82)) + b"\x00\x00\x00\x00" + struct.pack("!H", code)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def main() -> None:
    """``python bench/loadgen.py SPEC.json``: SPEC is {target fields..., "steps": [...]}.

    Steps: ``{"op":"connect","total":N,"streams":"one"|"own","proto":"ws"|"sse","pi":S}``,
    ``{"op":"hold","seconds":S,"interval":I}``,
    ``{"op":"publish","rate":R,"duration":D,"batch":B,"streams":"one"|"own"}``,
    ``{"op":"sweep","rates":[...],"duration":D,"batch":B,"streams":...}``,
    ``{"op":"churn","total":N,"rounds":R,"streams":"one"|"own"}`` (needs ``metrics_path``),
    ``{"op":"blip","before":B,"missed":M,"timeout":T}`` (after a connect step with
    ``"proto":"ext"``). A connect step with ``"jwt": true`` gives every client its own
    HS256 token (``jwt_secret`` of the spec) as ``?jid=``; ``"window": N`` opens N at once.
    A publish step with ``"churn": C`` also connects and disconnects C clients per second.
    """
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gen = LoadGen(spec)
    for step in spec["steps"]:
        if not gen.probe.alive():
            emit({"op": step["op"], "error": "server exited"})
            return
        op = step["op"]
        if op == "connect":
            result = gen.step_connect(step)
            log(
                f"connect {result['ready']}/{result['opened']} ({result['live']} live) "
                f"at {result['conn_per_s']}/s, rss/conn {result['rss_per_conn_kib']} KiB"
            )
            emit(result)
            if result["ready"] == 0:
                return
        elif op == "hold":
            emit(gen.step_hold(step))
        elif op == "publish":
            result = gen.step_publish(step)
            emit(result)
        elif op == "sweep":
            gen.step_sweep(step)
        elif op == "churn":
            gen.step_churn(step)
        elif op == "blip":
            result = gen.step_blip(step)
            log(
                f"blip: {result['restored']}/{result['clients']} restored in "
                f"{result['restore_all_s']} s, complete in {result['complete_s']} s, "
                f"lost {result['lost']}, duplicated {result['duplicated']}"
            )
            emit(result)
        else:
            raise SystemExit(f"unknown op {op}")


if __name__ == "__main__":
    main()
