"""§D7 lifecycle rows (L*) not covered elsewhere; see docs/security-tests.md."""

from __future__ import annotations

import trio
import trio.lowlevel

from tests.integration.helpers import cable, config, running, welcome


async def test_L3_new_connections_during_shutdown_are_refused() -> None:
    # a client that never reads keeps the drain going (up to shutdown_timeout)
    async with running(config(shutdown_timeout=10)) as server, cable(server) as ws:
        await welcome(ws)
        port = server.main_port
        server.shutdown()
        with trio.fail_after(5):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                except OSError:
                    break  # refused: the listener is closed
                # accepted by the kernel before the close: it must not be served
                async with stream:
                    try:
                        await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                        answer = await stream.receive_some(1024)
                    except trio.BrokenResourceError:
                        answer = b""
                assert not answer.startswith(b"HTTP/1.1 200"), answer
                await trio.lowlevel.checkpoint()
