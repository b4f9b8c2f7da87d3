"""Fresh session ids, one home for every driver (the trio server's WebSocket and SSE
sessions, the ASGI application's).

A session id is what ``?sid=`` / ``X-AnyCable-Restore-Sid`` session restore trusts, so
it must stay unpredictable: 21 characters of URL-safe base64 (``A-Z a-z 0-9 - _``), 126
bits from the operating system's CSPRNG (:func:`secrets.token_bytes`), exactly what
``secrets.token_urlsafe(16)[:21]`` gave. Rather than one ``getrandom`` system call per
connection, the ids are cut from one larger random block (:data:`SIDS_PER_BLOCK` ids,
every character 6 random bits of its own) and a new block is drawn when they are used
up. Never :mod:`random`.

Each id is taken with one ``list.pop()`` (atomic: two threads never get the same id),
and a forked child drops the ids its parent drew (``os.register_at_fork``), so that
parent and child never hand out the same ones.
"""

from __future__ import annotations

import base64
import os
import secrets

__all__ = ["SIDS_PER_BLOCK", "SID_LENGTH", "SidPool", "fresh_sid"]

#: characters of a fresh session id (126 random bits)
SID_LENGTH = 21
#: session ids drawn per random block
SIDS_PER_BLOCK = 256


class SidPool:
    """Session ids cut from random blocks of ``sids_per_block`` ids each."""

    __slots__ = ("_block_bytes", "_sids", "_sids_per_block")

    def __init__(self, sids_per_block: int = SIDS_PER_BLOCK) -> None:
        if sids_per_block < 1 or sids_per_block % 4:
            # 21 characters are 15.75 bytes: only blocks of 4k ids are whole bytes
            raise ValueError("sids_per_block must be a positive multiple of 4")
        self._sids_per_block = sids_per_block
        self._block_bytes = SID_LENGTH * sids_per_block * 3 // 4
        self._sids: list[str] = []

    def take(self) -> str:
        """A fresh, unpredictable session id (see the module docstring)."""
        try:
            return self._sids.pop()
        except IndexError:
            self._refill()
            return self.take()

    def clear(self) -> None:
        """Drop the ids drawn so far (a forked child must not hand out its parent's)."""
        self._sids = []

    def _refill(self) -> None:
        # a multiple of 3 bytes: no padding, and every character is 6 random bits
        text = base64.urlsafe_b64encode(secrets.token_bytes(self._block_bytes)).decode("ascii")
        self._sids = [text[i : i + SID_LENGTH] for i in range(0, len(text), SID_LENGTH)]


_POOL = SidPool()
if hasattr(os, "register_at_fork"):  # (every POSIX system)
    os.register_at_fork(after_in_child=_POOL.clear)

#: a fresh session id from the process's pool (:meth:`SidPool.take`)
fresh_sid = _POOL.take
