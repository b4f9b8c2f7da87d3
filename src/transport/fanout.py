"""The fan-out hot path: one identifier's messages written to every subscriber.

The node layer (:mod:`cableway.node.publish`) calls :func:`fan_out` once per stream
identifier; the writes to each session are inlined here (see :meth:`.Session.push_frame`
for the same logic, one session at a time). The rules of a fan-out (wire items once per
kind of session, ``exclude_socket``, held subscriptions) are the node's
(:mod:`cableway.node.fanout`), shared with the ASGI app.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import trio

from ..node.fanout import encode_run, without
from ..protocol.connection import ping_message
from ..protocol.keepalive import early_window, next_ping_after
from .output import send_bytes
from .session import Session

if TYPE_CHECKING:
    from ..protocol.settings import SessionSettings

__all__ = ["PING_EARLY", "fan_out", "fan_out_one"]

#: a subscriber whose next ping is due within this many seconds (and at most a third of
#: its interval, :data:`~cableway.protocol.keepalive.EARLY_SHARE`) gets it in the same
#: write as a broadcast: one ``write`` instead of two, the ping schedule unchanged
PING_EARLY = 1.0


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
    write = send_bytes
    after_ping = next_ping_after
    inf = math.inf
    delivered = sent_total = 0
    kinds: dict[str, _Wire] = {}
    kind = ""
    wire = _Wire([], [], b"")
    data = b""
    size = count = 0
    try:
        now = trio.current_time()
    except RuntimeError:  # not in a trio run (a test driving the fan-out): no early pings
        now = -inf
    soon = now + PING_EARLY
    with_ping: dict[tuple[str, str], bytes] = {}  # a kind's data + its ping frame
    pinged: list[Session] = []  # early pings the core took: re-scheduled with it
    leased: list[Session] = []  # early pings of the cached plain pings: re-filed as due
    unix_time = 0.0
    # the early pings of cached plain pings (see below), for the last settings seen:
    # the latest due time that rides now (keepalive.early_window), interval, precision
    p_settings: SessionSettings | None = None
    p_latest = -inf
    p_interval = 0.0
    p_precision = ""
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
        # the common case, inlined (see Session.push_frame): writable now (nothing
        # queued, no writer, not closing: transport.output), one write
        if session._writable:
            out, length = data, size
            ping_at = session._ping_at
            if ping_at <= soon:
                # the session's cached plain ping (the core promised plain pings only,
                # see Session.timer_deadline) is due soon: taken here as the core's
                # take_plain_ping(now, PING_EARLY) would (the same keepalive rules),
                # without the core; re-filed with the timer task after the writes
                settings = session._ping_settings
                if settings is not p_settings:
                    p_settings, p_interval = settings, settings.ping_interval
                    p_latest = now + early_window(p_interval, PING_EARLY)
                    p_precision = settings.ping_precision
                if ping_at <= p_latest:
                    session._ping_at = after_ping(ping_at, p_interval, now)
                    leased.append(session)
                    try:
                        out = with_ping[kind, p_precision]
                    except KeyError:
                        if not unix_time:
                            unix_time = time.time()
                        out = _with_ping(session, unix_time, p_precision, data, with_ping)
                    length = len(out)
            elif ping_at == inf and session.scheduled_at <= soon:
                # a ping due soon rides this write, taken by the core
                if not unix_time:
                    unix_time = time.time()
                both = _early_ping(session, now, unix_time, data, with_ping)
                if both is not None:
                    out, length = both, len(both)
                    pinged.append(session)
            try:
                sent = write(session._sock, out)
            except OSError:  # BlockingIOError, or the peer is gone (the writer reports it)
                sent = 0
            sent_total += sent if sent == length else session._short_write(out, sent)
            continue
        sent_total += session._push(data)  # the general path (it re-checks the flag)
    for session in pinged:  # re-filed with the timer task once every write is done
        session.scheduled_at = inf  # its old entry is stale now, and skipped
        session.server.schedule(session)
    if leased:
        leased[0].server.file_pings(leased)  # (one server per fan-out)
    return delivered, sent_total


def fan_out_one(
    session: Session,
    identifier: str,
    text: str,
    offset: int | None,
    exclude: str | None,
) -> tuple[int, int]:
    """:func:`fan_out` of one message to the one subscriber of ``identifier`` (a stream
    per client: :class:`~cableway.node.publish.FanOutOne`), the same rules without the
    set-up a batch for many needs: nothing for the session that published it with
    ``exclude_socket``, nothing for a kind of session that does not get it, held while
    the subscription waits for its history, a ping due soon riding the write, then
    :meth:`.Session._push` (skipped when closing, the outbox behind pending bytes).

    Returns (deliveries, bytes written at once)."""
    if exclude is not None and exclude == session.sid:
        return 0, 0
    frame = session.encode(text)
    if frame is None:
        return 0, 0
    held = session.core.held
    if held and identifier in held:
        session.hold(identifier, offset, frame)
        return 1, 0
    if not session._writable:  # closing (nothing written), or bytes pending: the outbox
        return 1, session._push(frame)
    # the common case, inlined as in fan_out (writable now: nothing queued, no writer,
    # not closing: transport.output), one write
    out = frame
    pinged = False
    if session.scheduled_at != math.inf:
        try:
            now = trio.current_time()
        except RuntimeError:  # not in a trio run (a test driving the fan-out): no ping
            now = -math.inf
        if session.scheduled_at <= now + PING_EARLY:  # a ping due soon rides this write
            both = _early_ping(session, now, time.time(), frame, {})
            if both is not None:
                out = both
                pinged = True
    try:
        sent = send_bytes(session._sock, out)
    except OSError:  # BlockingIOError, or the peer is gone (the writer reports it)
        sent = 0
    if sent != len(out):
        session._short_write(out, sent)
    if pinged:
        session.scheduled_at = math.inf  # its old entry is stale now, and skipped
        session.server.schedule(session)
    return 1, sent


def _early_ping(
    session: Session,
    now: float,
    unix_time: float,
    data: bytes,
    with_ping: dict[tuple[str, str], bytes],
) -> bytes | None:
    """``data`` followed by the ping ``session`` is due soon, that ping taken from its
    schedule (built once per kind of session and precision in ``with_ping``; ``data`` is
    the same for every session of a kind); ``None`` when no plain ping is due soon (the
    timer task does whatever else is due). A kind that sends no ping frame gets ``data``
    alone, its ping taken (as the timer task's batch does)."""
    if session.take_plain_ping(now, PING_EARLY) is None:  # the cached pings given back first
        return None
    precision = session.core.settings.ping_precision
    try:
        return with_ping[session.wire_kind, precision]
    except KeyError:
        return _with_ping(session, unix_time, precision, data, with_ping)


def _with_ping(
    session: Session,
    unix_time: float,
    precision: str,
    data: bytes,
    with_ping: dict[tuple[str, str], bytes],
) -> bytes:
    """``data`` followed by the ping frame of ``session``'s kind and ``precision``
    (``data`` alone for a kind that sends no ping frame), kept in ``with_ping``."""
    frame = session.encode(ping_message(unix_time, precision))
    both = with_ping[session.wire_kind, precision] = data if frame is None else data + frame
    return both


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
