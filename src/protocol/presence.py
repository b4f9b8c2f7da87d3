"""Presence and whispers of one session: the features a subscription offers among its
peers, each on a stream its channel names (a built-in channel's own stream, an
application channel's ``$p``/``$w``). Which stream that is, and whether it is enabled,
is the state machine's (:mod:`.connection`) to say; this keeps who this session is in
each presence set and builds the requests and messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import messages
from .broadcast import Publication
from .events import PresenceRequest, Publish

__all__ = ["MAX_PRESENCE_ID", "Presence", "presence_message", "whisper_event"]

#: the longest presence id a client may join with
MAX_PRESENCE_ID = 256


class Presence:
    """Where this session has joined: identifier -> (presence id, stream)."""

    __slots__ = ("joined",)

    def __init__(self) -> None:
        self.joined: dict[str, tuple[str, str]] = {}

    def join(
        self, identifier: str, stream: str, presence: Mapping[str, Any] | None
    ) -> PresenceRequest | str:
        """Join ``stream``'s presence set as ``presence`` says (``{"id":…, "info":…}``):
        the request for the broker, or why the join is ignored."""
        raw_id = presence.get("id") if presence else None
        if isinstance(raw_id, int | float) and not isinstance(raw_id, bool):
            raw_id = str(raw_id)
        if not isinstance(raw_id, str) or not raw_id or len(raw_id) > MAX_PRESENCE_ID:
            return "presence id must be a non-empty string"
        joined = self.joined.get(identifier)
        if joined is not None and joined[0] != raw_id:
            return "presence ID mismatch"
        info = presence.get("info") if presence else None
        self.joined[identifier] = (raw_id, stream)
        return PresenceRequest("join", identifier, stream, presence_id=raw_id, info=info)

    def leave(self, identifier: str) -> PresenceRequest | None:
        """Leave ``identifier``'s presence set: the request, ``None`` when not present."""
        joined = self.joined.pop(identifier, None)
        if joined is None:
            return None
        return PresenceRequest("leave", identifier, joined[1])


def presence_message(identifier: str, records: list[tuple[str, object]] | None) -> str:
    """The answer to a presence ``info`` command (``None``: the broker failed)."""
    return (
        '{"type":"presence","identifier":'
        + messages.dumps(identifier)
        + ',"message":'
        + messages.dumps(messages.presence_info(records))
        + "}"
    )


def whisper_event(stream: str, data: object, sid: str) -> Publish:
    """``data`` whispered by session ``sid`` to the others reading ``stream``."""
    return Publish(Publication(stream, messages.dumps(data), exclude_socket=sid, transient=True))
