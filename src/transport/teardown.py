"""The end of a connection's task: closing its stream."""

from __future__ import annotations

import trio

__all__ = ["close_stream"]


async def close_stream(stream: trio.abc.Stream) -> None:
    """Close ``stream``, shielded and bounded (1 s). A socket is closed at once, without
    ``aclose()``'s checkpoint (a scheduler pass and two cancel scopes per connection's
    tear-down): the task that calls this ends right after."""
    if isinstance(stream, trio.SocketStream):
        stream.socket.close()  # what SocketStream.aclose() does before its checkpoint
        return
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        await stream.aclose()
