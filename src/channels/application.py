"""The registry of channels and the sans-IO dispatcher behind the ASGI and WSGI apps.

:meth:`Application.handle` takes a request (method, path, headers, body) and returns a
:class:`Response`; it does no I/O itself. User callbacks are called through an ``invoke``
function the adapter supplies, so the ASGI app can await ``async def`` callbacks (and run
plain ``def`` ones in a thread) while the WSGI app calls them directly.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..protocol import messages
from ..rpc import (
    CALLS,
    META_SID_HEADER,
    CommandMessage,
    CommandResponse,
    ConnectionRequest,
    ConnectionResponse,
    DecodeError,
    DisconnectRequest,
    DisconnectResponse,
    EnvResponse,
    PresenceResponse,
    Status,
    authorized,
    decode_disconnect_istate,
    header,
    rpc_key,
    state_changes,
)
from ..toolkit.integration import IntegrationSettings
from ..toolkit.tokens import identifiers_json
from .channel import Channel
from .connection import Connection, Rejected
from .http import Invoke, Response, error_response, json_response

if TYPE_CHECKING:
    from .asgi import ASGIApp
    from .wsgi import WSGIApp

__all__ = ["DEFAULT_MAX_BODY_SIZE", "Application"]

logger = logging.getLogger("cableway.channels")

#: Request bodies larger than this are refused with 413 (cstate and istate travel with
#: every call, so keep them small).
DEFAULT_MAX_BODY_SIZE = 4 * 1024 * 1024

_C = TypeVar("_C", bound=type[Channel])


def _error_text(exc: BaseException, where: str) -> str:
    """What the server logs for an app exception: the type and place, never the message
    or traceback (they stay in the application's log)."""
    return f"{type(exc).__name__} in {where} (see the application log)"


def _channel_target(identifier: str) -> tuple[str, dict[str, Any]] | None:
    """(channel name, params) of an identifier, or ``None`` if it is not a JSON object
    with a string ``channel``."""
    try:
        value = json.loads(identifier)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    name = value.pop("channel", None)
    if not isinstance(name, str):
        return None
    return name, value


def _load_identifiers(text: str) -> dict[str, Any]:
    """The identifiers a Connect returned, as the server echoes them (``""`` = none)."""
    if not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("connection identifiers are not a JSON object")
    return value


class Application:
    """Your connection class and channels, answering AnyCable's RPC over HTTP.

    Args:
        connection: the :class:`Connection` subclass (default: accept everyone).
        channels: channel classes (registered under their ``channel_name``, default the
            class name) or a mapping of names to classes.
        http_rpc_secret: the server's ``--http_rpc_secret``: requests must carry
            ``Authorization: Bearer <it>``.
        secret: the server's ``--secret``; the key is derived from it as AnyCable does
            when ``http_rpc_secret`` is not given. With neither argument,
            ``ANYCABLE_HTTP_RPC_SECRET`` then ``ANYCABLE_SECRET`` are read; with none of
            them no check is made (and a warning is logged).
        settings: where :meth:`Channel.broadcast` sends (default: the framework
            integration's settings, else ``ANYCABLE_*``).
        max_body_size: larger request bodies are answered 413.
    """

    def __init__(
        self,
        connection: type[Connection] = Connection,
        channels: Iterable[type[Channel]] | Mapping[str, type[Channel]] = (),
        *,
        http_rpc_secret: str | None = None,
        secret: str | None = None,
        settings: IntegrationSettings | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        if not (isinstance(connection, type) and issubclass(connection, Connection)):
            raise TypeError("connection must be a subclass of cableway.channels.Connection")
        self.connection_class = connection
        self.settings = settings
        self.max_body_size = max_body_size
        self._channels: dict[str, type[Channel]] = {}
        if isinstance(channels, Mapping):
            for name, channel in channels.items():
                self.register(channel, name=name)
        else:
            for channel in channels:
                self.register(channel)
        if http_rpc_secret is None and secret is None:
            http_rpc_secret = os.environ.get("ANYCABLE_HTTP_RPC_SECRET") or None
            secret = os.environ.get("ANYCABLE_SECRET") or None
        self._key = rpc_key(http_rpc_secret, secret)
        if self._key is None:
            logger.warning(
                "no RPC secret (http_rpc_secret, secret, ANYCABLE_HTTP_RPC_SECRET or "
                "ANYCABLE_SECRET): anyone who can reach the RPC endpoints can act as the server"
            )

    def __repr__(self) -> str:  # never shows the key
        names = ", ".join(sorted(self._channels))
        return f"Application({self.connection_class.__name__}, channels=[{names}])"

    # -- registry ----------------------------------------------------------------------------

    def register(self, channel: _C, *, name: str | None = None) -> _C:
        """Register ``channel`` under ``name`` (default ``channel.channel_name``, else the
        class name). Usable as a decorator."""
        if not (isinstance(channel, type) and issubclass(channel, Channel)):
            raise TypeError("channels must be subclasses of cableway.channels.Channel")
        key = name or channel.channel_name or channel.__name__
        if key in self._channels and self._channels[key] is not channel:
            raise ValueError(f"two channels named {key!r}")
        self._channels[key] = channel
        return channel

    @property
    def channels(self) -> dict[str, type[Channel]]:
        """Registered channels by name (a copy)."""
        return dict(self._channels)

    # -- adapters ----------------------------------------------------------------------------

    def asgi(self, *, threaded: bool = True) -> ASGIApp:
        """This application as an ASGI app (see :class:`cableway.channels.asgi.ASGIApp`)."""
        from .asgi import ASGIApp

        return ASGIApp(self, threaded=threaded)

    def wsgi(self) -> WSGIApp:
        """This application as a WSGI app (see :class:`cableway.channels.wsgi.WSGIApp`)."""
        from .wsgi import WSGIApp

        return WSGIApp(self)

    # -- dispatch ----------------------------------------------------------------------------

    async def handle(
        self,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        invoke: Invoke,
    ) -> Response:
        """Answer one HTTP request (the call is the last segment of ``path``).

        401 without the right ``Authorization`` (when a key is set); 404 for a path that
        is not ``…/connect``, ``…/command`` or ``…/disconnect``; 405 for a method other
        than POST; 422 for an empty body or one that is not the call's JSON; otherwise
        200 with the call's JSON answer — an exception in your code becomes
        ``{"status":0,"error_msg":…}`` (type and place only) and is logged here with its
        traceback.
        """
        headers = list(headers)
        if not authorized(header(headers, "authorization"), self._key):
            return error_response(401, "Unauthorized")
        call = path.rsplit("/", 1)[-1]
        if call not in CALLS:
            return error_response(404, "Not found")
        if method.upper() != "POST":
            return error_response(405, "Method not allowed", [("allow", "POST")])
        if not body.strip():
            return error_response(422, "Empty request body")
        sid = header(headers, META_SID_HEADER) or None
        try:
            if call == "connect":
                return json_response(
                    await self._connect(ConnectionRequest.from_json(body), sid, invoke)
                )
            if call == "command":
                return json_response(
                    await self._command(CommandMessage.from_json(body), sid, invoke)
                )
            return json_response(
                await self._disconnect(DisconnectRequest.from_json(body), sid, invoke)
            )
        except DecodeError as exc:
            return error_response(422, f"Invalid request body: {exc}")

    async def process(
        self,
        request: ConnectionRequest | CommandMessage | DisconnectRequest,
        *,
        sid: str | None = None,
        invoke: Invoke | None = None,
    ) -> ConnectionResponse | CommandResponse | DisconnectResponse:
        """Answer one decoded call without HTTP (no secret check: the caller is trusted),
        e.g. for a server that runs the channels in its own process.

        ``invoke`` calls the callbacks (default: call, and await what is awaitable, on the
        current thread).
        """
        run = _call_and_await if invoke is None else invoke
        if isinstance(request, ConnectionRequest):
            return await self._connect(request, sid, run)
        if isinstance(request, CommandMessage):
            return await self._command(request, sid, run)
        if isinstance(request, DisconnectRequest):
            return await self._disconnect(request, sid, run)
        raise TypeError(f"not an RPC request: {type(request).__name__}")

    def _lookup(self, identifier: str) -> tuple[type[Channel], dict[str, Any]] | None:
        target = _channel_target(identifier)
        if target is None:
            return None
        channel = self._channels.get(target[0])
        return None if channel is None else (channel, target[1])

    async def _connect(
        self, request: ConnectionRequest, sid: str | None, invoke: Invoke
    ) -> ConnectionResponse:
        connection = self.connection_class(request.env, sid=sid)
        try:
            await invoke(connection.connect, ())
            identifiers = identifiers_json(connection.identifiers)
            cstate = state_changes(request.env.cstate, connection.cstate)
        except Rejected:
            return ConnectionResponse(
                status=Status.FAILURE,
                transmissions=[messages.disconnect("unauthorized", reconnect=False)],
            )
        except Exception as exc:
            logger.exception("%s.connect failed", type(connection).__name__)
            return ConnectionResponse(error_msg=_error_text(exc, "connect"))
        return ConnectionResponse(
            status=Status.SUCCESS,
            identifiers=identifiers,
            transmissions=[messages.welcome(sid), *connection.transmissions],
            env=EnvResponse(cstate=cstate),
        )

    async def _command(
        self, request: CommandMessage, sid: str | None, invoke: Invoke
    ) -> CommandResponse:
        identifier = request.identifier
        try:
            identifiers = _load_identifiers(request.connection_identifiers)
        except (ValueError, RecursionError):
            return CommandResponse(error_msg="connection_identifiers are not a JSON object")
        connection = self.connection_class(request.env, sid=sid, identifiers=identifiers)
        found = self._lookup(identifier)
        command = request.command
        if command not in ("subscribe", "unsubscribe", "message"):
            return CommandResponse(error_msg=f"unknown command {command!r}")
        if found is None:
            logger.warning("%s for an unknown channel: %r", command, identifier)
            if command == "subscribe":
                return CommandResponse(
                    status=Status.FAILURE,
                    transmissions=[messages.reject_subscription(identifier)],
                )
            if command == "unsubscribe":
                return CommandResponse(status=Status.SUCCESS, stop_streams=True)
            return CommandResponse(error_msg="unknown channel")
        channel_class, params = found
        channel = channel_class(
            connection, identifier, params, request.env.istate, settings=self.settings
        )
        name = channel_class.__name__
        where = f"{name}.subscribed" if command == "subscribe" else f"{name}.unsubscribed"
        try:
            if command == "subscribe":
                await invoke(channel.subscribed, ())
            elif command == "unsubscribe":
                await invoke(channel.unsubscribed, ())
                channel.stop_all_streams()
            else:
                action, args = _action(channel_class, request.data)
                where = f"{channel_class.__name__}.{action}"
                await invoke(getattr(channel, action), (*args,))
            cstate = state_changes(request.env.cstate, connection.cstate)
            istate = state_changes(request.env.istate, channel.istate)
        except Rejected:
            transmissions = [*channel.transmissions, *connection.transmissions]
            if command == "subscribe":
                transmissions = [messages.reject_subscription(identifier)]
            return CommandResponse(status=Status.FAILURE, transmissions=transmissions)
        except _Refused as exc:
            logger.warning("%s refused: %s", channel_class.__name__, exc)
            return CommandResponse(error_msg=str(exc))
        except Exception as exc:
            logger.exception("%s failed", where)
            return CommandResponse(error_msg=_error_text(exc, where))
        transmissions = [*channel.transmissions, *connection.transmissions]
        if command == "subscribe":
            transmissions.insert(0, messages.confirm_subscription(identifier))
        presence = None
        if channel._presence is not None and command != "unsubscribe":
            kind, presence_id, info = channel._presence
            presence = PresenceResponse(type=kind, id=presence_id, info=info)
        return CommandResponse(
            status=Status.SUCCESS,
            stop_streams=channel.stop_streams,
            streams=channel.streams,
            stopped_streams=channel.stopped_streams,
            transmissions=transmissions,
            env=EnvResponse(cstate=cstate, istate=istate if command != "unsubscribe" else {}),
            presence=presence,
        )

    async def _disconnect(
        self, request: DisconnectRequest, sid: str | None, invoke: Invoke
    ) -> DisconnectResponse:
        try:
            identifiers = _load_identifiers(request.identifiers)
        except (ValueError, RecursionError):
            return DisconnectResponse(error_msg="identifiers are not a JSON object")
        connection = self.connection_class(request.env, sid=sid, identifiers=identifiers)
        failed: list[str] = []
        for identifier in request.subscriptions:
            found = self._lookup(identifier)
            if found is None:
                continue
            channel_class, params = found
            istate = decode_disconnect_istate(request.env.istate, identifier)
            channel = channel_class(connection, identifier, params, istate, settings=self.settings)
            try:
                await invoke(channel.unsubscribed, ())
            except Exception as exc:
                where = f"{channel_class.__name__}.unsubscribed"
                logger.exception("%s failed", where)
                failed.append(_error_text(exc, where))
        try:
            await invoke(connection.disconnect, ())
        except Exception as exc:
            logger.exception("%s.disconnect failed", type(connection).__name__)
            failed.append(_error_text(exc, "disconnect"))
        if failed:
            return DisconnectResponse(error_msg="; ".join(failed))
        return DisconnectResponse(status=Status.SUCCESS)


async def _call_and_await(function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    result = function(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class _Refused(Exception):
    """A message the SDK will not dispatch (bad data, not an action)."""


def _action(channel_class: type[Channel], data_text: str) -> tuple[str, tuple[Any, ...]]:
    """The action method name and its arguments for a ``message`` command."""
    try:
        data = json.loads(data_text) if data_text else {}
    except (ValueError, RecursionError):
        raise _Refused("message data is not JSON") from None
    if not isinstance(data, dict):
        raise _Refused("message data is not a JSON object")
    action = data.get("action", "receive")
    if not isinstance(action, str) or action not in channel_class.action_names():
        raise _Refused(f"unknown action {repr(action)[:100]}")
    return action, ((data,) if channel_class.action_takes_data(action) else ())
