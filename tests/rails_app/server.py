"""Start tests/rails_app/config.ru (a Rails 6.1 Action Cable app) under puma on 127.0.0.1.

Debian's packages: ``apt-get install ruby-actioncable ruby-activesupport ruby-rack puma
ruby-jwt``. Skipped with a reason when they are missing; with CABLEWAY_REQUIRE_RAILS=1 (set by
CI) a missing Rails fails the tests instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CONFIG_RU = Path(__file__).with_name("config.ru")
PUMA = shutil.which("puma")
RUBY = shutil.which("ruby")

TURBO_SECRET = "rails-turbo-secret-of-at-least-32-bytes"
JWT_SECRET = "rails-jwt-secret-of-at-least-32-bytes!!"
BROADCAST_KEY = "rails-broadcast-key"
_LISTENING = re.compile(rb"Listening on http://127\.0\.0\.1:(\d+)")


def _has_gems() -> bool:
    if RUBY is None or PUMA is None:
        return False
    probe = [RUBY, "-e", 'require "action_cable"; require "jwt"; require "rack"']
    return subprocess.run(probe, capture_output=True, timeout=60, check=False).returncode == 0


class RailsServer:
    """One puma process serving the app; :attr:`port` once it listens."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: list[bytes]) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def cable_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/cable"

    @property
    def broadcast_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/_broadcast"


@contextmanager
def rails_server() -> Iterator[RailsServer]:
    """Puma on 127.0.0.1 and a port of the kernel's choice; ready when it logs the port."""
    if not _has_gems():
        if os.environ.get("CABLEWAY_REQUIRE_RAILS") == "1":
            pytest.fail(
                "Rails Action Cable (ruby, puma, the gems) is missing and CABLEWAY_REQUIRE_RAILS=1"
            )
        pytest.skip(
            "Rails Action Cable is not installed (apt-get install ruby-actioncable "
            "ruby-activesupport ruby-rack puma ruby-jwt)"
        )
    assert PUMA is not None
    env = {
        **os.environ,
        "CABLEWAY_RAILS_TURBO_SECRET": TURBO_SECRET,
        "CABLEWAY_RAILS_JWT_SECRET": JWT_SECRET,
        "CABLEWAY_RAILS_BROADCAST_KEY": BROADCAST_KEY,
    }
    process = subprocess.Popen(
        [PUMA, "--bind", "tcp://127.0.0.1:0", "--threads", "4:8", str(CONFIG_RU)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=CONFIG_RU.parent,
    )
    # puma says where it listens: wait for that line (bounded), and keep draining its
    # output so that the pipe never fills up
    ready = threading.Event()
    found: list[int] = []
    log: list[bytes] = []

    def drain() -> None:
        assert process.stdout is not None
        with process.stdout:
            for line in process.stdout:
                if len(log) < 2000:
                    log.append(line)
                match = _LISTENING.search(line)
                if match and not found:
                    found.append(int(match.group(1)))
                    ready.set()
        ready.set()  # the process ended

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        if not ready.wait(timeout=60) or not found:
            raise RuntimeError(
                "puma did not start: " + b"".join(log[-20:]).decode("utf-8", "replace")
            )
        yield RailsServer(process, found[0], log)
    finally:
        process.kill()
        process.wait(timeout=10)
        thread.join(timeout=10)
