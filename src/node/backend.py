"""One interface for what a broker keeps: history, session snapshots and presence.

The node and both drivers talk to a :class:`Backend`; the composition root picks one
(:class:`MemoryBackend`, the Redis one in ``cableway.transport.redis_broker``, or
:class:`NoBackend`), and no call site asks which. A backend answers at once when it
can (the memory broker) and hands an awaitable back when it must wait (Redis): the
driver awaits it in a task and applies the :data:`Answer` to the session's core if the
session is still open.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

from ..protocol import service
from ..protocol.broadcast import Publication
from ..protocol.broker import MemoryBroker, PresenceEvent, SessionSnapshot
from ..protocol.connection import CableConnection
from ..protocol.events import HistoryRequest, PresenceRequest

__all__ = [
    "SWEEP_SLICE",
    "Answer",
    "Backend",
    "MemoryBackend",
    "NoBackend",
    "OnPresence",
    "OnStamped",
    "PresenceRecords",
]

log = logging.getLogger("cableway.node")

#: messages, sessions and presence records the memory broker's sweep expires between two
#: checkpoints (a few milliseconds of work)
SWEEP_SLICE = 2000

#: a late answer, applied to a session's core once it came (only if it is still open)
Answer = Callable[[CableConnection], None]
#: ``(presence id, info)`` of everyone present in a stream
PresenceRecords = list[tuple[str, object]]
#: gets a presence ``join``/``leave`` to announce to the presence stream
OnPresence = Callable[[PresenceEvent], None]
#: gets a publication once stamped with its offset and epoch (None: no history)
OnStamped = Callable[[Publication, "int | None", "str | None"], None]

C_contra = TypeVar("C_contra", contravariant=True)


class Backend(Protocol[C_contra]):
    """What a node needs from its broker. ``C_contra`` is the driver's acknowledgement
    record (what a publisher waits on), opaque to the node."""

    @property
    def keeps_state(self) -> bool:
        """Whether sessions get history, presence and (see :attr:`resumable`) restores."""
        ...

    @property
    def resumable(self) -> bool:
        """Whether a closed session's snapshot can be restored (``sessions_ttl`` > 0)."""
        ...

    @property
    def sweep_interval(self) -> float:
        """Seconds between two calls of :meth:`sweep` (``inf``: never)."""
        ...

    def stamp(
        self,
        publication: Publication,
        *,
        now: float,
        relay: bool,
        confirmation: C_contra | None,
        then: OnStamped,
    ) -> None:
        """Store a (non-transient) publication with its stream's next offset.

        ``then`` gets it once stamped, unless ``relay`` is set and the backend relays the
        stamped message to every node itself (Redis does, in the same script).
        """
        ...

    def history(
        self, core: CableConnection, request: HistoryRequest, *, now: float
    ) -> Awaitable[Answer] | None:
        """Answer a history request now (None), or later (the awaitable's answer)."""
        ...

    def presence(
        self, core: CableConnection, request: PresenceRequest, on_event: OnPresence, *, now: float
    ) -> Awaitable[Answer] | None:
        """Carry out a presence operation; joins and leaves go to ``on_event``."""
        ...

    def presence_users(self, stream: str) -> Awaitable[PresenceRecords | None]:
        """Who is present in ``stream`` (the REST API's presence query): ``(id, info)``
        of each presence id, ``[]`` when nobody is; ``None`` when the broker cannot answer
        now (Redis unreachable). Only asked when :attr:`keeps_state`."""
        ...

    def save_session(self, sid: str, snapshot: SessionSnapshot) -> None:
        """Keep a live resumable session's snapshot."""
        ...

    def release_session(
        self, sid: str, snapshot: SessionSnapshot | None, presence: Iterable[str], *, now: float
    ) -> None:
        """The session closed: restorable for ``sessions_ttl``, its presence in the
        ``presence`` streams expires after ``presence_ttl``."""
        ...

    def restore_session(self, sid: str, *, now: float) -> Awaitable[SessionSnapshot | None]:
        """The snapshot of session ``sid`` when it can be restored."""
        ...

    def sweep(
        self,
        now: float,
        on_event: OnPresence,
        live_presence: Callable[[], Iterable[tuple[str, str]]],
    ) -> bool:
        """Expire what outlived its TTL (leaves go to ``on_event``); True: more is due
        now, call again after a checkpoint. ``live_presence`` lists the node's live
        ``(stream, sid)`` presence records, for backends that lease them."""
        ...


_T = TypeVar("_T")


async def _ready(value: _T) -> _T:
    return value


class NoBackend:
    """``--broker=none``: no history, no presence, no restores."""

    keeps_state = False
    resumable = False
    sweep_interval = math.inf

    def stamp(
        self,
        publication: Publication,
        *,
        now: float,
        relay: bool,
        confirmation: object | None,
        then: OnStamped,
    ) -> None:
        then(publication, None, None)

    def history(
        self, core: CableConnection, request: HistoryRequest, *, now: float
    ) -> Awaitable[Answer] | None:
        core.history_result(request.identifier, None)
        return None

    def presence(
        self, core: CableConnection, request: PresenceRequest, on_event: OnPresence, *, now: float
    ) -> Awaitable[Answer] | None:
        if request.kind == "info":
            core.presence_result(request.identifier, None)
        return None

    def presence_users(self, stream: str) -> Awaitable[PresenceRecords | None]:
        return _ready(None)

    def save_session(self, sid: str, snapshot: SessionSnapshot) -> None:
        return None

    def release_session(
        self, sid: str, snapshot: SessionSnapshot | None, presence: Iterable[str], *, now: float
    ) -> None:
        return None

    def restore_session(self, sid: str, *, now: float) -> Awaitable[SessionSnapshot | None]:
        return _ready(None)

    def sweep(
        self,
        now: float,
        on_event: OnPresence,
        live_presence: Callable[[], Iterable[tuple[str, str]]],
    ) -> bool:
        return False


class MemoryBackend:
    """The in-memory broker (``--broker=memory``): everything answered at once."""

    sweep_interval = 1.0
    keeps_state = True

    def __init__(self, broker: MemoryBroker, *, sweep_slice: int = SWEEP_SLICE) -> None:
        self.broker = broker
        self.sweep_slice = sweep_slice

    @property
    def resumable(self) -> bool:
        return self.broker.sessions_ttl > 0

    def stamp(
        self,
        publication: Publication,
        *,
        now: float,
        relay: bool,
        confirmation: object | None,
        then: OnStamped,
    ) -> None:
        broker = self.broker
        offset = broker.add(
            publication.stream,
            publication.data,
            now=now,
            broadcast_type=publication.broadcast_type,
        )
        then(publication, offset, broker.epoch)

    def history(
        self, core: CableConnection, request: HistoryRequest, *, now: float
    ) -> Awaitable[Answer] | None:
        service.answer_history(self.broker, core, request, now=now)
        return None

    def presence(
        self, core: CableConnection, request: PresenceRequest, on_event: OnPresence, *, now: float
    ) -> Awaitable[Answer] | None:
        broker = self.broker
        if request.kind == "info":
            core.presence_result(request.identifier, broker.presence_info(request.stream))
            return None
        if request.kind == "join":
            try:
                event = broker.presence_join(
                    request.stream, core.sid, request.presence_id, request.info
                )
            except ValueError:
                log.debug("presence id mismatch sid=%s", core.sid)
                return None
        else:
            event = broker.presence_leave(request.stream, core.sid)
        if event is not None:
            on_event(event)
        return None

    def presence_users(self, stream: str) -> Awaitable[PresenceRecords | None]:
        return _ready(self.broker.presence_info(stream))

    def save_session(self, sid: str, snapshot: SessionSnapshot) -> None:
        self.broker.save_session(sid, snapshot)

    def release_session(
        self, sid: str, snapshot: SessionSnapshot | None, presence: Iterable[str], *, now: float
    ) -> None:
        broker = self.broker
        broker.release_session(sid, now=now)
        for stream in presence:
            broker.presence_disconnect(stream, sid, now=now)

    def restore_session(self, sid: str, *, now: float) -> Awaitable[SessionSnapshot | None]:
        return _ready(self.broker.restore_session(sid, now=now))

    def sweep(
        self,
        now: float,
        on_event: OnPresence,
        live_presence: Callable[[], Iterable[tuple[str, str]]],
    ) -> bool:
        broker = self.broker
        for event in broker.expire(now, budget=self.sweep_slice):
            on_event(event)
        return broker.expiry_pending(now)
