"""One epoll set for the sockets that idle sessions wait to read, served by one task.

Why:
    An idle session's reader waits for its socket to become readable. Parked in
    ``trio.lowlevel.wait_readable`` that costs a chain of trio's coroutine frames and
    bookkeeping objects per connection (about 1.4 KB: most of what an idle connection
    costs beyond its session). Here a reader parks with one
    ``trio.lowlevel.wait_task_rescheduled`` (:func:`parked`) instead, its descriptor
    armed (one-shot) in this poller's own epoll set, and the poller's task, waiting on
    that set's descriptor, calls the :class:`Reader` whose socket became readable.

One task step per read:
    The reader's :meth:`Reader.readable` runs in the poller's task. A session reads
    and handles a short command there (its handling is synchronous) and waits again
    (:meth:`ReadPoller.rearm`) without its own task ever running: one task step (the
    poller's, shared by every socket ready at once) per read instead of two (the
    poller's, then the reader's). Only what needs the reader's task (an end of
    input, a close, an awaited call, an error) reschedules it, with what was read as
    the value of its wait.

Resource handling:
    The poller holds a reader only while it is parked, by descriptor, until it is
    woken (:meth:`ReadPoller.wake`, or readiness) or its wait is aborted
    (cancellation: :meth:`ReadPoller.forget`). A descriptor
    is never removed from the set by hand: closing the socket removes it (the session
    closes its socket only after its reader returned). An event for a descriptor
    nobody waits on is dropped (its one-shot registration is re-armed by the next
    wait).

Error handling:
    :meth:`Reader.readable` must not raise (a session hands its own errors to its
    task); if one does anyway, the poller drops that reader, logs it and reschedules
    nothing for it (its task stays parked until cancelled), and goes on: one
    reader's bug never stops the others' reads.

Parking:
    :func:`parked` is ``trio.lowlevel.wait_task_rescheduled`` in one generator frame
    instead of trio's two (its coroutine, then the generator that yields to the run
    loop): a parked reader is one of these per idle connection. It yields trio's own
    ``WaitTaskRescheduled`` message, what ``wait_task_rescheduled`` yields; where a
    trio version no longer has it there, :func:`parked` is trio's function itself
    (``tests/transport/test_wake.py`` says which one runs).
"""

from __future__ import annotations

import logging
import select
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Protocol

import trio

__all__ = ["ReadPoller", "Reader", "parked"]

log = logging.getLogger("cableway.poller")

_ARM = select.EPOLLIN | select.EPOLLONESHOT

_Abort = Callable[[Callable[[], Any]], trio.lowlevel.Abort]

try:  # trio's message for "park until rescheduled" (what wait_task_rescheduled yields)
    from trio._core._traps import WaitTaskRescheduled as _WaitMessage
except ImportError:  # pragma: no cover - another trio: its own function (2 frames)
    _WaitMessage = None  # type: ignore[assignment,misc]


@types.coroutine
def _one_frame(abort: _Abort) -> Generator[Any, Any, Any]:
    return (yield _WaitMessage(abort)).unwrap()


#: ``await parked(abort)`` is ``await trio.lowlevel.wait_task_rescheduled(abort)`` in
#: one frame (see the module docstring)
parked: Callable[[_Abort], Awaitable[Any]] = (
    trio.lowlevel.wait_task_rescheduled if _WaitMessage is None else _one_frame
)


class Reader(Protocol):
    """What parks in the poller: called in the poller's task once its descriptor is
    readable. It is still in the poller then (its one-shot registration spent): it
    waits again with :meth:`ReadPoller.rearm`, or leaves with :meth:`ReadPoller.wake`
    and reschedules its task. (No removal and re-insertion per read: the poller's map
    keeps its size under churn, memory per idle connection.)"""

    def readable(self) -> None: ...


class ReadPoller:
    """Readers parked on descriptors, served by :meth:`run` (one task per node)."""

    __slots__ = ("_epoll", "_waiting")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        #: descriptor -> the reader parked until it is readable
        self._waiting: dict[int, Reader] = {}

    def park(self, fd: int, reader: Reader, *, first: bool = False) -> None:
        """Arm ``fd`` for ``reader``, whose task must be (or then be) parked in
        :func:`parked` (or ``trio.lowlevel.wait_task_rescheduled``) with an abort
        function that calls :meth:`forget` (a bound method of the session: one small
        object per wait). ``first``: ``fd`` is likely not in the set yet (a reader's
        first wait), so it is added first rather than re-armed first (one system
        call, not a failed one and an exception, per connection)."""
        epoll = self._epoll
        if first:
            try:
                epoll.register(fd, _ARM)
            except FileExistsError:  # waited on before
                epoll.modify(fd, _ARM)
        else:
            try:
                epoll.modify(fd, _ARM)
            except FileNotFoundError:  # the first wait on this descriptor
                epoll.register(fd, _ARM)
        self._waiting[fd] = reader

    def rearm(self, fd: int) -> None:
        """The reader called for ``fd`` waits again (see :class:`Reader`)."""
        try:
            self._epoll.modify(fd, _ARM)
        except FileNotFoundError:  # (never: a parked reader's socket stays open)
            self._epoll.register(fd, _ARM)

    def forget(self, fd: int) -> trio.lowlevel.Abort:
        """The task parked on ``fd`` no longer waits (its wait was aborted)."""
        self._waiting.pop(fd, None)
        return trio.lowlevel.Abort.SUCCEEDED

    def wake(self, fd: int) -> bool:
        """Stop waiting on ``fd`` now: whether a reader was parked there (its caller
        then reschedules the reader's task, which finds nothing to read)."""
        return self._waiting.pop(fd, None) is not None

    async def run(self) -> None:
        """Call every parked reader whose descriptor is readable, forever."""
        epoll, waiting = self._epoll, self._waiting
        fd = epoll.fileno()
        while True:
            await trio.lowlevel.wait_readable(fd)
            for ready, _events in epoll.poll(0):
                reader = waiting.get(ready)
                if reader is not None:
                    try:
                        reader.readable()
                    except Exception:  # never: see the module's error handling
                        waiting.pop(ready, None)
                        log.exception("unexpected error in a parked reader")
            reader = None  # a session that ends while this waits is freed at once
