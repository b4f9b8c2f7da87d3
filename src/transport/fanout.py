"""The fan-out hot path: one identifier's messages written to every subscriber.

The node layer (:mod:`cableway.node.publish`) calls :func:`fan_out` once per stream
identifier; the writes to each session are inlined here (see :meth:`.Session.push_frame`
for the same logic, one session at a time). The rules of a fan-out (wire items once per
kind of session, ``exclude_socket``, held subscriptions) are the node's
(:mod:`cableway.node.fanout`), shared with the ASGI app.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from ..node.fanout import encode_run, without
from .session import Session

__all__ = ["fan_out"]


def fan_out(
    sessions: Iterable[Session],
    identifier: str,
    texts: Sequence[str],
    offsets: Sequence[int | None],
    excludes: Sequence[str | None] | None,
) -> tuple[int, int]:
    """Deliver broadcast messages (in order) to the subscribers of one identifier.

    ``texts`` are the client messages (one per publication), ``offsets`` their stream
    offsets, ``excludes`` their ``exclude_socket`` (``None`` when no message excludes
    anyone). Wire bytes are built once per kind of session; a subscriber gets every
    message meant for it in one write (a batch is coalesced), goes through the outbox
    when bytes are already pending there, or holds them while its subscription waits
    for its history. Never awaits.

    Returns the number of deliveries (subscriber, message) and the bytes written at
    once (the caller accounts both, once per fan-out).
    """
    write = os.write
    delivered = sent_total = 0
    kinds: dict[str, _Wire] = {}
    kind = ""
    wire = _Wire([], [], b"")
    data = b""
    size = count = 0
    for session in sessions:
        if session.wire_kind != kind:
            kind = session.wire_kind
            found = kinds.get(kind)
            if found is None:
                found = kinds[kind] = _Wire.build(session, texts, offsets, excludes)
            wire = found
            data = wire.data
            size = len(data)
            count = len(wire.frames)
        if excludes is not None and session.sid in excludes:
            own = without(wire.frames, wire.excludes, session.sid)
            delivered += len(own)
            sent_total += session._push_messages(identifier, own)
            continue
        if not count:
            continue
        delivered += count
        held = session.core.held
        if held and identifier in held:
            session._push_messages(identifier, wire.frames)
            continue
        # the common case, inlined (see Session.push_frame): nothing queued, one write
        if session._closing or session._pending_close is not None:
            continue
        fd = session._fd
        if fd >= 0 and not session._writer_active and not session.outbox.size:
            try:
                sent = write(fd, data)
            except OSError:  # BlockingIOError, or the peer is gone (the writer reports it)
                sent = 0
            if sent:
                sent_total += sent
                if sent == size:
                    continue
                session._put_back(memoryview(data)[sent:])
                continue
        session._enqueue(data)
    return delivered, sent_total


class _Wire:
    """The wire bytes of a run of messages for one kind of session."""

    __slots__ = ("data", "excludes", "frames")

    def __init__(
        self,
        frames: list[tuple[int | None, bytes]],
        excludes: list[str | None],
        data: bytes,
    ) -> None:
        #: (offset, frame) of every message this kind of session gets
        self.frames = frames
        #: the exclude_socket of each of those messages
        self.excludes = excludes
        #: all the frames together (what one write sends)
        self.data = data

    @classmethod
    def build(
        cls,
        session: Session,
        texts: Sequence[str],
        offsets: Sequence[int | None],
        excludes: Sequence[str | None] | None,
    ) -> _Wire:
        frames, kept = encode_run(session.encode, texts, offsets, excludes)
        data = frames[0][1] if len(frames) == 1 else b"".join(frame for _, frame in frames)
        return cls(frames, kept, data)
