"""The half of a session that is the node's, for every driver (pure).

A driver's session is the :class:`~cableway.node.dispatch.EventSink` of its core. Most
of what the core's events mean is a rule of the node, not of the driver: a stream added
or removed goes to the registry, a live message of a subscription waiting for its
history is held (bounded, :class:`~cableway.node.held.HeldMessages`) and released after
it, a publication goes to the node, history and presence are asked of the backend, a
snapshot is stored, an ignored command counted, and a closed session leaves the node.
:class:`NodeSession` holds those once; the driver adds only what touches its sockets
(:meth:`push_frame`, :meth:`request_close`, :meth:`answer_later`, sending and closing).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import Any, Generic, TypeVar

from ..protocol.broadcast import Publication
from ..protocol.broker import SessionSnapshot
from ..protocol.connection import CableConnection
from ..protocol.errors import RemoteProtocolError
from ..protocol.events import HistoryRequest, PresenceRequest
from .backend import Answer
from .held import HeldMessages
from .intake import Counters
from .node import Node

__all__ = ["NodeSession"]

log = logging.getLogger("cableway.node")

W = TypeVar("W")


class NodeSession(Generic[W]):
    """The node's rules for one session; ``W`` is the driver's wire item.

    The driver sets :attr:`wire_kind`, :attr:`node`, :attr:`counters`, :attr:`core`,
    :attr:`sid`, :attr:`held` and :attr:`snapshot`, and implements :meth:`encode`,
    :meth:`push_frame`, :meth:`wire_size`, :meth:`request_close` and :meth:`answer_later`.
    """

    # a driver's session may have no instance dictionary (memory per connection)
    __slots__ = ("snapshot",)

    #: sessions of one kind get the same wire item for the same message
    wire_kind: str
    #: the gauge live sessions of this kind are counted in, besides ``clients_num``
    #: (event streams: ``sse_clients_num``)
    gauge: str | None = None
    node: Node[Any, Any]
    counters: Counters
    core: CableConnection
    sid: str
    #: live messages of subscriptions waiting for their history
    held: HeldMessages[W]
    #: the last snapshot of a resumable session (kept by the backend on close)
    snapshot: SessionSnapshot | None

    # -- the driver's part ---------------------------------------------------------------

    def encode(self, text: str) -> W | None:
        """The wire item of one protocol message for this kind of session (None: this
        kind does not get it)."""
        raise NotImplementedError

    def push_frame(self, frame: W) -> None:
        """Queue a wire item; on overflow disconnect the client as ``too_slow``."""
        raise NotImplementedError

    def wire_size(self, frame: W) -> int:
        """The bytes ``frame`` takes (what the outbox and the held buffer count)."""
        raise NotImplementedError

    def request_close(
        self, reason: str, *, reconnect: bool, code: int = 1000, close_reason: str = ""
    ) -> None:
        raise NotImplementedError

    def answer_later(self, pending: Awaitable[Answer]) -> None:
        """Await a backend's answer in a task; apply it to the core if still open."""
        raise NotImplementedError

    def drop_unsent(self) -> None:
        """Drop the output not yet started on the wire (a frame in flight is finished)."""
        raise NotImplementedError

    def release_application(self) -> None:
        """On leaving, after the core's streams left the registry: release what the
        application (RPC) holds for this session (its streams, its Disconnect call)."""

    # -- the node's part -----------------------------------------------------------------

    def hold(self, identifier: str, offset: int | None, frame: W) -> None:
        """Keep a live message of a restored subscription until its history is in;
        bounded like the outbox (a client over it is closed as ``too_slow``). It is of
        the stream the node is delivering (:attr:`~cableway.node.node.Node.delivering`):
        an application channel reads several, and its history's release drops what was
        replayed per stream."""
        size = self.wire_size(frame)
        if not self.held.hold(identifier, offset, frame, size, self.node.delivering):
            self.counters.inc("disconnected_slow_clients_total")
            self.request_close("too_slow", reconnect=True)

    def too_slow(self) -> None:
        """The client is over its bound (:func:`~cableway.node.bound.over_bound`): drop
        what waits for it and count it; its ``too_slow`` disconnect follows."""
        self.drop_unsent()
        self.counters.inc("disconnected_slow_clients_total")

    def overflow(self) -> None:
        """More output is due for a client over its bound: :meth:`too_slow`, then send it
        ``disconnect`` (``too_slow``, reconnect) and close."""
        self.too_slow()
        self.request_close("too_slow", reconnect=True)

    def write_failed(self, *, timed_out: bool) -> None:
        """Count a write that ended the session: ``timeout_server_msg_total`` when the
        client took nothing for ``ws_write_timeout``, else ``failed_server_msg_total``
        (the peer is gone). The driver then stops the session."""
        self.counters.inc("timeout_server_msg_total" if timed_out else "failed_server_msg_total")
        log.debug("write %s sid=%s", "timed out" if timed_out else "failed", self.sid)

    def take_message(self, message: str | bytes, *, now: float) -> None:
        """One message from the client into the core; ``client_msg_total`` counts those
        that decoded into a command. A fatal one (oversized) has its close queued by the
        core: the driver carries out the core's events next, as after any message."""
        try:
            if self.core.receive_message(message, now=now):
                self.counters.inc("client_msg_total")
        except RemoteProtocolError:
            pass

    def stream_added(self, stream: str, identifier: str) -> None:
        self.node.registry.add(stream, identifier, self)

    def stream_removed(self, stream: str, identifier: str) -> None:
        self.node.registry.remove(stream, identifier, self)
        self.held.drop(identifier)

    def release_held(self, identifier: str, after: int | Mapping[str, int] | None) -> None:
        for frame in self.held.release(identifier, after):
            self.push_frame(frame)

    def publish(self, publication: Publication) -> None:
        self.node.publish([publication])

    def history_request(self, request: HistoryRequest) -> None:
        node = self.node
        pending = node.backend.history(self.core, request, now=node.wall_clock())
        if pending is not None:
            self.answer_later(pending)

    def presence_request(self, request: PresenceRequest) -> None:
        node = self.node
        pending = node.backend.presence(
            self.core, request, node.publish_presence, now=node.wall_clock()
        )
        if pending is not None:
            self.answer_later(pending)

    def session_changed(self, sid: str, snapshot: SessionSnapshot) -> None:
        self.snapshot = snapshot
        self.node.backend.save_session(sid, snapshot)

    def command_ignored(self, command: str, detail: str) -> None:
        self.counters.inc("failed_client_msg_total")
        log.debug("ignored command sid=%s command=%r reason=%r", self.sid, command, detail)

    def join(self) -> None:
        """The session is live: one of the node's sessions (remote disconnects, the
        ``clients_num`` gauges) and counted in its kind's :attr:`gauge`. Before the
        session first carries out its core's events; :meth:`leave` undoes it."""
        self.node.sessions.add(self)
        if self.gauge is not None:
            self.counters.inc(self.gauge)

    def leave(self) -> None:
        """The session ended: out of the registry and the node; the backend keeps its
        snapshot (restorable for ``sessions_ttl``) and expires its presence."""
        node = self.node
        registry = node.registry
        core = self.core
        for identifier, stream in core.subscriptions.items():
            registry.remove(stream, identifier, self)
        core.subscriptions.clear()
        self.release_application()
        if self in node.sessions:
            node.sessions.discard(self)
            if self.gauge is not None:
                self.counters.inc(self.gauge, -1)
        streams = [stream for _presence_id, stream in core.presence.values()]
        node.backend.release_session(self.sid, self.snapshot, streams, now=node.wall_clock())
