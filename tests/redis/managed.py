"""Managed-Redis set-ups on 127.0.0.1 for the tests: redis-server with TLS (certificates
made by trustme at test time) and a Sentinel group (a master, a replica, a sentinel).

Every process is awaited on its own log line (bounded, no sleeps) and its output is
drained so that the pipe never fills up; everything is killed at the end of the test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from .conftest import REDIS_SERVER, _free_port

LOG_WAIT = 20.0  # seconds a process gets to say what the test waits for


def require_redis() -> str:
    if REDIS_SERVER is None:
        if os.environ.get("CABLEWAY_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is not on PATH and CABLEWAY_REQUIRE_REDIS=1")
        pytest.skip("redis-server is not on PATH (apt-get install redis-server)")
    return REDIS_SERVER


class LoggedProcess:
    """A process whose output lines are kept and can be waited for."""

    def __init__(self, args: Sequence[str], name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        with stdout:
            for raw in stdout:
                with self._changed:
                    self.lines.append(raw.decode("utf-8", "replace"))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, *, start: int = 0, timeout: float = LOG_WAIT) -> re.Match[str]:
        """The first line from index ``start`` on matching ``pattern`` (blocking, bounded)."""
        regex = re.compile(pattern)
        seen = start
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                if self.process.poll() is not None and not self._drain.is_alive():
                    raise RuntimeError(f"{self.name} exited:\n{''.join(self.lines[-20:])}")
                if not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    raise RuntimeError(
                        f"{self.name}: no line matching {pattern!r} within {timeout}s:\n"
                        + "".join(self.lines[-20:])
                    )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self._drain.join(timeout=10)


BASE = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no")


def redis_server(
    directory: Path, port: int, *extra: str, name: str = "redis-server"
) -> LoggedProcess:
    process = LoggedProcess(
        [require_redis(), "--port", str(port), *BASE, "--dir", str(directory), *extra], name
    )
    try:
        process.wait_for("Ready to accept connections")
    except BaseException:
        process.kill()
        raise
    return process


# -- TLS -----------------------------------------------------------------------------------


class TlsFiles:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""

    def __init__(self, directory: Path) -> None:
        import trustme

        self.ca = trustme.CA()
        server = self.ca.issue_cert("127.0.0.1")
        client = self.ca.issue_cert("cableway-client@example.org")
        self.ca_path = directory / "ca.pem"
        self.server_cert = directory / "server.pem"
        self.server_key = directory / "server.key"
        self.client_cert = directory / "client.pem"
        self.client_key = directory / "client.key"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        server.private_key_pem.write_to_path(str(self.server_key))
        client.private_key_pem.write_to_path(str(self.client_key))
        for cert, path in ((server, self.server_cert), (client, self.client_cert)):
            with open(path, "wb") as file:
                for blob in cert.cert_chain_pems:
                    file.write(blob.bytes())


@contextmanager
def tls_redis(directory: Path, *, auth_clients: bool) -> Iterator[tuple[int, TlsFiles]]:
    """redis-server speaking only TLS on a loopback port (``auth_clients``: client
    certificates required)."""
    files = TlsFiles(directory)
    port = _free_port()
    process = redis_server(
        directory,
        0,
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(files.server_cert),
        "--tls-key-file",
        str(files.server_key),
        "--tls-ca-cert-file",
        str(files.ca_path),
        "--tls-auth-clients",
        "yes" if auth_clients else "no",
        name="redis-server (TLS)",
    )
    try:
        yield port, files
    finally:
        process.kill()


# -- Sentinel ------------------------------------------------------------------------------

MASTER_NAME = "mymaster"


class SentinelGroup:
    """A master, a replica and one sentinel watching them (quorum 1, quick failovers)."""

    def __init__(
        self,
        directory: Path,
        *,
        sentinel_password: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        executable = require_redis()
        self.tls = tls
        self.directory = directory
        self.master_port = _free_port()
        self.replica_port = _free_port()
        self.sentinel_port = _free_port()
        self.processes: list[LoggedProcess] = []
        try:
            self._start(executable, directory, sentinel_password)
        except BaseException:
            self.kill()
            raise

    def _start(self, executable: str, directory: Path, sentinel_password: str | None) -> None:
        (directory / "master").mkdir()
        (directory / "replica").mkdir()
        port, extra = self._listen(self.master_port)
        self.master = redis_server(directory / "master", port, *extra, name="master")
        self.processes.append(self.master)
        port, extra = self._listen(self.replica_port)
        self.replica = redis_server(
            directory / "replica",
            port,
            *extra,
            "--replicaof",
            "127.0.0.1",
            str(self.master_port),
            name="replica",
        )
        self.processes.append(self.replica)
        self.replica.wait_for("MASTER <-> REPLICA sync: Finished with success")
        config = directory / "sentinel.conf"  # Sentinel rewrites it: a file of its own
        lines = [
            f"port {self.sentinel_port}",
            "bind 127.0.0.1",
            f"dir {directory}",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 1",
            f"sentinel down-after-milliseconds {MASTER_NAME} 500",
            f"sentinel failover-timeout {MASTER_NAME} 5000",
        ]
        if sentinel_password is not None:
            lines.append(f"requirepass {sentinel_password}")
        if self.tls is not None:  # the sentinel reaches the servers over TLS, itself in clear
            lines += [
                "tls-replication yes",
                f"tls-cert-file {self.tls.client_cert}",
                f"tls-key-file {self.tls.client_key}",
                f"tls-ca-cert-file {self.tls.ca_path}",
            ]
        config.write_text("\n".join(lines) + "\n")
        sentinel_binary = shutil.which("redis-sentinel")
        args = (
            [sentinel_binary, str(config)]
            if sentinel_binary
            else [
                executable,
                str(config),
                "--sentinel",
            ]
        )
        self.sentinel = LoggedProcess(args, "redis-sentinel")
        self.processes.append(self.sentinel)
        # watching the master, and knows the replica (needed to fail over)
        self.sentinel.wait_for(rf"\+monitor master {MASTER_NAME} ")
        self.sentinel.wait_for(rf"\+slave slave 127\.0\.0\.1:{self.replica_port} ")

    def _listen(self, port: int) -> tuple[int, list[str]]:
        """redis_server()'s port and extra arguments: plain, or TLS only."""
        if self.tls is None:
            return port, []
        return 0, [
            "--tls-port",
            str(port),
            "--tls-replication",
            "yes",
            "--tls-cert-file",
            str(self.tls.server_cert),
            "--tls-key-file",
            str(self.tls.server_key),
            "--tls-ca-cert-file",
            str(self.tls.ca_path),
            "--tls-auth-clients",
            "no",
        ]

    @property
    def sentinels(self) -> str:
        return f"127.0.0.1:{self.sentinel_port}"

    def kill(self) -> None:
        for process in reversed(self.processes):
            process.kill()


@contextmanager
def sentinel_group(
    directory: Path, *, sentinel_password: str | None = None, tls: TlsFiles | None = None
) -> Iterator[SentinelGroup]:
    group = SentinelGroup(directory, sentinel_password=sentinel_password, tls=tls)
    try:
        yield group
    finally:
        group.kill()
