"""One read carrying a command the application answers over HTTP RPC, then commands the
server answers itself: the answers come in the commands' order (AnyCable-Go answers one
session's commands one at a time), not the server's own first."""

from __future__ import annotations

import json

import trio

from tests.integration.helpers import turbo_identifier
from tests.security.helpers import OP_TEXT, frame, open_raw

from .apphost import Events
from .test_server_rpc import IDENT, chat_server


def command(command: str, identifier: str | None = None) -> bytes:
    message = {"command": command}
    if identifier is not None:
        message["identifier"] = identifier
    return frame(OP_TEXT, json.dumps(message).encode())


async def test_commands_in_one_read_are_answered_in_their_order() -> None:
    events = Events()
    turbo = turbo_identifier("room:42")
    async with chat_server(events) as server:
        ws = await open_raw(server.main_port, "/cable?user=alice")
        async with ws.stream:
            with trio.fail_after(10):
                assert (await ws.json() or {}).get("type") == "welcome"
                # all three in one write (one read for the server)
                await ws.send_raw(
                    command("subscribe", IDENT) + command("ping") + command("subscribe", turbo)
                )
                got = [await ws.json() for _ in range(3)]
    assert got == [
        {"identifier": IDENT, "type": "confirm_subscription"},
        {"type": "pong"},
        {"identifier": turbo, "type": "confirm_subscription"},
    ]
