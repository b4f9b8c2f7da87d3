"""The pytest plugin of :mod:`cableway.testing` (entry point ``pytest11: cableway``).

Provides the ``cableway_broadcasts`` fixture: a :class:`~cableway.testing.BroadcastCapture`
active for the test. Nothing else: no hooks, no autouse fixtures, no framework imports.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .capture import BroadcastCapture, capture_broadcasts

__all__ = ["cableway_broadcasts"]


@pytest.fixture
def cableway_broadcasts() -> Iterator[BroadcastCapture]:
    """Capture every broadcast of the Cableway framework integrations during the test
    (nothing reaches a server) and offer ``assert_broadcasts`` / ``assert_broadcast_on`` and
    simulated clients (``cableway_broadcasts.connect(token)``)."""
    with capture_broadcasts() as capture:
        yield capture
