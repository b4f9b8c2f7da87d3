"""The registry of checks: each :class:`Check` with its profile, what it needs (a SKIP reason
from the options) and what must pass first, in report order (:data:`CHECKS`).

The checks themselves live by what they verify: :mod:`.lifecycle` (handshake, welcome, pings,
the extended protocol, shutdown), :mod:`.auth` (JWT), :mod:`.subscribe` (signed streams,
identifiers, channels, ``$pubsub``), :mod:`.broadcasts` (delivery, unsubscribe, whisper,
presence), :mod:`.reliable` (restore, history), :mod:`.sse` and :mod:`.robustness` (malformed
commands and frames). Each is ``async (harness, transcript) -> detail`` and raises
:class:`~.client.CheckFailed` with the evidence."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import auth, broadcasts, lifecycle, reliable, robustness, sse, subscribe
from .client import Transcript
from .harness import Harness
from .model import ACTIONCABLE, ANYCABLE, Options


@dataclass(frozen=True, slots=True)
class Check:
    """One check: its profile, what it needs (a SKIP reason) and what must pass first."""

    name: str
    profile: str
    run: Callable[[Harness, Transcript], Awaitable[str]]
    requires: tuple[str, ...] = ("welcome",)
    needs: Callable[[Options], str | None] = lambda _options: None
    #: the check's time limit: this many --timeout waits plus ``pings`` ping intervals
    waits: float = 4
    pings: float = 0
    #: runs once every other check has ended (it stops the server)
    last: bool = False
    #: subscribes to --channel when it is given: then 'channel subscribe' must pass first
    uses_channel: bool = False

    def prerequisites(self, options: Options) -> tuple[str, ...]:
        if self.uses_channel and options.channel:
            return (*self.requires, "channel subscribe")
        return self.requires


# -- the checks, in report order ------------------------------------------------------------


def _needs_subscribable(options: Options) -> str | None:
    if options.channel or options.turbo_key:
        return None
    return "needs --channel or --turbo_streams_secret (a channel the server confirms)"


def _needs_turbo(options: Options) -> str | None:
    return None if options.turbo_key else "needs --turbo_streams_secret (or --secret)"


def _needs_broadcast(options: Options) -> str | None:
    if not options.broadcast_url:
        return "needs --broadcast_url (and --turbo_streams_secret)"
    return _needs_turbo(options)


def _needs_channel(options: Options) -> str | None:
    return None if options.channel else "needs --channel"


def _needs_action(options: Options) -> str | None:
    return None if options.channel and options.action else "needs --channel and --action"


def _needs_two_keys(options: Options) -> str | None:
    if options.channel:
        return None if options.params else "needs --params (an identifier with two keys)"
    return _needs_turbo(options)


def _needs_fuzz(options: Options) -> str | None:
    return None if options.fuzz else "needs --fuzz"


def _needs_jwt(options: Options) -> str | None:
    return None if options.jwt_secret else "needs --jwt_secret (or --secret)"


def _needs_whisper(options: Options) -> str | None:
    if not options.streams_whisper:
        return "needs --streams_whisper (whisper on signed streams is off by default)"
    return _needs_streams(options)


def _needs_shutdown(options: Options) -> str | None:
    return None if options.shutdown_command else "needs --shutdown_command (it stops the server)"


def _needs_streams(options: Options) -> str | None:
    return None if options.streams_key else "needs --streams_secret (or --secret)"


def _needs_history(options: Options) -> str | None:
    return _needs_broadcast(options)


CHECKS: tuple[Check, ...] = (
    Check("handshake", ACTIONCABLE, lifecycle.handshake, requires=(), waits=2),
    Check("subprotocol", ACTIONCABLE, lifecycle.subprotocol, requires=("handshake",)),
    Check("welcome", ACTIONCABLE, lifecycle.welcome, requires=("handshake",)),
    Check("no subprotocol offered", ACTIONCABLE, lifecycle.no_subprotocol, ("handshake",)),
    Check("plain HTTP to the cable path", ACTIONCABLE, lifecycle.plain_http, ("handshake",)),
    Check("ping cadence", ACTIONCABLE, lifecycle.pings, waits=3, pings=3),
    Check(
        "garbage tolerance", ACTIONCABLE, robustness.garbage, waits=4, pings=2, uses_channel=True
    ),
    Check(
        "commands before welcome",
        ACTIONCABLE,
        subscribe.before_welcome,
        needs=_needs_subscribable,
        uses_channel=True,
    ),
    Check("signed subscribe", ACTIONCABLE, subscribe.signed_subscribe, needs=_needs_turbo),
    Check(
        "identifier key order",
        ACTIONCABLE,
        subscribe.key_order,
        needs=_needs_two_keys,
        uses_channel=True,
    ),
    Check(
        "duplicate subscribe",
        ACTIONCABLE,
        subscribe.duplicate,
        needs=_needs_subscribable,
        uses_channel=True,
    ),
    Check("channel subscribe", ACTIONCABLE, subscribe.channel, needs=_needs_channel),
    Check(
        "message/perform",
        ACTIONCABLE,
        subscribe.perform,
        requires=("channel subscribe",),
        needs=_needs_action,
    ),
    Check("broadcast round trip", ACTIONCABLE, broadcasts.broadcast, needs=_needs_broadcast),
    Check(
        "unsubscribe stops broadcasts",
        ACTIONCABLE,
        broadcasts.unsubscribe,
        requires=("broadcast round trip",),
        needs=_needs_broadcast,
    ),
    Check(
        "fuzz: malformed commands",
        ACTIONCABLE,
        robustness.fuzz_commands,
        needs=_needs_fuzz,
        waits=6,
        pings=4,
        uses_channel=True,
    ),
    Check(
        "fuzz: malformed frames",
        ACTIONCABLE,
        robustness.fuzz_frames,
        needs=_needs_fuzz,
        waits=3 * len(robustness.BAD_FRAMES) + 8,
        pings=4,
        uses_channel=True,
    ),
    Check("unknown channel rejected", ANYCABLE, subscribe.unknown_channel),
    Check("JWT valid", ANYCABLE, auth.jwt_valid, ("handshake",), _needs_jwt),
    Check("JWT expired", ANYCABLE, auth.jwt_expired, ("JWT valid",), _needs_jwt),
    Check("JWT forged", ANYCABLE, auth.jwt_forged, ("JWT valid",), _needs_jwt),
    Check("ext: sid and pong", ANYCABLE, lifecycle.ext, ("handshake",)),
    Check(
        "ext: session restore",
        ANYCABLE,
        reliable.restore,
        requires=("ext: sid and pong",),
        needs=_needs_subscribable,
        uses_channel=True,
    ),
    Check(
        "ext: history",
        ANYCABLE,
        reliable.history,
        requires=("ext: sid and pong", "broadcast round trip"),
        needs=_needs_history,
    ),
    Check("signed $pubsub", ANYCABLE, subscribe.pubsub, needs=_needs_streams),
    Check("whisper", ANYCABLE, broadcasts.whisper, ("signed $pubsub",), _needs_whisper),
    Check("presence", ANYCABLE, broadcasts.presence, ("signed $pubsub",), _needs_streams),
    Check("SSE", ANYCABLE, sse.sse, ("handshake",), _needs_turbo),
    Check(
        "server_restart on shutdown",
        ANYCABLE,
        lifecycle.shutdown,
        needs=_needs_shutdown,
        waits=4,
        last=True,
    ),
)
