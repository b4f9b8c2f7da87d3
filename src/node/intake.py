"""Broadcast intake: one body from the application -> a verdict the node carries out.

Every way a broadcast enters a node (the HTTP endpoint's fast path and h11 path, the
ASGI app's endpoint, the Redis ``__anycable__`` channel, the ``redisx`` stream) calls
:func:`judge` and then :func:`account`, so the same body gets the same verdict and the
same metrics everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..auth.keys import check_bearer
from ..protocol.broadcast import Publication, RemoteDisconnect, parse_broadcast
from ..protocol.errors import RemoteProtocolError

__all__ = [
    "TOO_LARGE",
    "Counters",
    "Invalid",
    "Verdict",
    "account",
    "invalid_answer",
    "judge",
    "screen",
]


class Counters(Protocol):
    """Where the node counts (``cableway.metrics.Metrics`` implements it)."""

    def inc(self, name: str, n: int = 1) -> None: ...

    def delivered(self, broadcasts: int, messages: int, data: int) -> None:
        """``broadcast_msg_total`` += ``broadcasts``, ``server_msg_total`` +=
        ``messages``, ``data_sent_total`` += ``data``: what one delivery counts, in one
        call (the three ``inc`` calls of every POST cost more than the additions)."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """The body is not a broadcast (the endpoint answers 400; a channel logs and drops)."""

    detail: str


#: what a broadcast body asks for: publications, a remote command, or nothing (invalid)
Verdict = list[Publication] | RemoteDisconnect | Invalid


def screen(method: str, authorization: str | None, key: str | None) -> tuple[int, bytes] | None:
    """What the broadcast endpoint answers before reading a body (spec §11.2): ``422``
    for a method other than ``POST``, ``401`` when a ``broadcast_key`` is set and the
    ``Authorization`` header does not carry it; ``None``: read the body."""
    if method != "POST":
        return 422, b"Unprocessable Entity"
    if key is not None and not check_bearer(authorization, key):
        return 401, b"Unauthorized"
    return None


#: what the broadcast endpoint answers for a body over ``max_broadcast_body``
TOO_LARGE = (413, b"Payload Too Large")


def invalid_answer(verdict: Invalid) -> tuple[int, bytes]:
    """What the broadcast endpoint answers for a body that is not a broadcast: ``400``
    with what is wrong (an accepted one is answered ``201`` once carried out)."""
    return 400, f"Bad Request: {verdict.detail}".encode()


def judge(body: bytes) -> Verdict:
    """Parse a broadcast body (spec §11.2); never raises for bad input."""
    try:
        return parse_broadcast(body)
    except RemoteProtocolError as exc:
        return Invalid(str(exc))


def account(verdict: Verdict, counters: Counters) -> None:
    """Count an accepted (or refused) broadcast, as AnyCable-Go names it."""
    if type(verdict) is list:  # publications: the usual verdict, tested first
        counters.inc("publications_total", len(verdict))
    elif isinstance(verdict, Invalid):
        counters.inc("failed_broadcast_msg_total")
    else:
        counters.inc("remote_commands_total")
