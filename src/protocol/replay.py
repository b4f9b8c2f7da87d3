"""The reliable-stream part of a session: which subscriptions' live messages are held
back until their history was replayed (so the client sees every message once, in
order), until when at most, and the messages a history answer replays.

Which history to ask for is :mod:`.history`'s; the state machine
(:mod:`.connection`) decides when to hold and release and queues the events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet

from . import messages
from .broadcast import EncodedBroadcast, Publication
from .broker import HistoryEntry
from .events import ReleaseHeld

__all__ = ["HOLD_SECONDS", "HeldStreams", "history_reply", "replay_messages"]

#: how long live messages of restored subscriptions wait for the client's history
#: request before they are delivered anyway
HOLD_SECONDS = 5.0

#: ``held`` of a session holding nothing (shared: no set per session)
NOTHING_HELD: frozenset[str] = frozenset()


class HeldStreams:
    """The subscriptions (identifiers) whose live messages the driver holds back, and
    the deadline after which they are released anyway."""

    __slots__ = ("deadline", "held")

    def __init__(self) -> None:
        self.held: AbstractSet[str] = NOTHING_HELD  # a set of its own once needed
        self.deadline: float | None = None

    def hold(self, identifiers: Iterable[str], now: float) -> AbstractSet[str]:
        """Hold ``identifiers`` (until :data:`HOLD_SECONDS` after ``now`` unless a
        deadline runs already); the held set, which may be a new object."""
        held = self.held
        if not isinstance(held, set):
            held = self.held = set()  # most sessions never hold: no set until one does
        held.update(identifiers)
        if self.deadline is None:
            self.deadline = now + HOLD_SECONDS
        return held

    def unhold(self, identifier: str) -> None:
        """Drop ``identifier`` without releasing (its subscription is gone)."""
        held = self.held
        if isinstance(held, set):
            held.discard(identifier)

    def release(self, identifier: str, after: int | Mapping[str, int] | None) -> ReleaseHeld | None:
        """Stop holding ``identifier``: what the driver must release, if it was held."""
        if identifier not in self.held:
            return None
        self.unhold(identifier)
        if not self.held:
            self.deadline = None
        return ReleaseHeld(identifier, after)

    def release_all(self) -> list[ReleaseHeld]:
        """The deadline passed: release everything, oldest identifier first."""
        released = [ReleaseHeld(identifier, None) for identifier in sorted(self.held)]
        self.clear()
        return released

    def clear(self) -> None:
        self.held = NOTHING_HELD
        self.deadline = None


def history_reply(kind: str, identifier: str) -> str:
    """``confirm_history`` or ``reject_history`` for ``identifier``."""
    return '{"type":"' + kind + '","identifier":' + messages.dumps(identifier) + "}"


def replay_messages(identifier: str, entries: Sequence[HistoryEntry], epoch: str) -> list[str]:
    """The messages replaying ``entries`` to ``identifier``, each with its stream
    position, then ``confirm_history``."""
    out = []
    for entry in entries:
        publication = Publication(entry.stream, entry.data, broadcast_type=entry.broadcast_type)
        encoded = EncodedBroadcast(publication, offset=entry.offset, epoch=epoch)
        out.append(encoded.for_identifier(identifier))
    out.append(history_reply("confirm_history", identifier))
    return out
