"""The node: sessions, the stream registry, a backend and the driver's fan-out, tied
together (AnyCable-Go's ``node`` package). Both drivers hold one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, Protocol, TypeVar

from ..protocol import service
from ..protocol.broadcast import Publication, RemoteDisconnect
from ..protocol.broker import PresenceEvent
from .backend import Backend, NoBackend
from .intake import Counters
from .publish import FanOut, FanOutOne, Stamped, deliver_one, deliver_run, runs
from .registry import Registry
from .remote import Closable, remote_disconnect

__all__ = ["Gauges", "Node", "Relay"]

S = TypeVar("S", bound=Closable)
C = TypeVar("C")
C_contra = TypeVar("C_contra", contravariant=True)


class Relay(Protocol[C_contra]):
    """Sends a stamped publication to every node (``--pubsub=redis``); each node, this
    one included, delivers it when it comes back."""

    def __call__(
        self,
        publication: Publication,
        offset: int | None,
        epoch: str | None,
        confirmation: C_contra | None,
        /,
    ) -> None: ...


class Gauges(Protocol):
    """Where gauges are read from (``cableway.ops.metrics.Metrics``)."""

    def set(self, name: str, value: Callable[[], int]) -> None: ...


class Node(Generic[S, C]):
    """The rules of a whole node, driver-neutral.

    Args:
        backend: history, sessions and presence (see :mod:`.backend`).
        counters: the node's metrics.
        fan_out: the driver's fan-out to the subscribers of one identifier.
        wall_clock: the driver's Unix time (stamps and expiries; the node reads no clock).
        relay: ``--pubsub=redis``: where publications go to reach every node.
        fan_out_one: the driver's delivery of one message to the one subscriber of an
            identifier (a stream per client), if it has one.
    """

    def __init__(
        self,
        backend: Backend[C],
        counters: Counters,
        fan_out: FanOut[S],
        *,
        wall_clock: Callable[[], float],
        relay: Relay[C] | None = None,
        fan_out_one: FanOutOne[S] | None = None,
    ) -> None:
        self.backend = backend
        self.counters = counters
        self.fan_out = fan_out
        self.fan_out_one = fan_out_one
        self.wall_clock = wall_clock
        self.relay = relay
        #: ``--broker=none``: stamping hands a publication on at once, without a position
        self._unstamped = isinstance(backend, NoBackend)
        self.registry: Registry[S] = Registry()
        #: every live session of this node
        self.sessions: set[S] = set()
        #: the stream whose publications are being fanned out (a session holding one
        #: for a subscription waiting for its history keeps it with its stream)
        self.delivering = ""

    def serve_gauges(self, gauges: Gauges) -> None:
        """Read the node's gauges from it: ``clients_num`` (live sessions),
        ``clients_uniq_num`` (distinct identifiers among them) and
        ``broadcast_streams_num`` (streams with a subscriber)."""
        sessions = self.sessions
        gauges.set("clients_num", lambda: len(sessions))
        gauges.set("clients_uniq_num", lambda: len({s.core.identifiers for s in sessions}))
        gauges.set("broadcast_streams_num", lambda: len(self.registry))

    def publish(self, publications: Iterable[Publication], confirmation: C | None = None) -> None:
        """Stamp (when the backend keeps history) and deliver or relay publications,
        never awaiting. Consecutive publications on one stream are delivered together
        (each subscriber gets them in one write)."""
        relay = self.relay
        if relay is None and type(publications) is list and len(publications) == 1:
            # one publication per request (the usual POST) that nothing stamps: the
            # delivery at once, without the collecting below
            publication = publications[0]
            if publication.transient or self._unstamped:
                # (Node.deliver, with the publication counted in the delivery's call)
                stream = self.delivering = publication.stream
                members = self.registry.recipients(stream)
                one = self.fan_out_one
                if one is None or not deliver_one(
                    members, publication, None, None, self.counters, one, broadcasts=1
                ):
                    self.counters.inc("broadcast_msg_total")
                    deliver_run(members, [(publication, None, None)], self.fan_out, self.counters)
                return
        ready: list[Stamped] = []
        collecting = True

        def then(publication: Publication, offset: int | None, epoch: str | None) -> None:
            if relay is not None:
                relay(publication, offset, epoch, confirmation)
            elif collecting:
                ready.append((publication, offset, epoch))
            else:  # stamped later (Redis answered)
                self.deliver(publication, offset, epoch)

        backend = self.backend
        counters = self.counters
        now = self.wall_clock()
        for publication in publications:
            counters.inc("broadcast_msg_total")
            if publication.transient:
                then(publication, None, None)
            else:
                backend.stamp(
                    publication,
                    now=now,
                    relay=relay is not None,
                    confirmation=confirmation,
                    then=then,
                )
        collecting = False
        self.deliver_stamped(ready)

    def deliver_stamped(self, ready: list[Stamped]) -> None:
        """Fan stamped publications out to this node's subscribers, in order, never
        awaiting: consecutive ones on one stream together (each subscriber gets them in
        one write)."""
        counters = self.counters
        if len(ready) == 1:  # one publication per request: no runs to split
            stream = self.delivering = ready[0][0].stream
            deliver_run(
                self.registry.recipients(stream), ready, self.fan_out, counters, self.fan_out_one
            )
        elif ready:
            recipients = self.registry.recipients
            for run in runs(ready):
                stream = self.delivering = run[0][0].stream
                deliver_run(recipients(stream), run, self.fan_out, counters, self.fan_out_one)

    def deliver(self, publication: Publication, offset: int | None, epoch: str | None) -> None:
        """Fan a stamped publication out to this node's subscribers, never awaiting."""
        stream = self.delivering = publication.stream
        recipients = self.registry.recipients(stream)
        one = self.fan_out_one
        if one is not None and deliver_one(
            recipients, publication, offset, epoch, self.counters, one
        ):
            return
        deliver_run(
            recipients,
            [(publication, offset, epoch)],
            self.fan_out,
            self.counters,
        )

    def publish_presence(self, event: PresenceEvent) -> None:
        """Broadcast a presence join/leave to the presence stream (transient)."""
        self.publish(
            [service.presence_publication(event.stream, event.kind, event.presence_id, event.info)]
        )

    def live_presence(self) -> Iterator[tuple[str, str]]:
        """(stream, sid) of every live presence record of this node's sessions (what a
        backend that leases presence, Redis, renews on each sweep)."""
        return (
            (stream, session.core.sid)
            for session in self.sessions
            for _presence_id, stream in session.core.presence.values()
        )

    def sweep(self, now: float) -> bool:
        """One slice of the backend's expiry (history, sessions, presence; leaves are
        announced on the presence streams). True: more is due now; the driver calls again
        after a checkpoint, every ``backend.sweep_interval`` seconds."""
        return self.backend.sweep(now, self.publish_presence, self.live_presence)

    def remote_disconnect(self, command: RemoteDisconnect) -> None:
        """Disconnect every local session whose identifiers equal the command's."""
        remote_disconnect(list(self.sessions), command)
