"""One epoll set for the sockets that idle sessions wait to read, woken by one task.

Why:
    An idle session's reader waits for its socket to become readable. Parked in
    ``trio.lowlevel.wait_readable`` that costs a chain of trio's coroutine frames and
    bookkeeping objects per connection (about 1.4 KB: most of what an idle connection
    costs beyond its session). Here a reader parks with one
    ``trio.lowlevel.wait_task_rescheduled`` (:func:`parked`) instead, its descriptor
    armed (one-shot) in this poller's own epoll set, and the poller's task, waiting on
    that set's descriptor, reschedules the reader whose socket became readable.

Resource handling:
    The poller holds no reference to a session: a parked reader's task, by descriptor,
    until it is woken (:meth:`ReadPoller.wake`, or readiness) or its wait is aborted
    (cancellation: :meth:`ReadPoller.forget`). A descriptor
    is never removed from the set by hand: closing the socket removes it (the session
    closes its socket only after its reader returned). An event for a descriptor
    nobody waits on is dropped (its one-shot registration is re-armed by the next
    wait).

Parking:
    :func:`parked` is ``trio.lowlevel.wait_task_rescheduled`` in one generator frame
    instead of trio's two (its coroutine, then the generator that yields to the run
    loop): a parked reader is one of these per idle connection. It yields trio's own
    ``WaitTaskRescheduled`` message, what ``wait_task_rescheduled`` yields; where a
    trio version no longer has it there, :func:`parked` is trio's function itself
    (``tests/transport/test_wake.py`` says which one runs).
"""

from __future__ import annotations

import select
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import trio

__all__ = ["ReadPoller", "parked"]

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


class ReadPoller:
    """Readers parked on descriptors, woken by :meth:`run` (one task per node)."""

    __slots__ = ("_epoll", "_waiting")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        #: descriptor -> the task parked until it is readable
        self._waiting: dict[int, trio.lowlevel.Task] = {}

    def park(self, fd: int) -> None:
        """Arm ``fd`` for the current task, which must then await :func:`parked` (or
        ``trio.lowlevel.wait_task_rescheduled``) with an abort function that calls
        :meth:`forget` (a bound method of the session: one small object per wait)."""
        epoll = self._epoll
        try:
            epoll.modify(fd, _ARM)
        except FileNotFoundError:  # the first wait on this descriptor
            epoll.register(fd, _ARM)
        self._waiting[fd] = trio.lowlevel.current_task()

    def forget(self, fd: int) -> trio.lowlevel.Abort:
        """The task parked on ``fd`` no longer waits (its wait was aborted)."""
        self._waiting.pop(fd, None)
        return trio.lowlevel.Abort.SUCCEEDED

    def wake(self, fd: int) -> bool:
        """Wake the task parked on ``fd`` now (it finds nothing to read); whether one was."""
        task = self._waiting.pop(fd, None)
        if task is None:
            return False
        trio.lowlevel.reschedule(task)
        return True

    async def run(self) -> None:
        """Reschedule every parked task whose descriptor is readable, forever."""
        epoll, waiting = self._epoll, self._waiting
        reschedule = trio.lowlevel.reschedule
        fd = epoll.fileno()
        while True:
            await trio.lowlevel.wait_readable(fd)
            for ready, _events in epoll.poll(0):
                task = waiting.pop(ready, None)
                if task is not None:
                    reschedule(task)
