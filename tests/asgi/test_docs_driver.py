"""docs/architecture.md: the minimal asyncio driver runs as written."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def test_the_minimal_driver_in_the_architecture_doc_serves_a_client() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 1
    namespace: dict[str, Any] = {"__name__": "docs_driver"}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)

    async def scenario() -> list[dict[str, Any]]:
        server = await asyncio.start_server(namespace["handle"], "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        identifier = json.dumps({"channel": "$pubsub", "stream_name": "chat"})
        seen = []
        async with asyncio.timeout(5):
            seen.append(json.loads(await reader.readline()))
            command = {"command": "subscribe", "identifier": identifier}
            writer.write(json.dumps(command).encode() + b"\n")
            seen.append(json.loads(await reader.readline()))
            namespace["publish"]("chat", '{"text":"hi"}')
            seen.append(json.loads(await reader.readline()))
            writer.write(b'{"command":"ping"}\n')
            seen.append(json.loads(await reader.readline()))
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()
        return seen

    welcome, confirm, message, pong = asyncio.run(scenario())
    assert welcome["type"] == "welcome"
    assert confirm["type"] == "confirm_subscription"
    assert message["message"] == {"text": "hi"}
    assert pong == {"type": "pong"}
