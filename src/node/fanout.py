"""Fan-out to the subscribers of one identifier: the rules, once for every driver (pure).

The node calls a driver's fan-out once per stream identifier with the texts of a run of
publications (:mod:`.publish`). Whatever the driver, the same rules then hold: wire items
are built ONCE per kind of session (:func:`encode_run`: a message a kind does not get is
left out with its ``exclude_socket``), a subscriber that published with
``exclude_socket`` gets the others only (:func:`without`), and a subscription waiting for
its history holds what comes meanwhile (:meth:`.NodeSession.hold`).

:func:`fan_out` is the whole fan-out for a driver that queues every item (the ASGI app);
the trio server keeps its own loop with the socket writes inlined (its hot path,
``cableway.transport.fanout``) and builds its wire bytes with :func:`encode_run`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from .session import NodeSession

__all__ = ["Frames", "encode_run", "fan_out", "without"]

W = TypeVar("W")

#: (stream offset, wire item) of each message one kind of session gets, in order
Frames = list[tuple[int | None, W]]


def encode_run(
    encode: Callable[[str], W | None],
    texts: Sequence[str],
    offsets: Sequence[int | None],
    excludes: Sequence[str | None] | None,
) -> tuple[Frames[W], list[str | None]]:
    """The wire items of a run of messages for one kind of session (``encode``: that
    kind's, ``None`` for a message it does not get), with the ``exclude_socket`` of each
    item kept."""
    frames: Frames[W] = []
    kept: list[str | None] = []
    for i, text in enumerate(texts):
        frame = encode(text)
        if frame is not None:
            frames.append((offsets[i], frame))
            kept.append(None if excludes is None else excludes[i])
    return frames, kept


def without(frames: Frames[W], excludes: Sequence[str | None], sid: str) -> Frames[W]:
    """What session ``sid`` gets of ``frames``: every item but those it published with
    ``exclude_socket`` set to itself."""
    return [item for item, exclude in zip(frames, excludes, strict=True) if exclude != sid]


def fan_out(
    sessions: Iterable[NodeSession[Any]],
    identifier: str,
    texts: Sequence[str],
    offsets: Sequence[int | None],
    excludes: Sequence[str | None] | None,
) -> tuple[int, int]:
    """Queue a run of messages for every subscriber of ``identifier`` (the node's
    :class:`~cableway.node.publish.FanOut` for a driver that queues every wire item):
    built once per kind of session, the same item objects queued for each subscriber of
    that kind. Returns (deliveries, 0): nothing is written here."""
    delivered = 0
    kinds: dict[str, tuple[Frames[Any], list[str | None]]] = {}
    for session in sessions:
        kind = session.wire_kind
        wire = kinds.get(kind)
        if wire is None:
            wire = kinds[kind] = encode_run(session.encode, texts, offsets, excludes)
        frames, kept = wire
        if excludes is not None and session.sid in excludes:
            frames = without(frames, kept, session.sid)
        delivered += len(frames)
        held = session.core.held
        if held and identifier in held:
            for offset, frame in frames:
                session.hold(identifier, offset, frame)
        else:
            for _offset, frame in frames:
                session.push_frame(frame)
    return delivered, 0
