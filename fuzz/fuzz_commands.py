# Invariant: only RemoteProtocolError escapes parse_command; the session raises only fatal ones.
"""Fuzz the Action Cable command parser and the session state machine behind it.

Invariant: whatever one client message holds, ``parse_command`` returns a ``Command``
or ``None`` or raises ``RemoteProtocolError``, and ``CableConnection.receive_message``
raises nothing but a fatal ``RemoteProtocolError``; every reply the session queues is
valid JSON. Any other exception is a bug.

Run: ``python fuzz/fuzz_commands.py -runs=50000 -max_len=4096 fuzz/corpus/commands/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import contextlib
import json

from cableway.protocol.channels import StreamPolicy
from cableway.protocol.commands import parse_command
from cableway.protocol.connection import CableConnection, SessionSettings
from cableway.protocol.errors import RemoteProtocolError
from cableway.protocol.events import SendMessage
from cableway.protocol.limits import Limits

LIMITS = Limits(max_message_size=4096)
SETTINGS = SessionSettings(
    limits=LIMITS,
    policy=StreamPolicy(
        streams_secret="fuzz", turbo_streams=True, turbo_secret="fuzz", public_streams=True
    ),
)


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        parse_command(data, LIMITS)
    conn = CableConnection(sid="fuzz", settings=SETTINGS, now=0.0)
    conn.accept("{}")
    # the same bytes as one binary message, as text, and then split on newlines as a
    # sequence of commands (so the corpus can hold whole conversations)
    messages: list[str | bytes] = [data, data.decode("utf-8", "replace")]
    messages.extend(data.split(b"\n"))
    for now, message in enumerate(messages):
        try:
            conn.receive_message(message, now=float(now))
        except RemoteProtocolError as exc:
            if not exc.fatal:
                raise AssertionError("a recoverable error escaped the session") from exc
            break
        conn.handle_timer(float(now), unix_time=1_700_000_000.0)
    for event in conn.events():
        if isinstance(event, SendMessage):
            json.loads(event.text)


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway"])
