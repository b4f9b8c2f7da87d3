"""A simulated Action Cable client on the sans-IO session core: what a page's
``<turbo-cable-stream-source>`` would receive, with no server and no sockets.

It runs the same :class:`~cableway.protocol.connection.CableConnection` and the same token
verification (:func:`~cableway.protocol.handshake.authenticate`) as the server, so a stream
name signed with the wrong secret, or another user's token, is refused here as it is there.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from ..protocol.broadcast import EncodedBroadcast, Publication
from ..protocol.channels import PUBSUB_CHANNEL, TURBO_CHANNEL, StreamPolicy
from ..protocol.connection import CableConnection, SessionSettings, SessionState
from ..protocol.events import SendMessage, StreamAdded, StreamRemoved
from ..protocol.handshake import AuthPolicy, Rejected, authenticate
from ..toolkit.broadcaster import encode_data

__all__ = ["ConnectionRejected", "SimulatedClient"]

_sids = itertools.count(1)


class ConnectionRejected(Exception):
    """The server would refuse this connection; ``reason`` is AnyCable's (``unauthorized``,
    ``token_expired``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"connection rejected: {reason}")
        self.reason = reason


class SimulatedClient:
    """One simulated connection.

    Args:
        jwt_secret: verifies ``token`` (``None``: JWT off, the client is anonymous).
        turbo_secret: verifies ``Turbo::StreamsChannel`` signed stream names.
        streams_secret: verifies ``$pubsub`` signed stream names (default ``turbo_secret``).
        token: the identification token the page would connect with.
        enforce_jwt: refuse a connection without a token (``--enforce_jwt``).
        now: the Unix time tokens are checked against (default: now).

    Raises:
        ConnectionRejected: when the server would refuse the token.
    """

    def __init__(
        self,
        *,
        jwt_secret: str | None,
        turbo_secret: str | None,
        streams_secret: str | None = None,
        token: str | None = None,
        enforce_jwt: bool = False,
        now: float | None = None,
    ) -> None:
        self.sid = f"simulated-{next(_sids)}"
        policy = StreamPolicy(
            streams_secret=streams_secret or turbo_secret,
            turbo_streams=True,
            turbo_secret=turbo_secret,
        )
        self._session = CableConnection(
            sid=self.sid, settings=SessionSettings(ping_interval=0, policy=policy), now=0.0
        )
        #: every message the client got, parsed (``welcome``, confirmations, broadcasts)
        self.messages: list[dict[str, Any]] = []
        self._streams: dict[str, set[str]] = {}  # stream -> identifiers reading it
        outcome = authenticate(
            token,
            sid=self.sid,
            policy=AuthPolicy(jwt_secret=jwt_secret, enforce_jwt=enforce_jwt),
            now=time.time() if now is None else now,
        )
        if isinstance(outcome, Rejected):
            self._session.reject(outcome.reason)
            self._drain()
            raise ConnectionRejected(outcome.reason)
        self._session.accept(outcome.identifiers)
        self._drain()

    @property
    def identifiers(self) -> dict[str, Any]:
        """The connection's identifiers (the token's ``ext``, or ``{"sid": …}``)."""
        value = json.loads(self._session.identifiers or "{}")
        return value if isinstance(value, dict) else {}

    @property
    def connected(self) -> bool:
        """The connection is open (not rejected, not closed by the server)."""
        return self._session.state is SessionState.OPEN

    def _drain(self) -> None:
        for event in self._session.events():
            if isinstance(event, SendMessage):
                self.messages.append(json.loads(event.text))
            elif isinstance(event, StreamAdded):
                self._streams.setdefault(event.stream, set()).add(event.identifier)
            elif isinstance(event, StreamRemoved):
                self._streams.get(event.stream, set()).discard(event.identifier)

    def _command(self, command: str, identifier: str) -> None:
        text = json.dumps({"command": command, "identifier": identifier})
        self._session.receive_message(text, now=0.0)
        self._drain()

    def subscribe(self, signed_stream_name: str, *, channel: str = TURBO_CHANNEL) -> bool:
        """Subscribe as ``<turbo-cable-stream-source signed-stream-name=…>`` does (``channel``
        may be ``"$pubsub"``); ``True`` when confirmed, ``False`` when rejected."""
        if channel not in (TURBO_CHANNEL, PUBSUB_CHANNEL):
            raise ValueError(f"only {TURBO_CHANNEL} and {PUBSUB_CHANNEL} are served")
        identifier = json.dumps(
            {"channel": channel, "signed_stream_name": signed_stream_name},
            separators=(",", ":"),
        )
        before = len(self.messages)
        self._command("subscribe", identifier)
        answers = [m for m in self.messages[before:] if m.get("identifier") == identifier]
        return any(m.get("type") == "confirm_subscription" for m in answers)

    def unsubscribe(self, signed_stream_name: str, *, channel: str = TURBO_CHANNEL) -> None:
        """Drop a subscription made with :meth:`subscribe`."""
        identifier = json.dumps(
            {"channel": channel, "signed_stream_name": signed_stream_name},
            separators=(",", ":"),
        )
        self._command("unsubscribe", identifier)

    @property
    def streams(self) -> set[str]:
        """The unsigned names of the streams this client reads."""
        return {stream for stream, ids in self._streams.items() if ids}

    def deliver(self, stream: str, data: object, *, exclude_socket: str | None = None) -> None:
        """What the server does with a broadcast of ``data`` to ``stream``: one message per
        subscription reading it, encoded as on the wire."""
        if exclude_socket == self.sid or not self.connected:
            return
        encoded = EncodedBroadcast(Publication(stream, encode_data(data)))
        for identifier in sorted(self._streams.get(stream, ())):
            self.messages.append(json.loads(encoded.for_identifier(identifier)))

    @property
    def received(self) -> list[object]:
        """The ``message`` of every broadcast received, in order."""
        return [m["message"] for m in self.messages if "message" in m and "type" not in m]

    @property
    def turbo_streams(self) -> list[str]:
        """The broadcasts received that are strings (Turbo Stream HTML)."""
        return [m for m in self.received if isinstance(m, str)]
