"""Application channels in the ASGI app's own process (issue 18 item 4): the node's RPC
rules (:mod:`cableway.node.rpc`) answered by :meth:`cableway.channels.Application.process`
instead of HTTP. Synchronous callbacks run in worker threads, as under the channels' own
ASGI adapter, so the event loop never blocks on them."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, TypeVar

from ..rpc.messages import (
    CommandMessage,
    CommandResponse,
    ConnectionRequest,
    ConnectionResponse,
    DisconnectRequest,
    DisconnectResponse,
    Status,
)

if TYPE_CHECKING:
    from ..channels.application import Application

__all__ = ["InProcessRpc"]

log = logging.getLogger("cableway.rpc")

_R = TypeVar("_R")


class InProcessRpc:
    """The three calls, answered by an :class:`~cableway.channels.Application` in this
    process. A failure (an exception escaping the SDK) is logged and ends as ``None``,
    which the node's rules treat as a failed call."""

    def __init__(self, application: Application) -> None:
        self.application = application
        self._invoke = application.asgi(threaded=True)._invoke
        #: Disconnect calls running (kept referenced until done)
        self.pending: set[asyncio.Future[Any]] = set()

    async def connect(self, sid: str, request: ConnectionRequest) -> ConnectionResponse | None:
        return await self._call(sid, request, ConnectionResponse)

    async def command(self, sid: str, request: CommandMessage) -> CommandResponse | None:
        return await self._call(sid, request, CommandResponse)

    async def disconnect(self, sid: str, request: DisconnectRequest) -> DisconnectResponse | None:
        return await self._call(sid, request, DisconnectResponse)

    def enqueue(self, sid: str, request: DisconnectRequest) -> None:
        """Start a closed session's Disconnect call (no rate limit here: docs/asgi.md)."""
        task = asyncio.ensure_future(self.disconnect(sid, request))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _call(
        self,
        sid: str,
        request: ConnectionRequest | CommandMessage | DisconnectRequest,
        kind: type[_R],
    ) -> _R | None:
        try:
            answer = await self.application.process(request, sid=sid, invoke=self._invoke)
        except Exception:
            log.exception("in-process RPC failed sid=%s", sid)
            return None
        if not isinstance(answer, kind):
            return None
        if getattr(answer, "status", Status.SUCCESS) is Status.ERROR:
            log.error("application error sid=%s: %s", sid, getattr(answer, "error_msg", ""))
        return answer
