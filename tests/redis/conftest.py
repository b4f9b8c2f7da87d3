"""A real ``redis-server`` (Debian's package) on a random 127.0.0.1 port, per test.

Skipped with a reason when ``redis-server`` is not on PATH; with CABLEWAY_REQUIRE_REDIS=1
(set by CI) a missing server fails the tests instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

REDIS_SERVER = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """One redis-server without persistence; :meth:`kill` and :meth:`start` it at will."""

    def __init__(self, executable: str, directory: str) -> None:
        self.executable = executable
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # bounded polling: wait for the external process to accept connections
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    if REDIS_SERVER is None:
        if os.environ.get("CABLEWAY_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is not on PATH and CABLEWAY_REQUIRE_REDIS=1")
        pytest.skip("redis-server is not on PATH (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="cableway-redis-") as directory:
        server = RedisProcess(REDIS_SERVER, directory)
        server.start()
        try:
            yield server
        finally:
            server.kill()
