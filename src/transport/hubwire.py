"""The workers' hub protocol (``cableway --workers N``), sans-IO: frames and messages.

The supervisor of ``--workers N`` runs one hub; every worker holds one ordered
connection to it (a Unix stream socket). What travels on it is documented for users in
``docs/workers.md``; this module is its one definition, shared by both ends. It is a
driver concern (the coordination of worker processes), so it lives beside them, not in
the core, though it does no I/O itself.

Framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON holding one
object. A frame longer than :data:`MAX_FRAME`, text that is not JSON, or JSON that is not
an object is a :class:`HubWireError` (the connection is then dropped: both ends are
Cableway, so that is a bug, never input to tolerate).

Messages are objects with an ``op``; a request that wants an answer carries an ``id``
(an integer chosen by the asker, unique among its pending requests) and the answer is
``{"op":"re","id":N,...}``. The codecs below turn the core's values (publications,
history entries and queries, session snapshots, presence events) into JSON and back.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from ..protocol.broadcast import Publication
from ..protocol.broker import HistoryEntry, HistoryQuery, PresenceEvent, SessionSnapshot
from ..protocol.messages import dumps

__all__ = [
    "MAX_FRAME",
    "FrameReader",
    "HubWireError",
    "encode",
    "entry_from_wire",
    "entry_to_wire",
    "event_from_wire",
    "event_to_wire",
    "publication_from_wire",
    "publication_to_wire",
    "query_from_wire",
    "query_to_wire",
    "snapshot_from_wire",
    "snapshot_to_wire",
]

#: the largest frame either end sends or accepts (a batch of publications, a history)
MAX_FRAME = 64 * 1024 * 1024

_LENGTH = struct.Struct("!I")


class HubWireError(Exception):
    """A frame that breaks the hub protocol."""


def encode(message: dict[str, Any]) -> bytes:
    """One frame holding ``message``.

    Raises:
        HubWireError: the message is larger than :data:`MAX_FRAME`.
    """
    body = dumps(message).encode()
    if len(body) > MAX_FRAME:
        raise HubWireError(f"a hub message of {len(body)} bytes (max {MAX_FRAME})")
    return _LENGTH.pack(len(body)) + body


class FrameReader:
    """Bytes in (:meth:`feed`), whole messages out, in order."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add ``data``; every message it completes, in order.

        Raises:
            HubWireError: a frame is too long or is not a JSON object.
        """
        buffer = self._buffer
        buffer += data
        out: list[dict[str, Any]] = []
        start = 0
        end = len(buffer)
        while end - start >= 4:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > self.max_frame:
                raise HubWireError(f"a hub frame of {length} bytes (max {self.max_frame})")
            if end - start - 4 < length:
                break
            body = bytes(buffer[start + 4 : start + 4 + length])
            start += 4 + length
            try:
                message = json.loads(body)
            except (UnicodeDecodeError, ValueError) as exc:
                raise HubWireError("a hub frame that is not JSON") from exc
            if not isinstance(message, dict):
                raise HubWireError("a hub frame that is not a JSON object")
            out.append(message)
        if start:
            del buffer[:start]
        return out


# -- codecs ------------------------------------------------------------------------------


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise HubWireError(f"expected a string, got {type(value).__name__}")
    return value


def _opt_str(value: object) -> str | None:
    return None if value is None else _str(value)


def _opt_int(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise HubWireError(f"expected an integer, got {type(value).__name__}")
    return value


def _float(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise HubWireError(f"expected a number, got {type(value).__name__}")
    return float(value)


def publication_to_wire(publication: Publication) -> list[Any]:
    """``[stream, data, exclude_socket, transient, broadcast_type]``."""
    return [
        publication.stream,
        publication.data,
        publication.exclude_socket,
        publication.transient,
        publication.broadcast_type,
    ]


def publication_from_wire(value: object) -> Publication:
    """The inverse of :func:`publication_to_wire`."""
    if not isinstance(value, list) or len(value) != 5:
        raise HubWireError("not a publication")
    stream, data, exclude, transient, kind = value
    if not isinstance(transient, bool):
        raise HubWireError("not a publication")
    return Publication(_str(stream), _str(data), _opt_str(exclude), transient, _opt_str(kind))


def entry_to_wire(entry: HistoryEntry) -> list[Any]:
    """``[stream, offset, data, published_at, broadcast_type]``."""
    return [entry.stream, entry.offset, entry.data, entry.published_at, entry.broadcast_type]


def entry_from_wire(value: object) -> HistoryEntry:
    """The inverse of :func:`entry_to_wire`."""
    if not isinstance(value, list) or len(value) != 5:
        raise HubWireError("not a history entry")
    stream, offset, data, published_at, kind = value
    number = _opt_int(offset)
    if number is None:
        raise HubWireError("not a history entry")
    return HistoryEntry(_str(stream), number, _str(data), _float(published_at), _opt_str(kind))


def query_to_wire(query: HistoryQuery) -> list[Any]:
    """``[stream, epoch, offset, since]``."""
    return [query.stream, query.epoch, query.offset, query.since]


def query_from_wire(value: object) -> HistoryQuery:
    """The inverse of :func:`query_to_wire`."""
    if not isinstance(value, list) or len(value) != 4:
        raise HubWireError("not a history query")
    stream, epoch, offset, since = value
    return HistoryQuery(
        _str(stream), _opt_str(epoch), _opt_int(offset), None if since is None else _float(since)
    )


def snapshot_to_wire(snapshot: SessionSnapshot) -> dict[str, Any]:
    """A session snapshot as a JSON object (every field)."""
    return {
        "identifiers": snapshot.identifiers,
        "subscriptions": [list(pair) for pair in snapshot.subscriptions],
        "presence": [list(item) for item in snapshot.presence],
        "delegated": list(snapshot.delegated),
        "app": snapshot.app,
    }


def snapshot_from_wire(value: object) -> SessionSnapshot:
    """The inverse of :func:`snapshot_to_wire`."""
    if not isinstance(value, dict):
        raise HubWireError("not a session snapshot")
    try:
        pairs = tuple((_str(i), _str(s)) for i, s in value["subscriptions"])
        presence = tuple((_str(i), _str(p), info) for i, p, info in value["presence"])
        delegated = tuple(_str(i) for i in value["delegated"])
        return SessionSnapshot(
            _str(value["identifiers"]),
            pairs,
            presence=presence,
            delegated=delegated,
            app=_str(value["app"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise HubWireError("not a session snapshot") from exc


def event_to_wire(event: PresenceEvent) -> list[Any]:
    """``[stream, kind, presence_id, info]``."""
    return [event.stream, event.kind, event.presence_id, event.info]


def event_from_wire(value: object) -> PresenceEvent:
    """The inverse of :func:`event_to_wire`."""
    if not isinstance(value, list) or len(value) != 4:
        raise HubWireError("not a presence event")
    stream, kind, presence_id, info = value
    return PresenceEvent(_str(stream), _str(kind), _str(presence_id), info)
