"""The pace of a session's client: a token bucket over its messages (``commands_rate``,
``commands_burst`` of :class:`~.limits.Limits`). No clock: times are the driver's."""

from __future__ import annotations

from .limits import Limits

__all__ = ["CommandRate"]


class CommandRate:
    """How many client messages may still arrive now (a token bucket)."""

    __slots__ = ("_burst", "_rate", "_refilled_at", "_tokens")

    def __init__(self, limits: Limits, now: float) -> None:
        self._rate = limits.commands_rate
        self._burst = float(limits.commands_burst)
        self._tokens = self._burst
        self._refilled_at = now

    def take(self, now: float) -> bool:
        """One message arrived at ``now``: whether it is within the rate."""
        rate = self._rate
        if rate <= 0:
            return True
        elapsed = max(0.0, now - self._refilled_at)
        self._refilled_at = now
        self._tokens = min(self._burst, self._tokens + elapsed * rate)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
