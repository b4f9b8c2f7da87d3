"""The parts of a session's state machine (:class:`~.connection.CableConnection`) that
most sessions never use: the application's channels (RPC), presence, subscriptions
held for their history, and what a built-in subscription allows.

Memory: a session is one per connection, and most connections are idle subscribers.
Until a session first needs one of these parts it points at a shared empty one (never
mutated), so an idle connection carries none of its own; and what a built-in
subscription allows (whispers, presence) is resolved again when a command asks,
rather than kept per session (:func:`.channels.resolve` remembers it).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .appchannels import AppChannels
from .channels import Subscription, resolve
from .presence import Presence
from .replay import HeldStreams
from .settings import SessionSettings

__all__ = ["SessionParts"]

_NO_APPS = AppChannels(0, 0)
_NOT_HOLDING = HeldStreams()
_NOBODY: Mapping[str, tuple[str, str]] = MappingProxyType({})


class SessionParts:
    """The seldom-used parts of one session, each its own from its first use."""

    __slots__ = ("_apps", "_presence", "_replay", "presence")

    settings: SessionSettings
    subscriptions: dict[str, str]

    def __init__(self) -> None:
        #: the application's channels (RPC), see :meth:`_app_channels`
        self._apps = _NO_APPS
        #: the reliable-stream part: held subscriptions and their deadline (_holding)
        self._replay = _NOT_HOLDING
        self._presence: Presence | None = None  # created by the first join
        #: identifier -> (presence id, stream) this session joined with
        self.presence: Mapping[str, tuple[str, str]] = _NOBODY

    def _app_channels(self) -> AppChannels:
        """This session's own :class:`AppChannels`, created on first use."""
        apps = self._apps
        if apps is _NO_APPS:
            limits = self.settings.limits
            apps = self._apps = AppChannels(
                limits.max_subscriptions, max(limits.commands_burst, limits.max_subscriptions)
            )
        return apps

    def _holding(self) -> HeldStreams:
        """This session's own :class:`HeldStreams`, created by its first hold."""
        replay = self._replay
        if replay is _NOT_HOLDING:
            replay = self._replay = HeldStreams()
        return replay

    def _joining(self) -> Presence:
        """This session's own :class:`Presence`, created by its first join."""
        presence = self._presence
        if presence is None:
            presence = self._presence = Presence()
            self.presence = presence.joined
        return presence

    def _forget_presence(self, identifier: str) -> tuple[str, str] | None:
        """Drop what this session joined with through ``identifier`` (if it did)."""
        if self._presence is None:
            return None
        return self._presence.joined.pop(identifier, None)

    def _clear_parts(self) -> None:
        """The session closed: its application channels and held subscriptions go."""
        if self._apps is not _NO_APPS:
            self._apps.clear()
        if self._replay is not _NOT_HOLDING:
            self._replay.clear()

    def _features(self, identifier: str) -> Subscription | None:
        """What the built-in subscription ``identifier`` allows (``None``: not one)."""
        if identifier not in self.subscriptions:
            return None
        resolved = resolve(identifier, self.settings.policy)
        return None if resolved is None else resolved[1]

    def _whisper_stream(self, identifier: str) -> str:
        """The stream whispers of ``identifier`` go to, ``""`` when it allows none."""
        if identifier in self.subscriptions:
            features = self._features(identifier)
            return features.stream if features is not None and features.whisper else ""
        return self._apps.whisper_stream(identifier)

    def _presence_stream(self, identifier: str) -> str:
        """The stream ``identifier``'s presence set lives on, ``""`` when it has none."""
        if identifier in self.subscriptions:
            features = self._features(identifier)
            return features.stream if features is not None and features.presence else ""
        return self._apps.presence_stream(identifier)
