"""Parsing of client -> server commands (spec §4.2).

:func:`parse_command` turns one WebSocket message into a :class:`Command`, or raises
:class:`~cableway.protocol.errors.RemoteProtocolError`. Oversized messages are fatal
(close 1009, as gorilla/websocket does); every other defect is recoverable: the session
ignores the message and keeps reading, which is the behaviour AnyCable's spec recommends
over Go's quirk of silently stopping the read loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import RemoteProtocolError
from .limits import Limits

__all__ = ["KNOWN_COMMANDS", "Command", "parse_command"]

KNOWN_COMMANDS = frozenset(
    {
        "subscribe",
        "unsubscribe",
        "message",
        "history",
        "whisper",
        "presence",
        "join",
        "leave",
        "pong",
        "ping",
    }
)


@dataclass(frozen=True, slots=True)
class Command:
    """One decoded client command.

    ``identifier`` is kept as the exact string the client sent: subscriptions are keyed
    by it and every reply echoes it byte for byte.
    """

    command: str
    identifier: str | None = None
    data: Any = None
    history: dict[str, Any] | None = None
    presence: dict[str, Any] | None = None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


#: one decoder for every command (``json.loads`` with an argument builds one per call)
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _loads(message: str | bytes) -> object:
    """``json.loads(message, parse_constant=_reject_constant)``."""
    if isinstance(message, str) and not message.startswith("\ufeff"):
        return _DECODER.decode(message)
    return json.loads(message, parse_constant=_reject_constant)  # a BOM's refusal, bytes


def parse_command(message: str | bytes, limits: Limits) -> Command | None:
    """Decode one client message.

    Args:
        message: the WebSocket message (text, or bytes read from a binary frame).
        limits: the size bounds to enforce.

    Returns:
        The command, or ``None`` for a JSON ``null`` (ignored, as AnyCable does).

    Raises:
        RemoteProtocolError: fatal with close code 1009 when the message is larger
            than ``limits.max_message_size``; non-fatal for anything else malformed.
    """
    if isinstance(message, bytes) or message.isascii():
        size = len(message)
    else:
        size = len(message.encode("utf-8", "replace"))
    if size > limits.max_message_size:
        raise RemoteProtocolError("message too big", close_code=1009, fatal=True)
    try:
        value = _loads(message)
    except RecursionError:
        raise RemoteProtocolError("message nested too deeply") from None
    except ValueError:
        raise RemoteProtocolError("message is not valid JSON") from None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RemoteProtocolError("message is not a JSON object")
    command = value.get("command")
    if not isinstance(command, str):
        raise RemoteProtocolError("command is missing or not a string")
    identifier = value.get("identifier")
    if identifier is not None and not isinstance(identifier, str):
        raise RemoteProtocolError("identifier is not a string")
    if identifier is not None and len(identifier) > limits.max_identifier_size:
        raise RemoteProtocolError("identifier too long")
    history = value.get("history")
    if history is not None and not isinstance(history, dict):
        raise RemoteProtocolError("history is not an object")
    presence = value.get("presence")
    if presence is not None and not isinstance(presence, dict):
        raise RemoteProtocolError("presence is not an object")
    return Command(
        command=command,
        identifier=identifier,
        data=value.get("data"),
        history=history,
        presence=presence,
    )
