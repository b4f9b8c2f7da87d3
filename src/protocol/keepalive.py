"""A session's keepalive: when its next ping is due and by when the client must have
answered the last one (the pong deadline). No clock: times are the driver's, passed in."""

from __future__ import annotations

import math

from . import messages
from .settings import SessionSettings

__all__ = ["EARLY_SHARE", "Keepalive", "early_window", "next_ping_after", "ping_message"]

#: the most of its interval a ping may be sent early to ride a write that goes out
#: anyway (:meth:`Keepalive.take_plain`): a gap between two pings stays under
#: ``(1 + EARLY_SHARE)`` intervals, well inside a client's staleness limit (two intervals
#: for ``@rails/actioncable``)
EARLY_SHARE = 1 / 3

_PRECISION = {"s": 1, "ms": 1_000, "ns": 1_000_000_000}


def ping_message(unix_time: float, precision: str) -> str:
    """The ping message at ``unix_time`` with its stamp in ``precision`` (``s``, ``ms`` or
    ``ns``; any other: seconds): the same for every session with that precision."""
    return messages.ping(int(unix_time * _PRECISION.get(precision, 1)))


def next_ping_after(due: float, interval: float, now: float) -> float:
    """When the ping after the one due at ``due``, sent at ``now``, is due: one
    ``interval`` after ``due`` (the schedule is kept, also for a ping sent a little
    early or late), or one ``interval`` after ``now`` when that time has passed already
    (the sender fell more than an interval behind)."""
    next_ping = due + interval
    return next_ping if next_ping > now else now + interval


def early_window(interval: float, early: float) -> float:
    """How long before it is due a ping may be taken to ride a write going out anyway,
    for a driver that would take it up to ``early`` seconds early: at most
    :data:`EARLY_SHARE` of the ``interval`` (see :meth:`Keepalive.take_plain`)."""
    return min(early, interval * EARLY_SHARE)


class Keepalive:
    """The ping schedule and the pong deadline of one session.

    Args:
        settings: the session's ping interval, pong timeout and protocol.
        now: the driver's clock when the session starts.
        jitter: in ``[0, 1)``; the first ping is due ``(0.5 + jitter) * interval`` later.
    """

    __slots__ = ("_interval", "_pong_timeout", "next_ping", "pong_deadline")

    def __init__(self, settings: SessionSettings, now: float, jitter: float) -> None:
        interval = settings.ping_interval
        self._interval = interval
        tracked = settings.extended or settings.native_pings
        #: seconds a client has to answer a ping, 0 when pongs are not tracked
        self._pong_timeout = settings.pong_timeout if tracked else 0.0
        #: when the next ping is due (``None``: never)
        self.next_ping: float | None = now + interval * (0.5 + jitter) if interval > 0 else None
        #: when the client is given up for not answering a ping (``None``: not waiting)
        self.pong_deadline: float | None = None

    def align(self, grid: float) -> None:
        """Move the first ping up to the next multiple of ``grid`` (see
        :meth:`~.connection.CableConnection.align_pings`)."""
        next_ping = self.next_ping
        if next_ping is None or grid <= 0 or 2 * grid > self._interval:
            return
        self.next_ping = math.ceil(next_ping / grid) * grid

    def advance(self, now: float) -> float:
        """A ping is sent at ``now``: the next one's due time (returned), and the pong
        deadline armed where pongs are tracked."""
        assert self.next_ping is not None
        next_ping = self.next_ping = next_ping_after(self.next_ping, self._interval, now)
        timeout = self._pong_timeout
        if timeout > 0 and self.pong_deadline is None:
            self.pong_deadline = now + timeout
        return next_ping

    def plain_from(self) -> float | None:
        """The next ping's due time when pings never arm a deadline (pongs are not
        tracked and none is awaited), so that every deadline of this keepalive is a
        plain ping, each one interval after the one before; else ``None``."""
        if self._pong_timeout > 0 or self.pong_deadline is not None:
            return None
        return self.next_ping

    def take_plain(self, now: float, hold: float | None, early: float = 0.0) -> float | None:
        """Take the ping due at ``now`` when it is all that is due (no pong or ``hold``
        deadline passed): the next deadline, counting ``hold``; ``None`` when no ping is
        due or something else is (see :meth:`~.connection.CableConnection.take_plain_ping`).

        ``early``: also take a ping due within that many seconds, at most
        :data:`EARLY_SHARE` of the interval (the ping rides a write going out anyway);
        the schedule is kept: the next ping is due one interval after the one taken was.
        """
        next_ping = self.next_ping
        if early > 0:
            early = early_window(self._interval, early)
        if next_ping is None or now + early < next_ping:
            return None
        pong = self.pong_deadline
        if (hold is not None and now >= hold) or (pong is not None and now >= pong):
            return None
        best = self.advance(now)
        pong = self.pong_deadline
        if pong is not None and pong < best:
            best = pong
        if hold is not None and hold < best:
            best = hold
        return best
