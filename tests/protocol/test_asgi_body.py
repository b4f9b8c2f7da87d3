"""Reading an ASGI request body (:func:`cableway.protocol.asgi.read_body`), the one reader of
both ASGI apps (the server's broadcast and SSE endpoints, the channels RPC endpoints)."""

from __future__ import annotations

import asyncio
from typing import Any

from cableway.protocol.asgi import Message, read_body


def feeder(*messages: dict[str, Any]) -> tuple[list[Message], Any]:
    """``receive`` handing out ``messages``, then ``http.disconnect``; and what it handed out."""
    given: list[Message] = []
    pending = list(messages)

    async def receive() -> Message:
        message: Message = pending.pop(0) if pending else {"type": "http.disconnect"}
        given.append(message)
        return message

    return given, receive


def part(body: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


def test_a_body_in_parts_is_joined() -> None:
    _, receive = feeder(part(b"ab", True), part(b"", True), part(b"cd"))
    assert asyncio.run(read_body(receive, 4)) == b"abcd"


def test_a_body_over_the_limit_is_none_once_it_goes_over() -> None:
    given, receive = feeder(part(b"abc", True), part(b"de", True), part(b"never read"))
    assert asyncio.run(read_body(receive, 4)) is None
    assert len(given) == 2  # the rest is not read


def test_a_declared_length_over_the_limit_is_none_without_reading() -> None:
    given, receive = feeder(part(b"abcde"))
    assert asyncio.run(read_body(receive, 4, declared=[" 5 "])) is None
    assert given == []
    # a declared length within the limit, or not a number, is read and checked as it comes
    _, receive = feeder(part(b"abcd"))
    assert asyncio.run(read_body(receive, 4, declared=["4", "x"])) == b"abcd"


def test_a_client_gone_mid_body_gives_what_arrived() -> None:
    _, receive = feeder(part(b"ab", True))
    assert asyncio.run(read_body(receive, 10)) == b"ab"
