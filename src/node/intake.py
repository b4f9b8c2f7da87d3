"""Broadcast intake: one body from the application -> a verdict the node carries out.

Every way a broadcast enters a node (the HTTP endpoint's fast path and h11 path, the
ASGI app's endpoint, the Redis ``__anycable__`` channel, the ``redisx`` stream) calls
:func:`judge` and then :func:`account`, so the same body gets the same verdict and the
same metrics everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..protocol.broadcast import Publication, RemoteDisconnect, parse_broadcast
from ..protocol.errors import RemoteProtocolError

__all__ = ["Counters", "Invalid", "Verdict", "account", "judge"]


class Counters(Protocol):
    """Where the node counts (``cableway.metrics.Metrics`` implements it)."""

    def inc(self, name: str, n: int = 1) -> None: ...


@dataclass(frozen=True, slots=True)
class Invalid:
    """The body is not a broadcast (the endpoint answers 400; a channel logs and drops)."""

    detail: str


#: what a broadcast body asks for: publications, a remote command, or nothing (invalid)
Verdict = list[Publication] | RemoteDisconnect | Invalid


def judge(body: bytes) -> Verdict:
    """Parse a broadcast body (spec §11.2); never raises for bad input."""
    try:
        return parse_broadcast(body)
    except RemoteProtocolError as exc:
        return Invalid(str(exc))


def account(verdict: Verdict, counters: Counters) -> None:
    """Count an accepted (or refused) broadcast, as AnyCable-Go names it."""
    if isinstance(verdict, Invalid):
        counters.inc("failed_broadcast_msg_total")
    elif isinstance(verdict, RemoteDisconnect):
        counters.inc("remote_commands_total")
    else:
        counters.inc("publications_total", len(verdict))
