"""Answering the core's broker requests: the glue every driver shares.

A session's :class:`~.connection.CableConnection` asks for history and presence work
through events; with the in-memory broker the answer is immediate, so these pure
functions carry it out for any driver (the trio server, the ASGI app). What they return
is for the driver to publish.
"""

from __future__ import annotations

import logging

from . import messages
from .broadcast import Publication
from .broker import MemoryBroker
from .connection import CableConnection
from .events import HistoryRequest, PresenceRequest

__all__ = ["answer_history", "answer_presence", "presence_publication"]

log = logging.getLogger("cableway.protocol")


def answer_history(
    broker: MemoryBroker | None, core: CableConnection, request: HistoryRequest, *, now: float
) -> None:
    """Serve a history request from ``broker`` (none: the request is rejected)."""
    if broker is None:
        core.history_result(request.identifier, None)
        return
    entries = broker.fetch_history(request.queries, now=now)
    core.history_result(request.identifier, entries, epoch=broker.epoch)


def answer_presence(
    broker: MemoryBroker | None, core: CableConnection, request: PresenceRequest
) -> Publication | None:
    """Carry out a presence operation; the ``join``/``leave`` event to publish, if any."""
    if broker is None:
        if request.kind == "info":
            core.presence_result(request.identifier, None)
        return None
    if request.kind == "info":
        core.presence_result(request.identifier, broker.presence_info(request.stream))
        return None
    if request.kind == "join":
        try:
            event = broker.presence_join(
                request.stream, core.sid, request.presence_id, request.info
            )
        except ValueError:
            log.debug("presence id mismatch sid=%s", core.sid)
            return None
    else:
        event = broker.presence_leave(request.stream, core.sid)
    return (
        presence_publication(event.stream, event.kind, event.presence_id, event.info)
        if event
        else None
    )


def presence_publication(
    stream: str, kind: str, presence_id: str, info: object = None
) -> Publication:
    """The transient ``presence`` broadcast announcing a join or a leave (spec §7.8)."""
    body: dict[str, object] = {"type": kind}
    if kind == "join":
        body["info"] = info
    body["id"] = presence_id
    return Publication(stream, messages.dumps(body), transient=True, broadcast_type="presence")
