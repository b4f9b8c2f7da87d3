"""``os.write(fd)`` against ``socket.send`` for one WebSocket frame, writer CPU per call.

``python3 bench/write_send.py`` (take the bench lock): 1 000 loopback TCP connections
(``TCP_NODELAY``, as both servers set it), a reader process on CPU 1 draining them, the
writer on CPU 0 writing one 304-byte frame per call round the sockets, in blocks of
20 000 calls (a 0.2 ms pause every 20, so the reader keeps up), ``os.write`` and
``send`` blocks alternating, twelve of each. Prints the median user and system CPU per
call of each (``getrusage``): what Cableway's fan-out (``os.write``) and the floors
(``send``) pay for the same write.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import socket
import statistics
import time

N = 1000
FRAME = b"\x81\x7e\x01\x2c" + b"x" * 300
BLOCK = 20_000


def reader(port: int, stop: int) -> None:
    os.sched_setaffinity(0, {1})
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(N)]
    poller = select.epoll()
    by_fd = {}
    for client in clients:
        client.setblocking(False)
        poller.register(client.fileno(), select.EPOLLIN)
        by_fd[client.fileno()] = client
    poller.register(stop, select.EPOLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == stop:
                os._exit(0)
            with contextlib.suppress(BlockingIOError):
                by_fd[fd].recv(65536)


def block(socks: list[socket.socket], use_write: bool) -> tuple[float, float]:
    fds = [s.fileno() for s in socks]
    write = os.write
    before = resource.getrusage(resource.RUSAGE_SELF)
    for j in range(BLOCK):
        if use_write:
            write(fds[j % N], FRAME)
        else:
            socks[j % N].send(FRAME)
        if j % 20 == 19:
            time.sleep(0.0002)
    after = resource.getrusage(resource.RUSAGE_SELF)
    user = (after.ru_utime - before.ru_utime) / BLOCK * 1e6
    system = (after.ru_stime - before.ru_stime) / BLOCK * 1e6
    return user, system


def main() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    stop_r, stop_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(stop_w)
        reader(port, stop_r)
    os.sched_setaffinity(0, {0})
    socks = []
    for _ in range(N):
        sock, _addr = listener.accept()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(sock)
    block(socks, True)  # warm-up
    block(socks, False)
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for i in range(12):
        for use_write in (True, False) if i % 2 else (False, True):
            results[use_write].append(block(socks, use_write))
    for use_write, name in ((True, "os.write"), (False, "socket.send")):
        rows = results[use_write]
        user = statistics.median(u for u, _ in rows)
        system = statistics.median(s for _, s in rows)
        total = statistics.median(u + s for u, s in rows)
        print(f"{name:12s} user {user:.2f}  sys {system:.2f}  total {total:.2f} us per call")
    os.write(stop_w, b"x")
    os.waitpid(child, 0)


if __name__ == "__main__":
    main()
