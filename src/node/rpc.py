"""What the server does around AnyCable's RPC calls (rpc.md §4): one rule for every driver.

:class:`RpcSession` is the per-session state the server keeps for the application
(identifiers, connection state ``cstate``, per-channel state ``istate``, the streams of
each application channel) and the decisions: which request to send, and what each answer
(or failure) does to the session's core, in the order AnyCable-Go applies it. It does no
I/O: the driver sends the request (HTTP, or an in-process application) and hands back the
decoded answer, or ``None`` when the call failed (timeout, refused connection, non-200
status, undecodable body). :func:`open_event_stream` is the opening of an event stream
with the application in the loop, over any :class:`Application`.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..protocol.broker import SessionSnapshot
from ..protocol.channels import StreamPolicy, is_built_in
from ..protocol.connection import CableConnection, SessionState
from ..protocol.events import Delegate
from ..protocol.handshake import AuthPolicy
from ..protocol.sse import Refusal, SseOpen
from ..rpc.messages import (
    PRESENCE_STATE,
    WHISPER_STATE,
    CommandMessage,
    CommandResponse,
    ConnectionRequest,
    ConnectionResponse,
    DisconnectRequest,
    Env,
    Status,
    encode_disconnect_istate,
    merge_state,
)
from .registry import Registry

__all__ = [
    "CLOSE_AUTH_ERROR",
    "CLOSE_AUTH_FAILED",
    "CLOSE_COMMAND_FAILED",
    "Application",
    "Delegator",
    "DisconnectSink",
    "RpcSession",
    "answer_delegated",
    "connect_needed",
    "open_event_stream",
    "release_delegated",
    "request_url",
]

#: WebSocket close after a failed Connect call (error, timeout, refused): clients reconnect.
CLOSE_AUTH_ERROR = (1011, "Auth Error")
#: WebSocket close after the application rejected the connection.
CLOSE_AUTH_FAILED = (1000, "Auth Failed")
#: WebSocket close when a Command answer says ``disconnect`` (AnyCable-Go uses the
#: reserved 1006; a close frame cannot carry it, so 1011 as anycable.md §3.4 suggests).
CLOSE_COMMAND_FAILED = (1011, "Command Failed")


def request_url(
    host: str | None, path: str, query: str, *, default_host: str, tls: bool = False
) -> str:
    """The client's request URL as AnyCable-Go sends it in ``env.url`` (rpc.md §2.2):
    ``http://`` (never ``ws://``; ``https://`` over TLS), the ``Host`` header
    (``default_host`` when it is missing or empty), the path and the query."""
    scheme = "https" if tls else "http"
    return f"{scheme}://{host or default_host}{path}{'?' + query if query else ''}"


def _info(text: str) -> object:
    """A presence ``info`` from a Command answer: JSON text parsed when it is JSON, else
    kept as the string (rpc.md §2.4)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def connect_needed(token: str | None, policy: AuthPolicy, *, noauth: bool, restored: bool) -> bool:
    """Whether a new session calls Connect (rpc.md §4.2): not when restored, not when a JWT
    decides (a token with JWT on: valid identifies, invalid rejects, both without RPC), not
    with ``--noauth``/``--public``; otherwise yes."""
    if restored or noauth:
        return False
    return not (policy.jwt_secret and token is not None)


@dataclass
class RpcSession:
    """The application's view of one session.

    Attributes:
        sid: the session id (sent as ``X-Anycable-Meta-Sid``).
        url: the client's request URL as ``http(s)://host/path?query``.
        headers: ``env.headers`` (configured headers and ``REMOTE_ADDR``), fixed at handshake.
        disconnect_mode: ``auto``, ``always`` or ``never``.
    """

    sid: str
    url: str
    headers: dict[str, str]
    disconnect_mode: str = "auto"
    identifiers: str = ""
    cstate: dict[str, str] = field(default_factory=dict)
    istate: dict[str, dict[str, str]] = field(default_factory=dict)
    #: application channel identifier -> the streams it reads
    channels: dict[str, set[str]] = field(default_factory=dict)
    #: whether the session was connected (a Disconnect call may follow)
    connected: bool = False
    #: whether an RPC result marked it for Disconnect (``auto`` mode, sticky)
    interested: bool = False

    def _env(self, istate: dict[str, str] | None = None) -> Env:
        return Env(
            url=self.url, headers=self.headers, cstate=dict(self.cstate), istate=istate or {}
        )

    # -- Connect ---------------------------------------------------------------------

    def connect_request(self) -> ConnectionRequest:
        return ConnectionRequest(env=self._env())

    def identified(self, identifiers: str) -> None:
        """Connected without Connect (JWT, ``--noauth``, restored): no Disconnect interest
        until an application channel is used."""
        self.identifiers = identifiers
        self.connected = True

    def apply_connect(self, core: CableConnection, answer: ConnectionResponse | None) -> Status:
        """Apply a Connect answer (rpc.md §4.3); ``None`` = the call failed. Returns the
        status (ERROR for a failed call)."""
        if answer is None or answer.status is Status.ERROR:
            core.close_delegated(*CLOSE_AUTH_ERROR)
            return Status.ERROR
        self.cstate = merge_state(self.cstate, answer.env.cstate)
        if answer.status is Status.SUCCESS:
            self.identifiers = answer.identifiers
            self.connected = self.interested = True
            core.accept_delegated(answer.identifiers)
            self._save(core)
            for text in answer.transmissions:
                core.transmit(text)
            return Status.SUCCESS
        for text in answer.transmissions:
            core.transmit(text)
        core.close_delegated(*CLOSE_AUTH_FAILED)
        return Status.FAILURE

    # -- Command ---------------------------------------------------------------------

    def command_request(
        self, command: str, identifier: str, data: str = ""
    ) -> CommandMessage | None:
        """The Command to send, or ``None`` when AnyCable-Go sends none (rpc.md §4.4):
        ``subscribe`` to an identifier already subscribed, ``unsubscribe``/``message`` for
        one that is not."""
        subscribed = identifier in self.channels
        if (command == "subscribe") == subscribed:
            return None
        return CommandMessage(
            command=command,
            identifier=identifier,
            connection_identifiers=self.identifiers,
            data=data if command == "message" else "",
            env=self._env(self.istate.get(identifier)),
        )

    def apply_command(
        self, core: CableConnection, request: CommandMessage, answer: CommandResponse | None
    ) -> Status:
        """Apply a Command answer in AnyCable-Go's order (rpc.md §4.5, §4.6); ``None`` =
        the call failed: nothing is sent and nothing changes (the client's own timeout
        decides). A rejected subscribe sends its transmissions only (its streams and state
        are ignored: rpc.md §4.6 [quirk])."""
        if answer is None or answer.status is Status.ERROR or core.state is SessionState.CLOSED:
            return Status.ERROR
        identifier = request.identifier
        command = request.command
        ok = answer.status is Status.SUCCESS
        if command == "subscribe" and ok:
            self.channels[identifier] = set()
        self.interested = True
        if command == "unsubscribe":
            # subscription gone whatever the status; all its streams stop (forced)
            for stream in sorted(self.channels.pop(identifier, set())):
                core.delegated_stream(identifier, stream, added=False)
            self.istate.pop(identifier, None)
            core.delegated_unsubscribed(identifier)
            self.cstate = merge_state(self.cstate, answer.env.cstate)
        elif identifier in self.channels:
            streams = self.channels[identifier]
            if answer.stop_streams:
                for stream in sorted(streams):
                    core.delegated_stream(identifier, stream, added=False)
                streams.clear()
            else:
                for stream in answer.stopped_streams:
                    if stream in streams:
                        streams.discard(stream)
                        core.delegated_stream(identifier, stream, added=False)
            for stream in answer.streams:
                if stream not in streams:
                    streams.add(stream)
                    core.delegated_stream(identifier, stream, added=True)
            if answer.env.istate or identifier in self.istate:
                self.istate[identifier] = merge_state(
                    self.istate.get(identifier, {}), answer.env.istate
                )
            self._features(core, identifier)
            self.cstate = merge_state(self.cstate, answer.env.cstate)
        else:  # a rejected subscribe: only its cstate and transmissions count
            self.cstate = merge_state(self.cstate, answer.env.cstate)
        self._save(core)
        for text in answer.transmissions:
            core.transmit(text)
        if answer.presence is not None and identifier in self.channels:
            presence = answer.presence
            core.delegated_presence(identifier, presence.type, presence.id, _info(presence.info))
        if command == "subscribe" and ok:
            core.delegated_confirmed(identifier)  # the client's own join, if it sent one
        if answer.disconnect:
            core.close_delegated(*CLOSE_COMMAND_FAILED)
        return answer.status

    def _features(self, core: CableConnection, identifier: str) -> None:
        """Tell the core the whisper and presence streams the channel's state names, and
        the streams it reads (its history replays them, in this order)."""
        state = self.istate.get(identifier, {})
        core.delegated_channel(
            identifier,
            whisper=state.get(WHISPER_STATE, ""),
            presence=state.get(PRESENCE_STATE, ""),
            streams=tuple(sorted(self.channels.get(identifier, ()))),
        )

    # -- snapshots (resumable sessions) ----------------------------------------------

    def _save(self, core: CableConnection) -> None:
        state = {
            "cstate": self.cstate,
            "istate": self.istate,
            "channels": {identifier: sorted(s) for identifier, s in self.channels.items()},
            "interested": self.interested,
        }
        core.delegated_state(tuple(self.channels), json.dumps(state, separators=(",", ":")))

    def restore(self, core: CableConnection, snapshot: SessionSnapshot) -> None:
        """A session restored from ``snapshot`` (no Connect, no Commands): its identifiers,
        state and application channels (their streams re-added) come back."""
        self.identifiers = snapshot.identifiers
        self.connected = True
        try:
            state = json.loads(snapshot.app) if snapshot.app else {}
            cstate = {str(k): str(v) for k, v in state.get("cstate", {}).items()}
            istate = {
                str(i): {str(k): str(v) for k, v in m.items()}
                for i, m in state.get("istate", {}).items()
            }
            channels = {str(i): {str(x) for x in v} for i, v in state.get("channels", {}).items()}
            interested = bool(state.get("interested", False))
        except (ValueError, AttributeError, TypeError):
            return  # an unreadable snapshot: the client re-subscribes
        self.cstate, self.istate, self.interested = cstate, istate, interested
        for identifier in snapshot.delegated:
            streams = self.channels[identifier] = channels.get(identifier, set())
            for stream in sorted(streams):
                core.delegated_stream(identifier, stream, added=True)
            self._features(core, identifier)

    # -- Disconnect ------------------------------------------------------------------

    def disconnect_request(self) -> DisconnectRequest | None:
        """The Disconnect to send once the socket is gone, or ``None`` (rpc.md §4.9):
        only for connected sessions; ``auto`` only if an RPC result marked it."""
        if not self.connected or self.disconnect_mode == "never":
            return None
        if self.disconnect_mode == "auto" and not self.interested:
            return None
        if self.disconnect_mode not in ("auto", "always"):
            return None
        env = self._env()
        env.istate = encode_disconnect_istate(self.istate)
        return DisconnectRequest(
            identifiers=self.identifiers, subscriptions=list(self.channels), env=env
        )

    def streams(self) -> list[tuple[str, str]]:
        """Every (identifier, stream) the application channels read (to unregister)."""
        return [(identifier, s) for identifier, streams in self.channels.items() for s in streams]


# -- the calls, carried out the same way by every driver -----------------------------------


class Application(Protocol):
    """The application's Connect and Command calls, as a driver makes them (HTTP RPC in
    the trio server, :class:`~cableway.channels.Application` in the ASGI app's process);
    ``None``: the call failed."""

    async def connect(self, sid: str, request: ConnectionRequest) -> ConnectionResponse | None: ...

    async def command(self, sid: str, request: CommandMessage) -> CommandResponse | None: ...


class DisconnectSink(Protocol):
    """Where a closed session's Disconnect call goes (the trio server's rate-limited
    queue; the ASGI app starts it at once)."""

    def enqueue(self, sid: str, request: DisconnectRequest) -> Any: ...


class Delegator(Protocol):
    """What :func:`answer_delegated` needs of a driver's session."""

    @property
    def sid(self) -> str: ...

    @property
    def core(self) -> CableConnection: ...

    @property
    def closing(self) -> bool: ...

    def command_ignored(self, command: str, detail: str) -> None: ...

    def apply(self) -> None: ...


def _gone(session: Delegator) -> bool:
    return session.closing


async def answer_delegated(
    application: Application, state: RpcSession, session: Delegator, pending: deque[Delegate]
) -> None:
    """Ask the application about a session's delegated commands, one at a time, in order,
    applying each answer before the next call (rpc.md §1: a slow application delays only
    this client's commands). The driver awaits it (its reading waits meanwhile, as in
    AnyCable-Go); nothing here waits on anything but the driver's own calls."""
    while pending and not session.closing:
        command = pending.popleft()
        request = state.command_request(command.command, command.identifier, command.data)
        if request is None:
            session.command_ignored(command.command, "already subscribed or not subscribed")
        else:
            answer = await application.command(session.sid, request)
            if _gone(session):
                return  # the client is gone: the answer is discarded
            state.apply_command(session.core, request, answer)
        # the commands that arrived after this one are processed now, in order
        session.core.delegated_answered()
        session.apply()


def release_delegated(
    registry: Registry[Any],
    session: Hashable,
    state: RpcSession,
    disconnects: DisconnectSink | None,
) -> None:
    """A session ended: unregister its application streams, hand its Disconnect call (if
    the application wants one) to ``disconnects``."""
    for identifier, stream in state.streams():
        registry.remove(stream, identifier, session)
    request = state.disconnect_request()
    if request is not None and disconnects is not None:
        disconnects.enqueue(state.sid, request)


# -- event streams (SSE) ---------------------------------------------------------------


#: Connect rejected by the application: the client is not let in (AnyCable-Go's SSE).
SSE_UNAUTHORIZED = Refusal(401, b"Unauthorized")
#: Connect failed (error, timeout, unreachable application): AnyCable-Go answers 400.
SSE_CONNECT_FAILED = Refusal(400, b"Bad Request: authentication failed")
SSE_REJECTED = Refusal(400, b"Bad Request: subscription rejected")


async def open_event_stream(
    caller: Application,
    state: RpcSession,
    core: CableConnection,
    opening: SseOpen,
    *,
    connect: bool,
    policy: StreamPolicy,
    now: float,
) -> Refusal | None:
    """Open an event stream whose subscriptions may be application channels, as
    AnyCable-Go's SSE handler does (``sse/handler.go``), before anything is answered.

    ``core`` is a new, not yet accepted core that delegates (``SessionSettings.delegate``).
    With ``connect`` (:func:`connect_needed`), a Connect call decides: a rejection is a
    ``401``, a failed call a ``400``; without it, the token's identifiers are taken. Then
    each subscribe of ``opening``, in order: built-in channels by the core, the others by a
    Command call; one not confirmed is a ``400``. ``None``: every subscription is
    confirmed, and what the core queued (welcome, confirmations, the application's
    transmissions, its streams) goes out once the stream is answered.

    After a refusal with ``state.connected`` set, the driver still queues the Disconnect
    call (:meth:`RpcSession.disconnect_request`), as AnyCable-Go does.
    """
    sid = core.sid
    if connect:
        status = state.apply_connect(core, await caller.connect(sid, state.connect_request()))
        if status is Status.FAILURE:
            return SSE_UNAUTHORIZED
        if status is not Status.SUCCESS:
            return SSE_CONNECT_FAILED
    else:
        core.accept(opening.identifiers)
        state.identified(opening.identifiers)
    for command in opening.commands:
        identifier = str(command["identifier"])
        if is_built_in(identifier, policy):
            core.receive_message(json.dumps(command), now=now)
            if identifier not in core.subscriptions:
                return SSE_REJECTED
            continue
        request = state.command_request("subscribe", identifier)
        if request is None:
            continue  # the same identifier twice: subscribed already
        history = command.get("history")  # ?history_since=, Last-Event-ID: served after
        core.delegated_subscribe(identifier, history=history if isinstance(history, dict) else None)
        answer = await caller.command(sid, request)
        if state.apply_command(core, request, answer) is not Status.SUCCESS:
            return SSE_REJECTED
    return None
