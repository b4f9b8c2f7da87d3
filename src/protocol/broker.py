"""The memory broker: stream history with epochs and offsets, session snapshots, presence.

A pure structure (spec §7.1–7.8): no clock, no tasks. Every method that cares about
time takes ``now`` in Unix seconds (history ``since`` requests are in client wall-clock
seconds, so the broker uses wall-clock time too); :meth:`MemoryBroker.expire` is called
by the driver about once a second, in slices if it likes, and returns the presence
``leave`` events that expiry produced. Expiry costs what expired, never a walk over what
is stored; a stream's record goes with its last message; ``history_max_bytes`` caps what
the history holds (docs/reliable-streams.md, "Memory, expiry and the cap").

History rules (strictly-after offsets, all-or-nothing requests) follow AnyCable's memory
broker: a request is refused when a message the client has not seen was evicted, since
it could not be told what it missed. Unlike AnyCable, a position just before the oldest
retained message is served (AnyCable refuses it although nothing is missing).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from heapq import heappop, heappush, heapreplace
from typing import Any, Final, TypeAlias

__all__ = [
    "HistoryEntry",
    "HistoryError",
    "HistoryQuery",
    "MemoryBroker",
    "PresenceEvent",
    "SessionSnapshot",
    "entries_after",
    "entries_since",
    "history_cost",
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
        delegated: the application channels' identifiers (RPC), in subscription order.
        app: the application's state of the session (RPC: cstate, istate, the streams of
            each application channel), opaque here (:mod:`cableway.node.rpc` writes it).
    """

    identifiers: str
    subscriptions: tuple[tuple[str, str], ...]
    presence: tuple[tuple[str, str, object], ...] = ()
    delegated: tuple[str, ...] = ()
    app: str = ""


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A ``join`` or ``leave`` to broadcast (transient, type ``presence``) to ``stream``."""

    stream: str
    kind: str
    presence_id: str
    info: object = None


# A stream's retained messages, oldest first, flattened: offset, text, publish time,
# broadcast type, then the next message's four... A flat tuple of strings and numbers is
# untracked by the garbage collector at its first collection, so a million streams add
# nothing to what later collections walk (HistoryEntry objects, or a tuple of tuples,
# would stay tracked for a while or for ever), and it takes no object per message.
# Past _SMALL messages a stream's history is a (flat) deque, which drops its oldest in O(1).
_Flat: TypeAlias = "tuple[Any, ...] | deque[Any]"
_STRIDE: Final = 4  # offset, text, publish time, broadcast type
_AT: Final = 2  # where the (oldest) publish time is
_SMALL = 32

#: What the history cap (``history_max_bytes``) counts for a stream besides its name, and
#: for a message besides its text and broadcast type: the memory they take (CPython 3.11,
#: 64-bit, measured with tracemalloc; ``test_history_bytes_match_the_memory_taken``). A
#: stream: its dict slot, expiry-heap item, tuple and name object; a message: its four
#: slots, publish time and text object.
STREAM_COST = 180
ENTRY_COST = 110


def history_cost(data: str, broadcast_type: str | None = None) -> int:
    """Bytes the history cap counts for a message (its stream's share aside)."""
    return ENTRY_COST + len(data) + len(broadcast_type or "")


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

    Every expiry is kept in time order (heaps), so :meth:`expire` costs what expired, not
    what is stored, and can be done in slices (``budget``). A stream is forgotten as soon as
    its last message is gone (TTL or the byte cap); a stream that comes back starts its
    offsets after the highest offset any forgotten stream reached, so a position from a
    forgotten stream is refused, never matched against other messages (see
    :meth:`add`). With ``history_max_bytes`` the oldest messages, whatever their stream,
    are evicted first once the history holds more than that (see :data:`STREAM_COST`).

    Args:
        epoch: this storage generation; positions from another epoch are refused.
        history_limit: messages kept per stream (oldest evicted first).
        history_ttl: seconds a message is kept.
        sessions_ttl: seconds a closed session can be restored; ``0`` disables restore.
        presence_ttl: seconds a disconnected session's presence outlives it.
        history_max_bytes: what the history may hold, in bytes as counted by
            :func:`history_cost`; ``0`` = no cap.
    """

    def __init__(
        self,
        *,
        epoch: str,
        history_limit: int = 100,
        history_ttl: float = 300.0,
        sessions_ttl: float = 300.0,
        presence_ttl: float = 15.0,
        history_max_bytes: int = 0,
    ) -> None:
        self.epoch = epoch
        self.history_limit = history_limit
        self.history_ttl = history_ttl
        self.sessions_ttl = sessions_ttl
        self.presence_ttl = presence_ttl
        self.history_max_bytes = history_max_bytes
        # stream -> its retained messages, oldest first, flat (see _Flat); never empty: an
        # emptied stream is forgotten
        self._streams: dict[str, _Flat] = {}
        # one (publish time of the stream's oldest message, stream) per stream: the heap the
        # sweep and the cap take the oldest messages from. A key may be older than the
        # stream's oldest message (history_limit dropped it since): it is then re-keyed.
        self._due: list[tuple[float, str]] = []
        #: bytes the history holds, as counted by :func:`history_cost`
        self.history_bytes = 0
        # the highest offset of any forgotten stream: a stream starts after it
        self._offset_floor = 0
        # the newest publish time of a message the cap evicted (-inf: none)
        self._evicted_until = -math.inf
        self._sessions: dict[str, tuple[SessionSnapshot, float]] = {}
        # (expiry, sid) of released sessions; stale when the session's expiry changed
        self._session_due: list[tuple[float, str]] = []
        # stream -> presence id -> member; (stream, sid) -> presence id
        self._presence: dict[str, dict[str, _Member]] = {}
        self._presence_of: dict[tuple[str, str], str] = {}
        # (stream, sid) -> when a disconnected session's presence expires, and the same as a
        # heap of (expiry, stream, sid); a heap item is stale when the dict says otherwise
        self._presence_expiry: dict[tuple[str, str], float] = {}
        self._presence_due: list[tuple[float, str, str]] = []

    @property
    def stream_count(self) -> int:
        """Streams with retained history."""
        return len(self._streams)

    # -- history ---------------------------------------------------------------------

    def add(self, stream: str, data: str, *, now: float, broadcast_type: str | None = None) -> int:
        """Store a publication; returns its offset (1, 2, 3… per stream).

        A stream the broker forgot (its history expired or was evicted) starts again
        after the highest offset of any forgotten stream, not at 1: a client holding a
        position from before is then refused (``reject_history``), never served messages
        it would take for others.
        """
        streams = self._streams
        entries = streams.get(stream)
        cost = history_cost(data, broadcast_type)
        if entries is None:
            offset = self._offset_floor + 1
            streams[stream] = (offset, data, now, broadcast_type)
            heappush(self._due, (now, stream))
            self.history_bytes += STREAM_COST + len(stream) + cost
        else:
            offset = entries[-_STRIDE] + 1
            self.history_bytes += cost
            if isinstance(entries, tuple):
                if len(entries) < _SMALL * _STRIDE:
                    entries = streams[stream] = (*entries, offset, data, now, broadcast_type)
                else:
                    entries = streams[stream] = deque(entries)
                    entries.extend((offset, data, now, broadcast_type))
            else:
                entries.extend((offset, data, now, broadcast_type))
            if len(entries) > self.history_limit * _STRIDE:
                self._drop_oldest(stream, entries, 1)  # never empties it
        if self.history_max_bytes and self.history_bytes > self.history_max_bytes:
            self._evict_to_cap()
        return offset

    def history_from(
        self, stream: str, epoch: str, offset: int, *, now: float
    ) -> list[HistoryEntry]:
        """Messages with an offset strictly greater than ``offset``.

        Raises:
            HistoryError: see :func:`entries_after`; also an unknown (or forgotten) stream.
        """
        if epoch != self.epoch:
            raise HistoryError("epoch mismatch")
        entries = self._streams.get(stream)
        if entries is None:
            raise HistoryError("unknown stream")
        last_offset: int = entries[-_STRIDE]
        return entries_after(
            self._live(stream, entries, now - self.history_ttl), last_offset, offset
        )

    def history_since(self, stream: str, since: float, *, now: float) -> list[HistoryEntry]:
        """Retained messages published at or after ``since`` (whole seconds).

        Raises:
            HistoryError: the cap evicted a message published at or after ``since`` (of
                some stream: which ones is not remembered) that would not have expired yet.
        """
        evicted = self._evicted_until
        if evicted >= now - self.history_ttl and math.floor(evicted) >= since:
            raise HistoryError("messages published since then were evicted (history_max_bytes)")
        entries = self._streams.get(stream)
        if entries is None:
            return []
        return entries_since(self._live(stream, entries, now - self.history_ttl), since)

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
        """The offset of the last message retained for ``stream`` (0 when none)."""
        entries = self._streams.get(stream)
        last_offset: int = entries[-_STRIDE] if entries is not None else 0
        return last_offset

    @staticmethod
    def _live(stream: str, entries: _Flat, horizon: float) -> list[HistoryEntry]:
        """The messages of ``entries`` published at or after ``horizon`` (those the
        sweep has not dropped yet may have expired)."""
        flat = list(entries)
        return [
            HistoryEntry(stream, flat[i], flat[i + 1], flat[i + 2], flat[i + 3])
            for i in range(0, len(flat), _STRIDE)
            if flat[i + 2] >= horizon
        ]

    def _drop_oldest(self, stream: str, entries: _Flat, count: int) -> _Flat:
        """Drop the ``count`` (≤ all) oldest messages of ``stream``; forget the stream
        when none is left. Returns what is left."""
        size = count * _STRIDE
        if isinstance(entries, tuple):
            dropped: Sequence[Any] = entries[:size]
            entries = entries[size:]
            if entries:
                self._streams[stream] = entries
        else:
            dropped = [entries.popleft() for _ in range(size)]
        self.history_bytes -= sum(
            history_cost(dropped[i + 1], dropped[i + 3]) for i in range(0, size, _STRIDE)
        )
        if not entries:
            del self._streams[stream]
            self.history_bytes -= STREAM_COST + len(stream)
            self._offset_floor = max(self._offset_floor, dropped[-_STRIDE])
        return entries

    def _evict_to_cap(self) -> None:
        """Evict the oldest messages, whatever their stream, until under the cap."""
        due = self._due
        streams = self._streams
        cap = self.history_max_bytes
        while self.history_bytes > cap and due:
            key, stream = due[0]
            entries = streams[stream]
            oldest = entries[_AT]
            if oldest != key:  # stale key: sort the stream again by its real oldest message
                heapreplace(due, (oldest, stream))
                continue
            self._evicted_until = max(self._evicted_until, oldest)
            entries = self._drop_oldest(stream, entries, 1)
            if entries:
                heapreplace(due, (entries[_AT], stream))
            else:
                heappop(due)

    # -- sessions --------------------------------------------------------------------

    def save_session(self, sid: str, snapshot: SessionSnapshot) -> None:
        """Store a live session's snapshot (it does not expire while live)."""
        if self.sessions_ttl > 0:
            self._sessions[sid] = (snapshot, math.inf)

    def release_session(self, sid: str, *, now: float) -> None:
        """The session closed: its snapshot can be restored for ``sessions_ttl`` more."""
        found = self._sessions.get(sid)
        if found is not None:
            until = now + self.sessions_ttl
            self._sessions[sid] = (found[0], until)
            heappush(self._session_due, (until, sid))

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
            until = now + self.presence_ttl
            self._presence_expiry[(stream, sid)] = until
            heappush(self._presence_due, (until, stream, sid))

    def presence_info(self, stream: str) -> list[tuple[str, object]]:
        """(id, info) of everyone present in ``stream``."""
        return [(pid, m.info) for pid, m in self._presence.get(stream, {}).items()]

    # -- expiry ----------------------------------------------------------------------

    def expire(self, now: float, *, budget: int | None = None) -> list[PresenceEvent]:
        """Drop what outlived its TTL; returns the presence ``leave`` events due.

        The work is proportional to what expired (plus a logarithm), not to what is
        stored. With ``budget``, stops after about that many messages, sessions and
        presence records; :meth:`expiry_pending` then tells whether more is due.
        """
        left = math.inf if budget is None else budget
        horizon = now - self.history_ttl
        due = self._due
        streams = self._streams
        while due and left > 0:
            key, stream = due[0]
            if key >= horizon:
                break
            entries = streams[stream]
            count = 0
            for at in itertools.islice(entries, _AT, None, _STRIDE):
                if at >= horizon or count >= left:
                    break
                count += 1
            left -= count + 1
            if count:
                entries = self._drop_oldest(stream, entries, count)
            if entries:
                heapreplace(due, (entries[_AT], stream))
            else:
                heappop(due)
        sessions = self._sessions
        session_due = self._session_due
        while session_due and session_due[0][0] <= now and left > 0:
            until, sid = heappop(session_due)
            left -= 1
            found = sessions.get(sid)
            if found is not None and found[1] == until:
                del sessions[sid]
        events = []
        presence_due = self._presence_due
        while presence_due and presence_due[0][0] <= now and left > 0:
            until, stream, sid = heappop(presence_due)
            left -= 1
            if self._presence_expiry.get((stream, sid)) == until:
                event = self.presence_leave(stream, sid)
                if event is not None:
                    events.append(event)
        return events

    def expiry_pending(self, now: float) -> bool:
        """Whether :meth:`expire` has something (maybe) due at ``now``: O(1)."""
        return bool(
            (self._due and self._due[0][0] < now - self.history_ttl)
            or (self._session_due and self._session_due[0][0] <= now)
            or (self._presence_due and self._presence_due[0][0] <= now)
        )
