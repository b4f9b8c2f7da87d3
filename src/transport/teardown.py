"""The end of a connection's task: closing its stream."""

from __future__ import annotations

import trio

from .output import raw_socket

__all__ = ["close_stream"]


async def close_stream(stream: trio.abc.Stream, *, waited_on: bool = True) -> None:
    """Close ``stream``, shielded and bounded (1 s). A socket is closed at once, without
    ``aclose()``'s checkpoint (a scheduler pass and two cancel scopes per connection's
    tear-down): the task that calls this ends right after.

    ``waited_on``: another task may be waiting on the socket (a session's writer), so
    trio is told it closes (``notify_closing`` wakes that task). When none can be, the
    socket is closed without it: trio's ``notify_closing`` removes the descriptor from
    its epoll set, which fails when trio never waited on it (a session read through the
    read poller: a failed ``epoll_ctl`` and an exception per connection), and the
    kernel drops a closed socket from every epoll set anyway."""
    if isinstance(stream, trio.SocketStream):
        sock = None if waited_on else raw_socket(stream)
        if sock is not None:
            sock.close()
        else:
            stream.socket.close()  # what SocketStream.aclose() does before its checkpoint
        return
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        await stream.aclose()
