"""docs/getting-started.md, followed literally: its shell snippets run, in order, against a real
``cableway`` process, and do what the page says they do.

The only changes made to the snippets: the server listens on a free 127.0.0.1 port instead of
localhost:8080 (``ANYCABLE_HTTP_BROADCAST_URL`` tells ``cableway broadcast``),
``.venv/bin/cableway`` is this environment's ``cableway``, and the long-running
``curl -N`` subscriptions run in the background (each waited for until it is confirmed).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "getting-started.md"
BIN = Path(sys.executable).parent
CURL = shutil.which("curl")


def shell_blocks() -> list[str]:
    """The page's ```sh blocks, with continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [block.replace("\\\n", " ") for block in blocks]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server_args() -> Iterator[tuple[str, int, list[str]]]:
    """Starts the server as the page's first two blocks say; (secret, port, log lines)."""
    blocks = shell_blocks()
    secret = re.fullmatch(r"export ANYCABLE_SECRET=(\S+)\n", blocks[0])
    serve = re.fullmatch(r"scripts/serve (.*)\n", blocks[1])
    assert secret is not None, blocks[0]
    assert serve is not None, blocks[1]
    port = free_port()
    env = {**os.environ, "ANYCABLE_SECRET": secret.group(1)}
    argv = [str(BIN / "cableway"), *serve.group(1).split(), "--host=127.0.0.1", f"--port={port}"]
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT
    )
    log: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        assert process.stdout is not None
        with process.stdout:
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace")
                log.append(line)
                if "Using channels router" in line:  # the last start-up line
                    ready.set()
        ready.set()

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        assert ready.wait(timeout=30), "".join(log)
        assert process.poll() is None, "".join(log)
        yield secret.group(1), port, log
    finally:
        process.terminate()
        process.wait(timeout=30)
        thread.join(timeout=10)


WAIT_FOR = (
    # bounded: `timeout` ends the loop if the subscription is never confirmed
    "timeout 10 bash -c 'until grep -q confirm_subscription {file}; do sleep 0.05; done'"
)


def as_script(blocks: list[str], port: int, directory: Path) -> str:
    lines = ["set -euo pipefail"]
    subscriptions = 0
    for block in blocks:
        for line in block.splitlines():
            line = line.replace("localhost:8080", f"127.0.0.1:{port}")
            line = line.replace(".venv/bin/cableway", str(BIN / "cableway"))
            if line.startswith("curl -N"):
                subscriptions += 1
                file = directory / f"sse{subscriptions}.txt"
                lines += [f"{line} > {file} 2>&1 &", f"SSE{subscriptions}=$!"]
                lines.append(WAIT_FOR.format(file=file))
            else:
                lines.append(line)
    lines += [f"kill $SSE{n}" for n in range(1, subscriptions + 1)]
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(CURL is None, reason="the page uses curl (apt-get install curl)")
def test_getting_started_runs_as_written(
    server_args: tuple[str, int, list[str]], tmp_path: Path
) -> None:
    secret, port, log = server_args
    blocks = shell_blocks()
    script = as_script(blocks[2:], port, tmp_path)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANYCABLE_")}
    # where `cableway broadcast` posts by default (localhost:8080), moved with the server
    env["ANYCABLE_HTTP_BROADCAST_URL"] = f"http://127.0.0.1:{port}/_broadcast"
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # step 2: the signed name is printed
    assert re.search(r"^ImNoYXQvNDIi--[0-9a-f]{64}$", done.stdout, flags=re.MULTILINE)
    # step 4: curl -i shows the 201
    assert re.search(r"^HTTP/1\.1 201\b", done.stdout, flags=re.MULTILINE), done.stdout
    # step 3 + 4: the subscriber got both broadcasts (cableway broadcast, then curl)
    first = (tmp_path / "sse1.txt").read_text()
    assert "event: welcome" in first
    hi = '<turbo-stream action="append" target="messages"><template>Hi</template></turbo-stream>'
    assert f"data: {hi}" in first
    assert "<template>Hi again</template>" in first
    # step 5: with a token, the connection is identified and still subscribed
    assert "event: confirm_subscription" in (tmp_path / "sse2.txt").read_text()
    # the sample secret is long enough: no warning at start-up, and it is never printed
    assert [line for line in log if " WRN " in line or " ERR " in line] == []
    assert all(secret not in line for line in log)
