"""The trio floor: the floor's work (bench/floor_server.py), in the binding shape.

The same minimal work as the floor -- handshake, ``welcome``/``confirm_subscription``,
one pre-built frame per publication written to every subscriber with one ``send()``,
pings on the same schedule and 10 ms quantum, ``POST /_broadcast`` on the second port,
bare SSE -- but run the way Cableway's design card has it: a trio server with ONE TASK
PER CONNECTION in a nursery. Each connection's task waits with
``trio.lowlevel.wait_readable(sock)`` and reads with ``recv()``; the fan-out (run in the
broadcast connection's task) and the ping tick (one task) write straight to each socket,
as Cableway does. What the kernel does not take is written by a short-lived flusher task
that waits for writability. Nothing else: the parsing, the subscription table, the
publication frames and the ping schedule are the floor's own (class ``Floor``), so the
difference between the two floors is what trio's scheduler, its epoll loop and a task per
connection cost.

``--poller`` (target ``floor-trio-poll``): the binding shape with the read poller's
shape Cableway uses (``cableway.transport.poller``). A connection's task reads its
handshake itself, then parks (``trio.lowlevel.wait_task_rescheduled``); from then on its
reads are served by ONE poller task waiting on a shared epoll set (level-triggered,
registered once: no re-arm per read, fewer system calls than Cableway's one-shot arm),
which calls the floor's handler in place. The parked task is woken only to end, when its
connection is dropped. So per connection it keeps what the design card binds (a task in
the nursery for the connection's whole life) and drops the task step per read. (In the
mix it costs more than the plain trio floor, not less: docs/benchmarks.md, the eighth
session's section.)

Usage: python bench/floor_trio.py --port P --broadcast-port B --secret S [--poller]
"""

from __future__ import annotations

import argparse
import select
import signal
import socket
import sys
import time

import trio
from floor_server import Client, Floor


class TrioFloor(Floor):
    """The floor's state and parsing; trio tasks instead of the selectors loop."""

    def __init__(self, secret: str) -> None:
        super().__init__(secret, coalesce=False)
        self.nursery: trio.Nursery | None = None
        self.tick_scope: trio.CancelScope | None = None
        self.listeners: list[tuple[socket.socket, str]] = []

    def listen(self, port: int, kind: str) -> None:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", port))
        lsock.listen(4096)
        lsock.setblocking(False)
        self.listeners.append((lsock, kind))

    async def acceptor(self, lsock: socket.socket, kind: str) -> None:
        assert self.nursery is not None
        while True:
            await trio.lowlevel.wait_readable(lsock)
            for _ in range(256):
                try:
                    sock, _addr = lsock.accept()
                except BlockingIOError:
                    break
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.nursery.start_soon(self.connection, Client(sock, kind))

    async def connection(self, client: Client) -> None:
        """One task per connection: wait for readability, read, handle, repeat."""
        try:
            while not client.dead:
                await trio.lowlevel.wait_readable(client.sock)
                self.readable(client)  # the floor's: recv, then parse; drops on EOF
        except (trio.ClosedResourceError, OSError):
            pass
        finally:
            self.drop(client)

    def send(self, client: Client, data: bytes) -> None:
        """One ``send()``; what the kernel does not take goes to a flusher task."""
        if client.dead:
            return
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
            assert self.nursery is not None
            self.nursery.start_soon(self.flusher, client)

    async def flusher(self, client: Client) -> None:
        try:
            while client.pending and not client.dead:
                await trio.lowlevel.wait_writable(client.sock)
                try:
                    n = client.sock.send(client.pending)
                except BlockingIOError:
                    continue
                del client.pending[:n]
        except (trio.ClosedResourceError, OSError):
            self.drop(client)

    def drop(self, client: Client) -> None:
        if client.dead:
            return
        self.forget(client)
        trio.lowlevel.notify_closing(client.sock)  # wakes its task's wait, if any
        client.sock.close()

    def schedule_pings(self, client: Client, query: dict[str, str]) -> None:
        before = self.next_tick
        super().schedule_pings(client, query)
        if self.next_tick < before and self.tick_scope is not None:
            self.tick_scope.deadline = self.deadline()

    def deadline(self) -> float:
        """``self.next_tick`` (``time.monotonic()``) on trio's clock."""
        return trio.current_time() + max(0.0, self.next_tick - time.monotonic())

    async def ticker(self) -> None:
        """The shared ping timer: one task, wakes at most every 10 ms when pings are due."""
        while True:
            with trio.CancelScope(deadline=self.deadline()) as scope:
                self.tick_scope = scope
                await trio.sleep_forever()
            self.tick_scope = None
            if time.monotonic() >= self.next_tick:
                self.tick()
                self.next_tick = time.monotonic() + self.ping_due()

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            for lsock, kind in self.listeners:
                nursery.start_soon(self.acceptor, lsock, kind)
            nursery.start_soon(self.ticker)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break


class PolledTrioFloor(TrioFloor):
    """The trio floor with a read poller: a task per connection, parked once upgraded."""

    def __init__(self, secret: str) -> None:
        super().__init__(secret)
        self.epoll = select.epoll()
        #: descriptor -> the parked connection and its task
        self.parked: dict[int, tuple[Client, trio.lowlevel.Task]] = {}

    async def connection(self, client: Client) -> None:
        """Read the handshake in this task, then park until the connection is dropped."""
        try:
            while not client.dead and client.kind == "main":
                await trio.lowlevel.wait_readable(client.sock)
                self.readable(client)
            if client.dead or client.kind == "http":
                await super().connection(client)  # the broadcast port: its own task reads
                return
            fd = client.sock.fileno()
            self.epoll.register(fd, select.EPOLLIN)
            self.parked[fd] = (client, trio.lowlevel.current_task())

            def abort(_: object) -> trio.lowlevel.Abort:
                self.parked.pop(fd, None)
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        except (trio.ClosedResourceError, OSError):
            pass
        finally:
            self.drop(client)

    def drop(self, client: Client) -> None:
        if client.dead:
            return
        fd = client.sock.fileno()
        super().drop(client)  # closing the socket takes it out of the epoll set
        entry = self.parked.pop(fd, None)
        if entry is not None:
            trio.lowlevel.reschedule(entry[1])  # its task ends

    async def poller(self) -> None:
        """Serve every parked connection's reads, in this one task."""
        fd = self.epoll.fileno()
        parked = self.parked
        while True:
            await trio.lowlevel.wait_readable(fd)
            for ready, _events in self.epoll.poll(0):
                entry = parked.get(ready)
                if entry is not None:
                    self.readable(entry[0])  # the floor's: recv, parse; drops on EOF

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.poller)
            await super().serve()
            nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--broadcast-port", type=int, required=True)
    parser.add_argument("--secret", default="bench-secret")
    parser.add_argument("--poller", action="store_true", help="reads served by one poller task")
    args = parser.parse_args()
    floor = PolledTrioFloor(args.secret) if args.poller else TrioFloor(args.secret)
    floor.listen(args.port, "main")
    floor.listen(args.broadcast_port, "http")
    print(f"trio floor listening on {args.port} (broadcasts on {args.broadcast_port})", flush=True)
    trio.run(floor.serve)
    sys.exit(0)


if __name__ == "__main__":
    main()
