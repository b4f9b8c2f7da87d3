"""Limits of one session, grouped in one frozen object with AnyCable's defaults."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the core enforces.

    Attributes:
        max_message_size: largest inbound client message in bytes (AnyCable
            ``max_message_size``, 64 KiB); larger ends the session with close 1009.
        max_identifier_size: largest subscription identifier in bytes.
        max_subscriptions: subscriptions one session may hold; beyond it subscribes
            are rejected with ``reject_subscription``.
        commands_rate: client messages per second a session may send on average
            (a token bucket refilled at this rate); ``0`` disables the limit.
        commands_burst: how many messages may arrive at once before the rate applies.

    Messages beyond the rate are dropped unread (the client is not disconnected:
    the Rails client re-sends unconfirmed subscribes by itself).
    """

    max_message_size: int = 65536
    max_identifier_size: int = 8192
    max_subscriptions: int = 128
    commands_rate: float = 100.0
    commands_burst: int = 200
