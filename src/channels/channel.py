"""The channel class an application subclasses: subscription callbacks and actions."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from types import FunctionType
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from ..protocol.messages import data_message, dumps
from ..rpc.messages import PRESENCE_STATE, WHISPER_STATE
from ..toolkit.broadcaster import _run_in_thread
from ..toolkit.integration import (
    IntegrationSettings,
    Publisher,
    active_interceptor,
    current_settings,
)
from .connection import Connection, Rejected

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Channel"]


def _takes_data(function: Callable[..., Any]) -> bool:
    """Whether an action method accepts the ``data`` argument (besides ``self``)."""
    positional = 0
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            positional += 1
    return positional >= 2


class Channel:
    """A channel: what a client subscribes to with ``{"channel": "<name>", …params}``.

    Override :meth:`subscribed` (call :meth:`stream_from` to receive broadcasts, or
    :meth:`reject`) and :meth:`unsubscribed`; every other **public method defined on your
    subclass** (or on a mixin listed before :class:`Channel`) is an action a client can
    call with ``perform("<method>", data)``. Only those: names starting with ``_``, the
    methods of :class:`Channel` itself (``subscribed``, ``stream_from``, ``reject``…, even
    when you override them), ``object``'s methods, static and class methods and properties
    are never callable from the wire. A client controls the action name, so keep helper
    methods private (``_helper``).

    Actions take ``data`` (the client's message as a dict, ``"action"`` included) or no
    argument. Any callback may be ``async def``.

    A new instance is made for every call; per-subscription state lives in :attr:`istate`
    (``str`` → ``str``), which the server keeps and sends back with every call for this
    subscription, and connection-wide state in :attr:`cstate`.

    Attributes:
        channel_name: the name clients use (default: the class name, as in Rails).
        connection: the :class:`Connection` (identifiers, cstate, cookies…).
        identifier: the client's identifier string, byte for byte.
        params: the identifier's keys other than ``channel``.
        istate: this subscription's state.
    """

    channel_name: ClassVar[str | None] = None
    _actions: ClassVar[dict[str, bool]] = {}

    def __init__(
        self,
        connection: Connection,
        identifier: str,
        params: Mapping[str, Any],
        istate: Mapping[str, str],
        *,
        settings: IntegrationSettings | None = None,
    ) -> None:
        self.connection = connection
        self.identifier = identifier
        self.params: dict[str, Any] = dict(params)
        self.istate: dict[str, str] = dict(istate)
        self.streams: list[str] = []
        self.stopped_streams: list[str] = []
        self.stop_streams = False
        self.transmissions: list[str] = []
        #: ``("join", id, info JSON)`` or ``("leave", "", "")`` for this call's answer
        #: (private: a public name would hide an action of the same name)
        self._presence: tuple[str, str, str] | None = None
        self._settings = settings

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._actions = _collect_actions(cls)

    @classmethod
    def action_names(cls) -> frozenset[str]:
        """The actions a client may call on this channel."""
        return frozenset(cls._actions)

    @classmethod
    def action_takes_data(cls, name: str) -> bool:
        """Whether action ``name`` takes the ``data`` argument (``KeyError`` if it is not
        an action)."""
        return cls._actions[name]

    # -- callbacks ---------------------------------------------------------------------------

    def subscribed(self) -> Any:
        """Called on subscribe. Stream with :meth:`stream_from` or :meth:`reject`. The
        default accepts with no streams."""

    def unsubscribed(self) -> Any:
        """Called on unsubscribe and, for every subscription, when the client is gone."""

    # -- shortcuts ---------------------------------------------------------------------------

    @property
    def identifiers(self) -> dict[str, Any]:
        """The connection's identifiers (set by ``Connection.connect``)."""
        return self.connection.identifiers

    @property
    def cstate(self) -> dict[str, str]:
        """The connection state (shared by every channel of the connection)."""
        return self.connection.cstate

    # -- effects -----------------------------------------------------------------------------

    def stream_from(self, stream: str, *, whisper: bool = False) -> None:
        """Subscribe this subscription to broadcasts on ``stream``; with ``whisper``, the
        client's whispers go to ``stream`` too (as anycable-rails' ``whisper: true``)."""
        if not isinstance(stream, str) or not stream:
            raise ValueError("a stream name is a non-empty string")
        if stream in self.stopped_streams:
            self.stopped_streams.remove(stream)
        if stream not in self.streams:
            self.streams.append(stream)
        if whisper:
            self.istate[WHISPER_STATE] = stream

    def whispers_to(self, stream: str) -> None:
        """Stream from ``stream`` and let the client whisper to it: a ``whisper`` command
        of this subscription reaches every other subscriber of ``stream`` without a call
        to the application (AnyCable's istate ``$w``)."""
        self.stream_from(stream, whisper=True)

    def join_presence(self, stream: str, id: object, info: object = None) -> None:
        """Stream from ``stream`` and add this client to its presence set as ``id`` with
        ``info`` (any JSON value), as anycable-rails' ``join_presence``. The client may
        then ask who is present and leave or join itself (``channel.presence`` of
        ``@anycable/web``); joins and leaves are broadcast on ``stream``. The server needs
        a broker (``--broker=memory`` or ``redis``)."""
        if isinstance(id, bool) or not isinstance(id, str | int) or id == "":
            raise ValueError("a presence id is a non-empty string or an integer")
        self.stream_from(stream)
        self.istate[PRESENCE_STATE] = stream
        self._presence = ("join", str(id), dumps(info))

    def leave_presence(self) -> None:
        """Remove this client from the presence set it joined (``join_presence``, or the
        client's own join)."""
        self._presence = ("leave", "", "")

    def stop_stream_from(self, stream: str) -> None:
        """Stop receiving ``stream`` (undoes a :meth:`stream_from` of the same call too)."""
        if stream in self.streams:
            self.streams.remove(stream)
        if not self.stop_streams and stream not in self.stopped_streams:
            self.stopped_streams.append(stream)

    def stop_all_streams(self) -> None:
        """Stop every stream of this subscription (later :meth:`stream_from` calls in the
        same callback still apply)."""
        self.stop_streams = True
        self.streams.clear()
        self.stopped_streams.clear()

    def transmit(self, message: object) -> None:
        """Send ``message`` (any JSON value) to this client only, as
        ``{"identifier": <identifier>, "message": message}``."""
        self.transmissions.append(data_message(dumps(self.identifier), dumps(message)))

    def reject(self) -> NoReturn:
        """Refuse the subscription (in :meth:`subscribed`): raises, so nothing after it
        runs; the client gets ``reject_subscription`` and no stream or state is kept."""
        raise Rejected

    def broadcast(self, stream: str, data: object) -> bool:
        """Broadcast ``data`` to every subscriber of ``stream`` through the server's
        broadcast endpoint (:class:`cableway.broadcaster.Broadcaster`, configured by the
        integration settings or ``ANYCABLE_*``; captured by ``cableway_broadcasts`` in
        tests). A failed broadcast is logged and returns ``False`` unless the settings say
        ``raise_broadcast_errors``. Blocking: from ``async def`` use :meth:`abroadcast`."""
        return self._publisher().broadcast(stream, data)

    async def abroadcast(self, stream: str, data: object) -> bool:
        """:meth:`broadcast` for ``async def`` callbacks (the request runs in a thread)."""
        publisher = self._publisher()
        if active_interceptor() is not None:
            return publisher.broadcast(stream, data)
        return await _run_in_thread(functools.partial(publisher.broadcast, stream, data))

    def _publisher(self) -> Publisher:
        return Publisher(self._settings if self._settings is not None else current_settings())


def _collect_actions(cls: type[Channel]) -> dict[str, bool]:
    """Action name → takes data, for the public functions defined below :class:`Channel`."""
    reserved = set(dir(Channel))
    own: set[str] = set()
    for klass in cls.__mro__:
        if klass is Channel:
            break
        own.update(vars(klass))
    actions: dict[str, bool] = {}
    for name in sorted(own):
        if name.startswith("_") or name in reserved:
            continue
        value = inspect.getattr_static(cls, name)
        if not isinstance(value, FunctionType):
            continue
        actions[name] = _takes_data(value)
    return actions
