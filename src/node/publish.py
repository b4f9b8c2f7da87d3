"""Publish planning: stamped publications of one stream -> one fan-out per identifier.

The node encodes each publication once per distinct identifier (Turbo subscribers of a
stream share one) and calls the driver's fan-out ONCE per identifier with the texts;
the driver turns them into wire bytes once per kind of session and writes them to
every subscriber (its hot path, inlined there).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from ..protocol.broadcast import EncodedBroadcast, Publication, broadcast_text
from .intake import Counters

__all__ = ["FanOut", "FanOutOne", "Stamped", "deliver_one", "deliver_run", "runs"]

S = TypeVar("S", bound=Hashable)
S_contra = TypeVar("S_contra", contravariant=True)

#: a publication with the offset and epoch its stream's history gave it (None: none)
Stamped = tuple[Publication, int | None, str | None]


class FanOut(Protocol[S_contra]):
    """The driver's fan-out to the subscribers of one identifier.

    Returns (deliveries, bytes written at once), which the node accounts once per run.
    """

    def __call__(
        self,
        sessions: Iterable[S_contra],
        identifier: str,
        texts: Sequence[str],
        offsets: Sequence[int | None],
        excludes: Sequence[str | None] | None,
        /,
    ) -> tuple[int, int]: ...


class FanOutOne(Protocol[S_contra]):
    """The driver's delivery of ONE message to the ONE subscriber of an identifier: what
    :class:`FanOut` does for ``([session], identifier, [text], [offset], [exclude])``,
    without the set-up a batch for many needs. Returns (deliveries, bytes written)."""

    def __call__(
        self,
        session: S_contra,
        identifier: str,
        text: str,
        offset: int | None,
        exclude: str | None,
        /,
    ) -> tuple[int, int]: ...


def deliver_run(
    recipients: Mapping[str, set[S]],
    run: Sequence[Stamped],
    fan_out: FanOut[S],
    counters: Counters,
    one: FanOutOne[S] | None = None,
) -> None:
    """Deliver stamped publications of ONE stream, in order, to ``recipients``.

    A subscriber gets all of them in one write; when a session reads the stream through
    several identifiers, each publication goes out under every identifier before the
    next one (the interleaving a client sees from one-by-one delivery). One publication
    for one subscriber (a stream per client) goes to ``one`` when the driver has it.
    """
    if not recipients:
        return
    if one is not None and len(run) == 1 and len(recipients) == 1:
        pub, offset, epoch = run[0]
        if deliver_one(recipients, pub, offset, epoch, counters, one):
            return
    if len(run) > 1 and len(recipients) > 1 and _shared_members(recipients.values()):
        for item in run:
            deliver_run(recipients, [item], fan_out, counters)
        return
    if len(run) == 1:  # the usual case (one publication per POST), without the loops
        pub, offset, epoch = run[0]
        encoded = [EncodedBroadcast(pub, offset=offset, epoch=epoch)]
        offsets: list[int | None] = [offset]
        excludes: list[str | None] | None = (
            None if pub.exclude_socket is None else [pub.exclude_socket]
        )
    else:
        encoded = [EncodedBroadcast(p, offset=o, epoch=e) for p, o, e in run]
        offsets = [o for _, o, _ in run]
        excluded = [p.exclude_socket for p, _, _ in run]
        excludes = None if all(exclude is None for exclude in excluded) else excluded
    delivered = sent = 0
    for identifier, sessions in recipients.items():
        texts = [item.for_identifier(identifier) for item in encoded]
        done, written = fan_out(sessions, identifier, texts, offsets, excludes)
        delivered += done
        sent += written
    counters.delivered(0, delivered, sent)


def deliver_one(
    recipients: Mapping[str, set[S]],
    pub: Publication,
    offset: int | None,
    epoch: str | None,
    counters: Counters,
    one: FanOutOne[S],
    broadcasts: int = 0,
) -> bool:
    """:func:`deliver_run` of one publication when ``recipients`` is one subscriber of
    one identifier (a stream per client), through ``one``; False (nothing done, nothing
    counted) else. ``broadcasts``: counted as ``broadcast_msg_total`` with the delivery
    (the caller's count of the publication received, in the same call)."""
    if len(recipients) != 1:
        return False
    ((identifier, sessions),) = recipients.items()
    if len(sessions) != 1:
        return False
    (session,) = sessions
    text = broadcast_text(pub, identifier, offset, epoch)
    delivered, sent = one(session, identifier, text, offset, pub.exclude_socket)
    counters.delivered(broadcasts, delivered, sent)
    return True


def runs(items: Iterable[Stamped]) -> Iterable[list[Stamped]]:
    """Split stamped publications into runs of consecutive ones on the same stream."""
    run: list[Stamped] = []
    for item in items:
        if run and run[0][0].stream != item[0].stream:
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def _shared_members(groups: Iterable[set[S]]) -> bool:
    """Whether a session is in more than one of ``groups``."""
    seen: set[S] = set()
    total = 0
    for group in groups:
        seen |= group
        total += len(group)
    return len(seen) != total
