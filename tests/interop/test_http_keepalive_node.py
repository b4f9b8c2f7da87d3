"""Node's ``http.Agent({keepAlive: true})``: a refused request, then ``GET /health`` on the
same agent (issue 12.1).

The agent puts a socket back in its pool after a response that did not say
``Connection: close`` and sends the next request on it. A server that closes such a
socket silently makes that next request fail (``ECONNRESET`` / "socket hang up"). So for
every refusal: either the answer says ``Connection: close`` (the agent opens a new socket),
or ``/health`` goes over the same socket and gets ``200``. Reason phrases are Go's.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # fixtures come from conftest.py
    from collections.abc import Callable

    from .conftest import CablewayServer

pytestmark = pytest.mark.interop

CLIENT = Path(__file__).resolve().parent / "keepalive_client.mjs"
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def _cases(server: CablewayServer) -> list[tuple[dict[str, Any], int, str]]:
    key = {"Authorization": f"Bearer {server.broadcast_key}", "Content-Type": "application/json"}
    stream = server.signed_turbo_stream("chat")
    return [
        ({"method": "GET", "path": "/events"}, 400, "Bad Request"),
        (
            {"method": "GET", "path": "/events?turbo_signed_stream_name=forged--00"},
            400,
            "Bad Request",
        ),
        (
            {"method": "GET", "path": f"/events?turbo_signed_stream_name={stream}&jid=forged"},
            401,
            "Unauthorized",
        ),
        ({"method": "DELETE", "path": "/events"}, 405, "Method Not Allowed"),
        ({"method": "GET", "path": "/nope"}, 404, "Not Found"),
        ({"method": "POST", "path": "/nope", "body": "dropped"}, 404, "Not Found"),
        (
            {"method": "GET", "path": "/health", "headers": {"X-Big": "a" * 20_000}},
            431,
            "Request Header Fields Too Large",
        ),
        ({"method": "GET", "path": "/cable"}, 400, "Bad Request"),
        (
            {
                "method": "GET",
                "path": "/cable",
                "headers": {**UPGRADE, "Sec-WebSocket-Version": "8"},
            },
            426,
            "Upgrade Required",
        ),
        (
            {
                "method": "POST",
                "path": "/_broadcast",
                "headers": {"Authorization": "Bearer wrong"},
                "body": "{}",
            },
            401,
            "Unauthorized",
        ),
        ({"method": "GET", "path": "/_broadcast", "headers": key}, 422, "Unprocessable Entity"),
        (
            {"method": "POST", "path": "/_broadcast", "headers": key, "body": "{not json"},
            400,
            "Bad Request",
        ),
        (
            {
                "method": "POST",
                "path": "/_broadcast",
                "headers": key,
                "body": "x" * 1024,
                "repeat": 2048,
            },
            413,
            "Request Entity Too Large",
        ),
    ]


def test_node_keepalive_agent_survives_every_refusal(
    node_executable: str, cableway_factory: Callable[[str], CablewayServer]
) -> None:
    server = cableway_factory("turbo_sse")
    cases = _cases(server)
    scenario = {
        "base": server.http_url,
        "timeout_ms": 30_000,
        "cases": [{"name": str(i), **case} for i, (case, _, _) in enumerate(cases)],
    }
    result = subprocess.run(
        [node_executable, str(CLIENT), json.dumps(scenario)],
        cwd=CLIENT.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines[-1:] == [{"event": "done"}], (result.stdout, result.stderr)
    for out, (case, status, reason) in zip(lines, cases, strict=False):
        what = f"{case['method']} {case['path'][:40]}: {out}"
        assert out["error"] is None, what
        assert (out["status"], out["reason"]) == (status, reason), what
        assert out["health"] == 200, what
        if out["connection"] != "close":
            # kept alive: the agent reused the socket, and the server answered on it
            assert out["health_reused_socket"] is True, what
    assert len(lines) == len(cases) + 1
    assert not server.error_lines(), server.log()
