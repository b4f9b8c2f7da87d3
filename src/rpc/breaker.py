"""The HTTP RPC circuit breaker (rpc.md §3.7), as a state machine driven by plain calls.

AnyCable-Go wraps every HTTP RPC request in ``sony/gobreaker``'s two-step breaker with
these settings, which :class:`CircuitBreaker` reproduces:

* **closed**: requests go through; their results are counted per window of
  ``interval`` (10 s) seconds, starting when the breaker closed. A failure that leaves
  the window with at least ``min_requests`` (10) requests and at least ``failure_ratio``
  (80 %) failures **opens** the breaker;
* **open** for ``open_seconds`` (5 s): every request is refused at once;
* then **half-open**: at most ``half_open_requests`` (5) requests at a time are let
  through; that many consecutive successes close it, any failure opens it again.

A failure is a request that got no HTTP response (refused, reset, TLS, timeout); any
response, whatever its status, is a success. Sans-IO: the caller passes the time (any
monotonic clock, in seconds) to every call.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["BreakerState", "CircuitBreaker", "Ticket"]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True, slots=True)
class Ticket:
    """A request the breaker let through; hand it back to :meth:`CircuitBreaker.done`."""

    generation: int


class CircuitBreaker:
    """gobreaker's ``TwoStepCircuitBreaker`` with AnyCable-Go's settings (defaults).

    Use :meth:`allow` before a request (``None``: refused, fail the call at once) and
    :meth:`done` with its result. Results of requests started before the last change of
    state or window are ignored, as gobreaker does.
    """

    def __init__(
        self,
        *,
        now: float,
        interval: float = 10.0,
        open_seconds: float = 5.0,
        half_open_requests: int = 5,
        min_requests: int = 10,
        failure_ratio: float = 0.8,
    ) -> None:
        self.interval = interval
        self.open_seconds = open_seconds
        self.half_open_requests = half_open_requests
        self.min_requests = min_requests
        self.failure_ratio = failure_ratio
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._expiry = now + interval
        self.requests = 0
        self.failures = 0
        self.consecutive_successes = 0
        #: how many times the breaker opened
        self.opened = 0

    def state(self, now: float) -> BreakerState:
        """The state at ``now`` (open turns half-open once its time is over; a closed
        breaker's window starts again every ``interval``)."""
        if self._state is BreakerState.CLOSED:
            if now >= self._expiry:
                self._new_generation(now)
        elif self._state is BreakerState.OPEN and now >= self._expiry:
            self._set(BreakerState.HALF_OPEN, now)
        return self._state

    def allow(self, now: float) -> Ticket | None:
        """Let a request through (a :class:`Ticket`), or refuse it (``None``): open, or
        half-open with ``half_open_requests`` already let through."""
        state = self.state(now)
        if state is BreakerState.OPEN:
            return None
        if state is BreakerState.HALF_OPEN and self.requests >= self.half_open_requests:
            return None
        self.requests += 1
        return Ticket(self._generation)

    def done(self, ticket: Ticket, *, success: bool, now: float) -> BreakerState | None:
        """Record the result of a request :meth:`allow` let through. Returns the new
        state when this result changed it (to log), else ``None``."""
        before = self._state
        self.state(now)
        if ticket.generation != self._generation:
            return self._state if self._state is not before else None
        if success:
            self.consecutive_successes += 1
            if (
                self._state is BreakerState.HALF_OPEN
                and self.consecutive_successes >= self.half_open_requests
            ):
                self._set(BreakerState.CLOSED, now)
        else:
            self.failures += 1
            self.consecutive_successes = 0
            if self._state is BreakerState.HALF_OPEN or self._ready_to_trip():
                self._set(BreakerState.OPEN, now)
        return self._state if self._state is not before else None

    def _ready_to_trip(self) -> bool:
        # as gobreaker's ReadyToTrip in AnyCable-Go: the ratio, compared in floating point
        return (
            self.requests >= self.min_requests
            and self.failures / self.requests >= self.failure_ratio
        )

    def _set(self, state: BreakerState, now: float) -> None:
        self._state = state
        if state is BreakerState.OPEN:
            self.opened += 1
        self._new_generation(now)

    def _new_generation(self, now: float) -> None:
        self._generation += 1
        self.requests = self.failures = self.consecutive_successes = 0
        if self._state is BreakerState.CLOSED:
            self._expiry = now + self.interval
        elif self._state is BreakerState.OPEN:
            self._expiry = now + self.open_seconds
        else:
            self._expiry = float("inf")
