"""The application's channels of one session (RPC): what the state machine
(:mod:`.connection`) knows of the channels an application serves.

Their subscribe, unsubscribe and message commands leave as
:class:`~.events.Delegate` events; what the application answers comes back as the
``delegated_*`` calls of :class:`~.connection.CableConnection`, which keep here:

* the channels subscribed, with the whisper and presence streams their state names
  (istate ``$w``/``$p``, rpc.md §2.2) and the streams they read (their history's);
* what a ``subscribe`` carried (presence to join, history to serve) until the
  application confirms it, bounded: one per identifier, at most ``max_subscriptions``;
* the application's part of the session snapshot: its channels and opaque state;
* whether a delegated command waits for its answer, and the client's commands that
  arrived after it: they wait too, in order (bounded), so that every command is
  answered in arrival order, as AnyCable-Go answers one session's commands one at a
  time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from .commands import Command
from .events import Delegate

__all__ = ["DELEGATED", "AppChannels"]

#: Client commands an application channel answers (rpc.md §4.4).
DELEGATED = frozenset({"subscribe", "unsubscribe", "message"})

_NO_FEATURES = ("", "")


class AppChannels:
    """The application channels of one session (see the module docstring).

    Args:
        bound: at most this many subscribes' presence (and history) wait for an answer.
        waiting: at most this many commands wait behind a delegated one.
    """

    __slots__ = (
        "_asked",
        "_bound",
        "_histories",
        "_joins",
        "_waiting",
        "_waiting_bound",
        "answering",
        "features",
        "identifiers",
        "state",
        "streams",
    )

    def __init__(self, bound: int, waiting: int) -> None:
        self._bound = bound
        self._waiting_bound = waiting
        #: a delegated command waits for the application's answer
        self.answering = False
        #: the channel whose delegated ``subscribe`` waits for its answer
        self._asked: str | None = None
        #: the commands that arrived meanwhile (no deque until one waits)
        self._waiting: deque[Command] | None = None
        #: the snapshot's part: the application's channels and its opaque state
        self.identifiers: tuple[str, ...] = ()
        self.state = ""
        #: subscribed channel -> (whisper stream, presence stream), "" = none
        self.features: dict[str, tuple[str, str]] = {}
        #: subscribed channel -> the streams it reads (its history's streams)
        self.streams: dict[str, tuple[str, ...]] = {}
        #: channel -> the presence (history) its last ``subscribe`` carried
        self._joins: dict[str, Mapping[str, Any]] = {}
        self._histories: dict[str, Mapping[str, Any]] = {}

    def change(self, identifiers: tuple[str, ...], state: str) -> bool:
        """The application's channels or state are now these: whether they changed."""
        if (identifiers, state) == (self.identifiers, self.state):
            return False
        self.identifiers, self.state = identifiers, state
        return True

    def subscribing(
        self,
        identifier: str,
        *,
        presence: Mapping[str, Any] | None = None,
        history: Mapping[str, Any] | None = None,
    ) -> None:
        """A ``subscribe`` of ``identifier`` was delegated with this presence and
        history: kept until the application answers it."""
        self._remember(self._joins, identifier, presence)
        self._remember(self._histories, identifier, history)

    def subscribing_history(self, identifier: str, history: Mapping[str, Any] | None) -> None:
        """As :meth:`subscribing`, for the history alone (an event stream's opening)."""
        self._remember(self._histories, identifier, history)

    def _remember(
        self, store: dict[str, Mapping[str, Any]], identifier: str, value: Mapping[str, Any] | None
    ) -> None:
        if value is None:
            store.pop(identifier, None)
        elif identifier in store or len(store) < self._bound:
            store[identifier] = value

    def subscribed(
        self, identifier: str, whisper: str, presence: str, streams: tuple[str, ...]
    ) -> None:
        """``identifier`` is subscribed, with its whisper and presence streams."""
        self.features[identifier] = (whisper, presence)
        self.streams[identifier] = streams

    def confirmed(
        self, identifier: str
    ) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
        """The application confirmed ``identifier``'s subscribe: the (history, presence)
        it carried, each ``None`` when none or when the channel is not subscribed."""
        history = self._histories.pop(identifier, None)
        presence = self._joins.pop(identifier, None)
        if identifier not in self.features:
            return None, None
        return history, presence

    def gone(self, identifier: str) -> None:
        """``identifier`` is unsubscribed."""
        self.features.pop(identifier, None)
        self.streams.pop(identifier, None)

    def whisper_stream(self, identifier: str) -> str:
        return self.features.get(identifier, _NO_FEATURES)[0]

    def presence_stream(self, identifier: str) -> str:
        return self.features.get(identifier, _NO_FEATURES)[1]

    def delegate(self, name: str, identifier: str, data: object) -> Delegate | None:
        """The client's ``name`` command for application channel ``identifier``: the
        event asking the application, after which commands wait for its answer; ``None``
        when no call is made (a ``message`` whose data is not a string, rpc.md §4.4)."""
        if name != "message":
            delegate = Delegate(name, identifier)
        elif isinstance(data, str):
            delegate = Delegate(name, identifier, data)
        else:
            return None
        self.answering = True  # what arrives next waits for the answer
        self._asked = identifier if name == "subscribe" else None
        return delegate

    def answered(self) -> None:
        """The delegated command's answer was applied (or there was none): what its
        ``subscribe`` carried is dropped unless the application confirmed it (then
        :meth:`confirmed` took it), so unconfirmed ones never fill the bound."""
        self.answering = False
        asked, self._asked = self._asked, None
        if asked is not None:
            self._joins.pop(asked, None)
            self._histories.pop(asked, None)

    def wait(self, command: Command) -> bool:
        """``command`` arrived while a delegated one waits for its answer: it waits
        too, unless too many do (then ``False``: it is dropped)."""
        waiting = self._waiting
        if waiting is None:
            waiting = self._waiting = deque()
        elif len(waiting) >= self._waiting_bound:
            return False
        waiting.append(command)
        return True

    def next_waiting(self) -> Command | None:
        """The oldest command waiting, ``None`` when none does."""
        waiting = self._waiting
        if not waiting:
            self._waiting = None
            return None
        return waiting.popleft()

    def clear(self) -> None:
        """The session closed: every channel is gone, no command waits any longer (the
        snapshot's part stays)."""
        self.answering = False
        self._asked = None
        self._waiting = None
        self.features.clear()
        self.streams.clear()
        self._joins.clear()
        self._histories.clear()
