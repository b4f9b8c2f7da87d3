"""The outbox bound: when a client that does not read is too slow (pure, one home).

Every buffer that holds output for one client (the trio outbox, the ASGI app's outbox,
the live messages a subscription holds until its history is in) is bounded by
``ws_max_pending_size`` with the same rule: a client is too slow when more than that
many bytes of *earlier* output still wait for it as more is due. What is about to be
queued never counts, so one message of any size reaches a client that reads.
"""

from __future__ import annotations

__all__ = ["over_bound"]


def over_bound(pending: int, max_bytes: int) -> bool:
    """Whether ``pending`` bytes of earlier output, still waiting, are past the bound
    (``max_bytes``; ``0``: unbounded)."""
    return 0 < max_bytes < pending
