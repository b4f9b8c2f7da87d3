"""Built-in channels served without an application callback (spec §8.1).

``$pubsub`` (signed ``signed_stream_name``, or plain ``stream_name`` with public
streams) and ``Turbo::StreamsChannel`` (signed names, or AnyCable 1.4's cleartext mode).
:func:`resolve_stream` maps a subscription identifier to the stream it reads, or to
``None`` when the subscription must be rejected; :func:`resolve` also hands out one
shared copy of each identifier it resolved.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from ..auth.errors import InvalidSignature
from ..auth.signed_streams import verify_signed_stream_name

__all__ = [
    "BUILT_IN_CHANNELS",
    "PUBSUB_CHANNEL",
    "TURBO_CHANNEL",
    "StreamPolicy",
    "Subscription",
    "is_built_in",
    "resolve",
    "resolve_stream",
    "resolve_subscription",
]

PUBSUB_CHANNEL = "$pubsub"
TURBO_CHANNEL = "Turbo::StreamsChannel"


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    """Which built-in channels are served and with which secrets.

    Attributes:
        streams_secret: verifies ``$pubsub`` signed names; ``None`` rejects them.
        turbo_streams: whether ``Turbo::StreamsChannel`` is served at all.
        turbo_secret: verifies Turbo signed names.
        turbo_cleartext: with no ``turbo_secret``, take ``signed_stream_name`` as the
            plain stream name (AnyCable 1.4 ``--turbo_rails_cleartext``).
        public_streams: allow unsigned ``$pubsub`` ``stream_name``.
        streams_whisper: allow whispers on signed ``$pubsub`` streams (public ones
            always allow them).
        streams_presence: allow presence on signed ``$pubsub`` streams (public ones
            always allow it).
    """

    streams_secret: str | None = None
    turbo_streams: bool = False
    turbo_secret: str | None = None
    turbo_cleartext: bool = False
    public_streams: bool = False
    streams_whisper: bool = False
    streams_presence: bool = True


@dataclass(frozen=True, slots=True)
class Subscription:
    """A resolved subscription: the stream it reads and what it allows."""

    stream: str
    whisper: bool = False
    presence: bool = False


def _params(identifier: str) -> dict[str, object] | None:
    try:
        value = json.loads(identifier)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _verify(signed: object, secret: str | None) -> str | None:
    if not isinstance(signed, str) or not secret:
        return None
    try:
        return verify_signed_stream_name(signed, secret)
    except InvalidSignature:
        return None


#: Channels the server serves itself (never delegated to the application, rpc.md §4.4).
BUILT_IN_CHANNELS = frozenset({PUBSUB_CHANNEL, TURBO_CHANNEL, "CableReady::Stream"})


def is_built_in(identifier: str, policy: StreamPolicy) -> bool:
    """Whether ``identifier`` names a channel the server serves itself: ``$pubsub``
    always, ``Turbo::StreamsChannel`` and ``CableReady::Stream`` with Turbo Streams on.
    Anything else (other channels, non-JSON identifiers) is the application's."""
    params = _params(identifier)
    if params is None:
        return False
    channel = params.get("channel")
    if channel == PUBSUB_CHANNEL:
        return True
    return channel in BUILT_IN_CHANNELS and policy.turbo_streams


def resolve_stream(identifier: str, policy: StreamPolicy) -> str | None:
    """The stream a subscription identifier reads, or ``None`` to reject it."""
    found = resolve_subscription(identifier, policy)
    return found.stream if found is not None else None


#: identifiers up to this long are remembered once resolved (see :func:`resolve`), at
#: most :data:`REMEMBERED` of them: what that costs is bounded (with the stream names:
#: ~1 MB for ASCII identifiers, ~4.5 MB at 4 bytes a character, e.g. public streams
#: named to fill it); real ones (Turbo's signed names) are 100-300 characters
REMEMBERED_LENGTH = 512
REMEMBERED = 1024


class _Refused(Exception):
    """Not remembered: a subscription :func:`resolve_subscription` rejects."""


@functools.lru_cache(maxsize=REMEMBERED)
def _remembered(identifier: str, policy: StreamPolicy) -> tuple[str, Subscription]:
    found = resolve_subscription(identifier, policy)
    if found is None:
        raise _Refused  # (a rejection is never remembered: it cannot evict a valid one)
    return identifier, found


def resolve(identifier: str, policy: StreamPolicy) -> tuple[str, Subscription] | None:
    """:func:`resolve_subscription`, with an identifier equal to ``identifier`` to keep.

    Many clients subscribe with the same identifier (a page's Turbo stream): every
    session that keeps the returned identifier, stream and :class:`Subscription` shares
    one copy of each, instead of its own decoded strings (memory per idle connection),
    and the signature is verified once (resolving is deterministic for one ``policy``:
    rotated secrets are another policy). The last :data:`REMEMBERED` accepted
    identifiers of up to :data:`REMEMBERED_LENGTH` characters are remembered.
    """
    if len(identifier) <= REMEMBERED_LENGTH:
        try:
            return _remembered(identifier, policy)
        except _Refused:
            return None
    found = resolve_subscription(identifier, policy)
    return None if found is None else (identifier, found)


def resolve_subscription(identifier: str, policy: StreamPolicy) -> Subscription | None:
    """Resolve a subscription identifier, or ``None`` to reject it.

    When both ``signed_stream_name`` and ``stream_name`` are present the signed one
    decides, as AnyCable does. Unknown channels are rejected (there is no application
    to ask). Turbo streams allow neither whispers nor presence.
    """
    params = _params(identifier)
    if params is None:
        return None
    channel = params.get("channel")
    if channel == PUBSUB_CHANNEL:
        if "signed_stream_name" in params:
            stream = _verify(params["signed_stream_name"], policy.streams_secret)
            if stream is None:
                return None
            return Subscription(stream, policy.streams_whisper, policy.streams_presence)
        name = params.get("stream_name")
        if policy.public_streams and isinstance(name, str) and name:
            return Subscription(name, whisper=True, presence=True)
        return None
    if channel == TURBO_CHANNEL and policy.turbo_streams:
        signed = params.get("signed_stream_name")
        if policy.turbo_secret:
            stream = _verify(signed, policy.turbo_secret)
            return Subscription(stream) if stream is not None else None
        if policy.turbo_cleartext and isinstance(signed, str) and signed:
            return Subscription(signed)
    return None
