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
import threading
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
        self._drain = threading.Thread()

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
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        # redis-server says when it accepts connections: wait for that line (bounded),
        # and keep draining its output so that the pipe never fills up
        ready = threading.Event()
        process = self.process

        def drain() -> None:
            assert process.stdout is not None
            with process.stdout:  # closed when redis-server exits
                for line in process.stdout:
                    if b"Ready to accept connections" in line:
                        ready.set()

        self._drain = threading.Thread(target=drain, daemon=True)
        self._drain.start()
        if not ready.wait(timeout=10):
            self.kill()
            raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)
            self._drain.join(timeout=10)


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
