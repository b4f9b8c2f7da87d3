"""The checks that bad input harms no one: malformed commands and malformed frames."""

from __future__ import annotations

import struct
from contextlib import suppress

from .client import (
    CheckFailed,
    Closed,
    Transcript,
    client_frame,
    compact,
)
from .harness import Harness

GARBAGE_COMMANDS: list[str | bytes] = [
    "this is not JSON",
    "[1,2,3]",
    '{"command":"subscribe"}',
    '{"command":"subscribe","identifier":{"channel":"NotAString"}}',
    '{"command":"no_such_command","identifier":"{}"}',
    '{"command":"message","identifier":"{\\"channel\\":\\"NotSubscribed\\"}","data":"{}"}',
    "null",
    '"just a string"',
    '{"command":"unsubscribe","identifier":"{\\"channel\\":\\"Never\\"}"}',
    "[" * 20000,
    '{"command":"subscribe","identifier":"' + "x" * 30000 + '"}',
    '{"command":"message","identifier":"{}","data":' + "9" * 5000 + "}",
    '{"command":"subscribe","identifier":"\\ud800"}',
    '{"command":"subscribe","command":"unsubscribe","identifier":"{}"}',
    '{"command":"subscribe","identifier":"{\\"channel\\":\\"Turbo::StreamsChannel\\",'
    '\\"signed_stream_name\\":\\"a--b\\"}"}',
    b'{"command":"subscribe","identifier":"{}"}',
    b"\x00\xff\xfe binary garbage",
    *[
        compact({"command": "subscribe", "identifier": compact({"channel": f"Bad{i}"})})
        for i in range(20)
    ],
]

BAD_FRAMES: list[tuple[str, bytes]] = [
    ("RSV1 without extension", client_frame(0x1, b"{}", rsv=4)),
    ("reserved opcode 0x3", client_frame(0x3, b"x")),
    ("reserved control opcode 0xB", client_frame(0xB, b"")),
    ("unmasked frame", b"\x81\x02{}"),
    ("ping with 126-byte payload", client_frame(0x9, b"p" * 126)),
    ("fragmented ping", client_frame(0x9, b"p", fin=False)),
    ("continuation without start", client_frame(0x0, b"x")),
    ("invalid UTF-8 text", client_frame(0x1, b"\xff\xfe\xfd")),
    ("close with code 999", client_frame(0x8, struct.pack("!H", 999))),
    ("close with a 1-byte payload", client_frame(0x8, b"\x03")),
    ("64-bit length with the top bit set", b"\x82\xff" + struct.pack("!Q", 1 << 63) + b"\0" * 4),
]


async def garbage(checker: Harness, transcript: Transcript) -> str:
    async with checker.session(transcript) as client:
        for message in GARBAGE_COMMANDS[:6]:
            await client.send(message)
        answer = await checker.alive(client)
    return f"6 malformed commands ignored, then {answer}"


async def fuzz_commands(checker: Harness, transcript: Transcript) -> str:
    """Every malformed command on one connection, watched by a second one."""
    async with checker.session(transcript) as observer, checker.session(transcript) as client:
        for message in GARBAGE_COMMANDS:
            await client.send(message)
        answer = await checker.alive(client)
        observed = await checker.alive(observer)
    return (
        f"{len(GARBAGE_COMMANDS)} malformed commands: the client still answers "
        f"({answer}), so does another ({observed})"
    )


async def fuzz_frames(checker: Harness, transcript: Transcript) -> str:
    """Each malformed frame on its own connection; a watcher must stay served."""
    closed = 0
    async with checker.session(transcript) as observer:
        for name, frame in BAD_FRAMES:
            async with checker.connect(transcript) as client:
                transcript.send(f"<frame: {name}>")
                with suppress(Closed):
                    await client.send_raw(frame)
                if not await client.is_closed(checker.options.timeout):
                    raise CheckFailed(f"{name}: the server kept the connection open")
            closed += 1
        observed = await checker.alive(observer)
    async with checker.session(transcript) as fresh:
        fresh_answer = await checker.alive(fresh)
    return (
        f"{closed} malformed frames: each connection closed; another client answers "
        f"({observed}), a new one too ({fresh_answer})"
    )
