"""The Redis broker as the node's backend (``--broker=redis``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from ..node.backend import Answer, OnPresence, OnStamped, PresenceRecords
from ..protocol.broadcast import Publication
from ..protocol.broker import SessionSnapshot
from ..protocol.connection import CableConnection
from ..protocol.events import HistoryRequest, PresenceRequest
from .redis_broker import RedisBroker
from .scaleout import Confirmation

__all__ = ["RedisBackend"]


class RedisBackend:
    """:class:`RedisBroker` as the node's :class:`~cableway.node.backend.Backend`
    (``--broker=redis``): stamps through the ordered command queue; reads answer later."""

    keeps_state = True

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        #: when this node last renewed its live presence leases (Unix time)
        self._renewed: float | None = None

    @property
    def resumable(self) -> bool:
        return self.broker.sessions_ttl > 0

    @property
    def sweep_interval(self) -> float:
        return min(1.0, self.broker.presence_lease / 3)

    def stamp(
        self,
        publication: Publication,
        *,
        now: float,
        relay: bool,
        confirmation: Confirmation | None,
        then: OnStamped,
    ) -> None:
        # with relay, the script itself publishes the stamped message to every node
        self.broker.stamp(
            publication,
            now=now,
            channel=publication.stream if relay else None,
            confirmation=confirmation,
            on_stamped=None if relay else then,
        )

    def history(
        self, core: CableConnection, request: HistoryRequest, *, now: float
    ) -> Awaitable[Answer] | None:
        return self._history(request, now)

    async def _history(self, request: HistoryRequest, now: float) -> Answer:
        entries, epoch = await self.broker.fetch_history(request.queries, now=now)

        def answer(core: CableConnection) -> None:
            core.history_result(request.identifier, entries, epoch=epoch)

        return answer

    def presence(
        self, core: CableConnection, request: PresenceRequest, on_event: OnPresence, *, now: float
    ) -> Awaitable[Answer] | None:
        broker = self.broker
        if request.kind == "join":
            broker.presence_join(
                request.stream, core.sid, request.presence_id, request.info, on_event, now=now
            )
            return None
        if request.kind == "leave":
            broker.presence_leave(request.stream, core.sid, on_event)
            return None
        return self._presence_info(request)

    async def _presence_info(self, request: PresenceRequest) -> Answer:
        records = await self.broker.presence_info(request.stream)

        def answer(core: CableConnection) -> None:
            core.presence_result(request.identifier, records)

        return answer

    def presence_users(self, stream: str) -> Awaitable[PresenceRecords | None]:
        return self.broker.presence_info(stream)

    def save_session(self, sid: str, snapshot: SessionSnapshot) -> None:
        self.broker.save_session(sid, snapshot)

    def release_session(
        self, sid: str, snapshot: SessionSnapshot | None, presence: Iterable[str], *, now: float
    ) -> None:
        broker = self.broker
        broker.release_session(sid, snapshot)
        for stream in presence:
            broker.presence_disconnect(stream, sid, now=now)

    def restore_session(self, sid: str, *, now: float) -> Awaitable[SessionSnapshot | None]:
        return self.broker.restore_session(sid)

    def sweep(
        self,
        now: float,
        on_event: OnPresence,
        live_presence: Callable[[], Iterable[tuple[str, str]]],
    ) -> bool:
        """Renew this node's live presence leases every third of a lease, and expire
        presence (each expiry is handed to one node)."""
        broker = self.broker
        if self._renewed is None:
            self._renewed = now
        elif now - self._renewed >= broker.presence_lease / 3:
            self._renewed = now
            broker.presence_renew(live_presence(), now=now)
        broker.expire(now, on_event)
        return False
