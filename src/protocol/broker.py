"""The memory broker: stream history with epochs and offsets, session snapshots, presence.

A pure structure (spec §7.1–7.8): no clock, no tasks. Every method that cares about
time takes ``now`` in Unix seconds (history ``since`` requests are in client wall-clock
seconds, so the broker uses wall-clock time too); :meth:`MemoryBroker.expire` is called
by the driver about once a second and returns the presence ``leave`` events that expiry
produced.

History rules (strictly-after offsets, all-or-nothing requests) follow AnyCable's memory
broker: a request is refused when a message the client has not seen was evicted, since
it could not be told what it missed. Unlike AnyCable, a position just before the oldest
retained message is served (AnyCable refuses it although nothing is missing).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "HistoryEntry",
    "HistoryError",
    "HistoryQuery",
    "MemoryBroker",
    "PresenceEvent",
    "SessionSnapshot",
    "entries_after",
    "entries_since",
]


class HistoryError(Exception):
    """A history request cannot be served; the reason is for logs."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One stored publication."""

    stream: str
    offset: int
    data: str
    published_at: float
    broadcast_type: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """What one stream of a history request asks for.

    ``epoch``/``offset`` when the client knows its position (messages strictly after
    it), else ``since`` (messages published at or after that Unix second).
    """

    stream: str
    epoch: str | None = None
    offset: int | None = None
    since: float | None = None


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """What a resumable session needs to come back without re-authenticating.

    Attributes:
        identifiers: the connection identifiers string.
        subscriptions: identifier -> stream, in subscription order.
        presence: identifier -> (presence id, info) joined by the session.
    """

    identifiers: str
    subscriptions: tuple[tuple[str, str], ...]
    presence: tuple[tuple[str, str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A ``join`` or ``leave`` to broadcast (transient, type ``presence``) to ``stream``."""

    stream: str
    kind: str
    presence_id: str
    info: object = None


@dataclass(slots=True)
class _Stream:
    entries: deque[HistoryEntry] = field(default_factory=deque)
    last_offset: int = 0
    last_active: float = 0.0


@dataclass(slots=True)
class _Member:
    info: object
    sessions: set[str] = field(default_factory=set)


def entries_after(
    entries: Sequence[HistoryEntry], last_offset: int, offset: int
) -> list[HistoryEntry]:
    """The retained ``entries`` (oldest first, expired ones already dropped) strictly
    after ``offset``, for a stream whose latest offset is ``last_offset``.

    Every broker (in memory, Redis) applies these rules to what it retained.

    Raises:
        HistoryError: nothing retained, ``offset`` older than the oldest retained
            message (something the client missed is gone) or newer than the latest.
    """
    if not entries:
        raise HistoryError("no history retained")
    if offset + 1 < entries[0].offset:
        # a message the client has not seen was evicted. (AnyCable also refuses
        # offset == oldest - 1, although nothing the client missed is gone; we serve it.)
        raise HistoryError("requested offset was evicted")
    if offset > last_offset:
        raise HistoryError("requested offset is in the future")
    return [e for e in entries if e.offset > offset]


def entries_since(entries: Iterable[HistoryEntry], since: float) -> list[HistoryEntry]:
    """The retained ``entries`` published at or after ``since`` (whole seconds)."""
    return [e for e in entries if math.floor(e.published_at) >= since]


class MemoryBroker:
    """History, sessions and presence for one process.

    Args:
        epoch: this storage generation; positions from another epoch are refused.
        history_limit: messages kept per stream (oldest evicted first).
        history_ttl: seconds a message is kept.
        sessions_ttl: seconds a closed session can be restored; ``0`` disables restore.
        presence_ttl: seconds a disconnected session's presence outlives it.
    """

    def __init__(
        self,
        *,
        epoch: str,
        history_limit: int = 100,
        history_ttl: float = 300.0,
        sessions_ttl: float = 300.0,
        presence_ttl: float = 15.0,
    ) -> None:
        self.epoch = epoch
        self.history_limit = history_limit
        self.history_ttl = history_ttl
        self.sessions_ttl = sessions_ttl
        self.presence_ttl = presence_ttl
        self._streams: dict[str, _Stream] = {}
        self._sessions: dict[str, tuple[SessionSnapshot, float]] = {}
        # stream -> presence id -> member; (stream, sid) -> presence id
        self._presence: dict[str, dict[str, _Member]] = {}
        self._presence_of: dict[tuple[str, str], str] = {}
        # (stream, sid) -> when a disconnected session's presence expires
        self._presence_expiry: dict[tuple[str, str], float] = {}

    # -- history ---------------------------------------------------------------------

    def add(self, stream: str, data: str, *, now: float, broadcast_type: str | None = None) -> int:
        """Store a publication; returns its offset (1, 2, 3… per stream)."""
        state = self._streams.get(stream)
        if state is None:
            state = self._streams[stream] = _Stream()
        state.last_offset += 1
        state.last_active = now
        state.entries.append(HistoryEntry(stream, state.last_offset, data, now, broadcast_type))
        while len(state.entries) > self.history_limit:
            state.entries.popleft()
        return state.last_offset

    def history_from(
        self, stream: str, epoch: str, offset: int, *, now: float
    ) -> list[HistoryEntry]:
        """Messages with an offset strictly greater than ``offset``.

        Raises:
            HistoryError: see :func:`entries_after`.
        """
        if epoch != self.epoch:
            raise HistoryError("epoch mismatch")
        state = self._streams.get(stream)
        if state is None:
            raise HistoryError("unknown stream")
        self._evict(state, now)
        return entries_after(state.entries, state.last_offset, offset)

    def history_since(self, stream: str, since: float, *, now: float) -> list[HistoryEntry]:
        """Retained messages published at or after ``since`` (whole seconds)."""
        state = self._streams.get(stream)
        if state is None:
            return []
        self._evict(state, now)
        return entries_since(state.entries, since)

    def fetch_history(
        self, queries: Iterable[HistoryQuery], *, now: float
    ) -> list[HistoryEntry] | None:
        """Serve a whole history request: every entry, or ``None`` if any query fails."""
        out: list[HistoryEntry] = []
        for query in queries:
            try:
                if query.epoch is not None and query.offset is not None:
                    out.extend(self.history_from(query.stream, query.epoch, query.offset, now=now))
                elif query.since is not None:
                    out.extend(self.history_since(query.stream, query.since, now=now))
            except HistoryError:
                return None
        return out

    def latest_offset(self, stream: str) -> int:
        """The offset of the last message stored for ``stream`` (0 when none)."""
        state = self._streams.get(stream)
        return state.last_offset if state is not None else 0

    def _evict(self, state: _Stream, now: float) -> None:
        horizon = now - self.history_ttl
        entries = state.entries
        while entries and entries[0].published_at < horizon:
            entries.popleft()

    # -- sessions --------------------------------------------------------------------

    def save_session(self, sid: str, snapshot: SessionSnapshot) -> None:
        """Store a live session's snapshot (it does not expire while live)."""
        if self.sessions_ttl > 0:
            self._sessions[sid] = (snapshot, math.inf)

    def release_session(self, sid: str, *, now: float) -> None:
        """The session closed: its snapshot can be restored for ``sessions_ttl`` more."""
        found = self._sessions.get(sid)
        if found is not None:
            self._sessions[sid] = (found[0], now + self.sessions_ttl)

    def restore_session(self, sid: str, *, now: float) -> SessionSnapshot | None:
        """The snapshot saved under ``sid``, unless unknown or expired.

        The snapshot stays restorable until it expires (AnyCable behaves the same).
        """
        found = self._sessions.get(sid)
        if found is None or found[1] <= now:
            return None
        return found[0]

    # -- presence --------------------------------------------------------------------

    def presence_join(
        self, stream: str, sid: str, presence_id: str, info: object
    ) -> PresenceEvent | None:
        """Add ``sid`` under ``presence_id``; a ``join`` event when the id is new.

        Raises:
            ValueError: the session already joined this stream with another id.
        """
        key = (stream, sid)
        current = self._presence_of.get(key)
        if current is not None and current != presence_id:
            raise ValueError("presence ID mismatch")
        self._presence_expiry.pop(key, None)
        members = self._presence.setdefault(stream, {})
        member = members.get(presence_id)
        new = member is None
        if member is None:
            member = members[presence_id] = _Member(info)
        else:
            member.info = info
        member.sessions.add(sid)
        self._presence_of[key] = presence_id
        return PresenceEvent(stream, "join", presence_id, info) if new else None

    def presence_leave(self, stream: str, sid: str) -> PresenceEvent | None:
        """Remove ``sid``; a ``leave`` event when it was the id's last session."""
        key = (stream, sid)
        self._presence_expiry.pop(key, None)
        presence_id = self._presence_of.pop(key, None)
        if presence_id is None:
            return None
        members = self._presence.get(stream, {})
        member = members.get(presence_id)
        if member is None:
            return None
        member.sessions.discard(sid)
        if member.sessions:
            return None
        del members[presence_id]
        if not members:
            self._presence.pop(stream, None)
        return PresenceEvent(stream, "leave", presence_id)

    def presence_disconnect(self, stream: str, sid: str, *, now: float) -> None:
        """The session went away: its presence expires after ``presence_ttl``."""
        if (stream, sid) in self._presence_of:
            self._presence_expiry[(stream, sid)] = now + self.presence_ttl

    def presence_info(self, stream: str) -> list[tuple[str, object]]:
        """(id, info) of everyone present in ``stream``."""
        return [(pid, m.info) for pid, m in self._presence.get(stream, {}).items()]

    # -- expiry ----------------------------------------------------------------------

    def expire(self, now: float) -> list[PresenceEvent]:
        """Drop what outlived its TTL; returns the presence ``leave`` events due."""
        for name in [
            n for n, s in self._streams.items() if s.last_active < now - 10 * self.history_ttl
        ]:
            del self._streams[name]
        for state in self._streams.values():
            self._evict(state, now)
        for sid in [s for s, (_, until) in self._sessions.items() if until <= now]:
            del self._sessions[sid]
        events = []
        for key in [k for k, until in self._presence_expiry.items() if until <= now]:
            event = self.presence_leave(*key)
            if event is not None:
                events.append(event)
        return events
