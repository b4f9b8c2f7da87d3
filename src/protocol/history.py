"""What a client's history request asks of the broker, for a subscription reading one or
several streams (pure).

A request (``{"since": <unix s>}`` and/or ``{"streams": {"<stream>": {"epoch", "offset"}}}``,
anycable.md §7.4) is planned over the streams the subscription reads, in their order, as
AnyCable-Go's ``retreiveHistory`` does: a stream with a position in ``streams`` is read after
that position, another one since ``since`` (when given), a stream with neither is not read.
The broker's answer is all-or-nothing (an unknown epoch rejects the whole request); the
entries come back stream by stream, each stream's in offset order, and one
``confirm_history`` follows them (``CableConnection.history_result``).

The live messages of a subscription are held while its history is pending; once the
history is in, :func:`replayed` says, per stream, up to which offset they were replayed
(a held message at or below it is a duplicate and is dropped).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from .broker import HistoryEntry, HistoryQuery

__all__ = ["HistoryPlan", "plan_history", "replayed"]


@dataclass(frozen=True, slots=True)
class HistoryPlan:
    """What to do with one history request.

    Attributes:
        ignored: why the request is dropped without an answer (``""``: it is answered).
        reject: answer ``reject_history`` at once.
        queries: what to ask the broker; none (and neither ``ignored`` nor ``reject``):
            answer ``confirm_history`` at once, there is nothing to replay.
    """

    ignored: str = ""
    reject: bool = False
    queries: tuple[HistoryQuery, ...] = ()


def plan_history(
    request: Mapping[str, Any] | None, streams: Sequence[str], *, enabled: bool
) -> HistoryPlan:
    """Plan ``request`` over ``streams`` (``enabled``: a broker keeps history)."""
    if request is None:
        return HistoryPlan(ignored="history is missing")
    positions = request.get("streams")
    since = _number(request.get("since"))
    if positions is not None and not isinstance(positions, dict):
        return HistoryPlan(ignored="history streams is not an object")
    if not since and positions is None:
        return HistoryPlan(ignored="history has neither since nor streams")
    if not enabled:
        return HistoryPlan(reject=True)
    queries: list[HistoryQuery] = []
    for stream in streams:
        position = positions.get(stream) if positions is not None else None
        if isinstance(position, dict):
            epoch, offset = position.get("epoch"), position.get("offset")
            if not isinstance(epoch, str) or not _is_offset(offset):
                return HistoryPlan(reject=True)
            queries.append(HistoryQuery(stream, epoch=epoch, offset=int(offset)))
        elif since:
            queries.append(HistoryQuery(stream, since=since))
    return HistoryPlan(queries=tuple(queries))


def replayed(entries: Iterable[HistoryEntry]) -> dict[str, int]:
    """stream -> the last offset a history replay delivered of it."""
    last: dict[str, int] = {}
    for entry in entries:
        previous = last.get(entry.stream)
        if previous is None or entry.offset > previous:
            last[entry.stream] = entry.offset
    return last


def _number(value: object) -> float:
    """A positive finite number, else 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    if not math.isfinite(value) or value <= 0:
        return 0.0
    return float(value)


def _is_offset(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
