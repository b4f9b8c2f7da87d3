"""The node's shared timer task: every session's pings, pong and hold deadlines.

One task wakes for every session that is due, in batches at most
:data:`TIMER_QUANTUM` apart (timers fire at most that late, never early). Pings are
due on multiples of :data:`~cableway.transport.session.PING_GRID` (see
``CableConnection.align_pings``), so the sessions that connected within the same slice
of time share a tick: one wake-up, one ping frame per kind of session and precision,
one ``send`` per socket, and one next due time per settings and kind of session
(:meth:`Timers.fire_due`).

Resource handling:
    Deadline -> weak references to the sessions due then (sessions whose pings share a
    tick share one list), and a heap of those deadlines. A session's entries other
    than the one at its ``scheduled_at`` are stale and skipped; a closed session is
    freed at once (nothing here keeps it alive).
"""

from __future__ import annotations

import heapq
import math
import time
import weakref
from typing import TYPE_CHECKING

import trio

from ..ops.metrics import Metrics
from ..protocol.connection import ping_message
from ..protocol.keepalive import next_ping_after
from .output import send_bytes

if TYPE_CHECKING:
    from ..protocol.settings import SessionSettings
    from .session import Session

__all__ = ["TIMER_QUANTUM", "Timers"]

#: a tick's group of plain pings: their settings, next due time, frame (None: dropped)
#: and the list of the tick they go to
_Group = tuple["SessionSettings", float, "bytes | None", "list[weakref.ref[Session]]"]

#: the shortest time between two batches of the shared timer task, in seconds: a
#: session's ping, pong deadline or hold deadline fires at most this late
TIMER_QUANTUM = 0.01


class Timers:
    """The timer task of one node and what it waits for (see the module docstring)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._timers: dict[float, list[weakref.ref[Session]]] = {}
        self._deadlines: list[float] = []
        self._changed = trio.Event()

    def schedule(self, session: Session) -> None:
        """Make sure the timer task wakes ``session`` at its next deadline."""
        deadline = session.timer_deadline()
        if deadline is None or deadline >= session.scheduled_at:
            return
        session.scheduled_at = deadline
        due = self._timers.get(deadline)
        if due is not None:
            due.append(session.ref)  # a tick other sessions wait for already
            return
        self._timers[deadline] = [session.ref]
        deadlines = self._deadlines
        heapq.heappush(deadlines, deadline)
        if deadlines[0] == deadline:
            self._changed.set()  # an earlier wake-up than the task sleeps for

    def file_pings(self, sessions: list[Session]) -> None:
        """``sessions`` took their cached plain ping early (the fan-out, with a
        broadcast): each is due next at its ``_ping_at`` (later than its old deadline,
        whose entry is stale now and skipped). The core is not asked: it promised plain
        pings only (see :meth:`Session.timer_deadline`)."""
        timers, deadlines = self._timers, self._deadlines
        for session in sessions:
            after = session.scheduled_at = session._ping_at
            due = timers.get(after)
            if due is not None:
                due.append(session.ref)
                continue
            timers[after] = [session.ref]
            heapq.heappush(deadlines, after)
            if deadlines[0] == after:
                self._changed.set()  # an earlier wake-up than the task sleeps for

    async def run(self) -> None:
        """Fire every session's due timers, in batches at most :data:`TIMER_QUANTUM` apart.

        Deadlines are spread out (pings are jittered per session, on a grid of
        :data:`~cableway.transport.session.PING_GRID`), so waking for each one would
        cost a wake-up of this task per ping; instead each wake-up fires everything
        due and the next one is at least a quantum later (timers fire at most that
        late, never early). Sessions woken in one batch share their ping bytes (see
        :meth:`Session.on_timer`), and the bytes written are counted once per batch.
        """
        deadlines = self._deadlines
        last = -math.inf
        while True:
            wake = max(deadlines[0], last + TIMER_QUANTUM) if deadlines else math.inf
            with trio.move_on_at(wake):
                await self._changed.wait()
            if self._changed.is_set():
                self._changed = trio.Event()
            now = trio.current_time()
            if not deadlines or deadlines[0] > now:
                continue
            last = now
            self.fire_due(now, time.time())
            await trio.lowlevel.checkpoint()

    def fire_due(self, now: float, unix_time: float) -> None:
        """One batch of the timer task: every session due by ``now``.

        The common case, a plain ping, is done here for each session without waking its
        state machine: the ping frame is built once per kind of session and precision,
        sent straight to the socket when nothing is queued (as the fan-out does; else
        behind the queue, see :meth:`Session._push`), and the session re-scheduled at
        its next deadline. When the session cached the core's promise that plain pings
        are all it is due (``Session._ping_at``, see :meth:`Session.timer_deadline`),
        that touches the session and its socket only, not the core; else the core is
        asked (:meth:`CableConnection.take_plain_ping`). Anything else goes through
        :meth:`Session.on_timer`.

        The common tick: sessions writable now whose cached ping is due exactly at the
        tick were aligned on the grid together, so those of one settings object (the
        interval and precision; shared between sessions, see ``SessionRules.settings``)
        and kind of session share the next due time, ``next_ping_after(tick, interval,
        now)``, the very call each would make alone (its ping was due at the tick), and
        so the frame and the list of the tick they go to: per ping that is the weak
        reference, the session and its socket, one ``send``, and the session's two
        times set to that one shared float (no float, call or dict look-up per session).
        """
        timers, deadlines = self._timers, self._deadlines
        heappop, heappush = heapq.heappop, heapq.heappush
        send = send_bytes
        after_ping = next_ping_after
        inf = math.inf
        frames: dict[tuple[str, str], bytes | None] = {}
        kind = precision = ""
        frame: bytes | None = None
        sent = 0
        while deadlines and deadlines[0] <= now:
            deadline = heappop(deadlines)
            # the tick's groups: sessions of one settings object and kind whose cached
            # plain ping is due at ``deadline`` share the next due time (computed once,
            # by next_ping_after, as for each alone), the frame and the list they go to
            groups: dict[tuple[int, str], _Group] = {}
            g_settings: SessionSettings | None = None
            g_kind = ""
            g_after = inf
            g_frame: bytes | None = None
            g_due: list[weakref.ref[Session]] = []
            for ref in timers.pop(deadline):
                session = ref()
                if session is None or session.scheduled_at != deadline:
                    continue  # closed and freed, or due earlier and re-scheduled
                # one attribute for "nothing queued, no writer, not closing" (.output)
                writable = session._writable
                ping_at = session._ping_at
                if writable and ping_at == deadline:  # the common tick: a cached plain ping
                    settings = session._ping_settings
                    if settings is not g_settings or session.wire_kind != g_kind:
                        key = (id(settings), session.wire_kind)
                        group = groups.get(key)
                        if group is None or group[0] is not settings:
                            g_after = after_ping(deadline, settings.ping_interval, now)
                            g_kind, g_precision = session.wire_kind, settings.ping_precision
                            try:
                                g_frame = frames[g_kind, g_precision]
                            except KeyError:
                                text = ping_message(unix_time, g_precision)
                                g_frame = frames[g_kind, g_precision] = session.encode(text)
                            due = timers.get(g_after)
                            if due is None:
                                due = timers[g_after] = []
                                heappush(deadlines, g_after)
                            group = groups[key] = (settings, g_after, g_frame, due)
                        g_settings, g_after, g_frame, g_due = group
                        g_kind = session.wire_kind
                    if g_frame is not None:
                        try:
                            n = send(session._sock, g_frame)
                        except OSError:  # BlockingIOError, or the peer is gone
                            n = 0
                        sent += n if n == len(g_frame) else session._short_write(g_frame, n)
                    session._ping_at = session.scheduled_at = g_after
                    g_due.append(ref)
                    continue
                if ping_at <= now and writable:  # a cached plain ping, due earlier
                    settings = session._ping_settings
                    after = after_ping(ping_at, settings.ping_interval, now)
                    session._ping_at = after
                else:
                    session.scheduled_at = inf
                    session.resume_pings()
                    core = session.core
                    taken = None if not writable and session._closing else core.take_plain_ping(now)
                    if taken is None:
                        sent += session.on_timer(now, unix_time)  # re-schedules it
                        continue
                    after = taken
                    session.lease_pings()
                    settings = core.settings
                # the ping frame of this kind of session and precision (most of a
                # batch share one: no look-up then)
                if session.wire_kind != kind or settings.ping_precision != precision:
                    kind, precision = session.wire_kind, settings.ping_precision
                    try:
                        frame = frames[kind, precision]
                    except KeyError:
                        text = ping_message(unix_time, precision)
                        frame = frames[kind, precision] = session.encode(text)
                if frame is not None:
                    if writable:
                        try:
                            n = send(session._sock, frame)
                        except OSError:  # BlockingIOError, or the peer is gone
                            n = 0
                        sent += n if n == len(frame) else session._short_write(frame, n)
                    else:
                        sent += session._push(frame)
                # re-schedule at its next deadline
                session.scheduled_at = after
                due = timers.get(after)
                if due is None:
                    timers[after] = [ref]
                    heappush(deadlines, after)
                else:
                    due.append(ref)
        if sent:
            self.metrics.inc("data_sent_total", sent)
