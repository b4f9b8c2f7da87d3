"""The chat application of rpc.md §7.2 (the serverless-js harness), written with
cableway.channels, plus a client-side helper that keeps state as AnyCable-Go does."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cableway.channels import Application, Channel, Connection
from cableway.channels.wsgi import _invoke, _run
from cableway.integration import IntegrationSettings
from cableway.rpc import (
    CommandMessage,
    CommandResponse,
    ConnectionRequest,
    ConnectionResponse,
    DisconnectRequest,
    DisconnectResponse,
    Env,
    Status,
    derive_rpc_key,
    encode_disconnect_istate,
    merge_state,
)

SECRET = "secret"
KEY = derive_rpc_key(SECRET)
SID = "s1d-test"
URL = "http://localhost:8080/cable?user=alice"
HEADERS = {"REMOTE_ADDR": "127.0.0.1", "cookie": "_session_id=abc"}
IDENT = '{"channel":"chat","room":"42"}'
SPEC_HEADERS = [
    ("content-type", "application/json"),
    ("authorization", f"Bearer {KEY}"),
    ("x-anycable-meta-sid", SID),
    ("x-anycable-meta-protov", "v1"),
]


def make_app(events: list[Any], **kwargs: Any) -> Application:
    """The §7.2 app; callbacks record what they saw in ``events``."""

    class ChatConnection(Connection):
        def connect(self) -> None:
            user = self.params.get("user")
            if not user:
                self.reject()
            self.identified_by(user=user)
            self.cstate["visits"] = "1"
            events.append(("connect", self.cookies, self.remote_addr, threading.get_ident()))

        def disconnect(self) -> None:
            events.append(("disconnect", dict(self.identifiers)))

    class ChatChannel(Channel):
        channel_name = "chat"

        def subscribed(self) -> None:
            room = self.params.get("room")
            if not room:
                self.stream_from("never")  # dropped: a rejection keeps no stream
                self.reject()
            self.stream_from(f"room:{room}")

        def unsubscribed(self) -> None:
            events.append(("unsubscribed", self.params, dict(self.istate)))

        def speak(self, data: dict[str, Any]) -> None:
            self.transmit({"echo": data["message"]})
            self.broadcast(
                f"room:{self.params['room']}",
                {"message": data["message"], "from": self.identifiers["user"]},
            )

        def remember(self, data: dict[str, Any]) -> None:
            self.istate["last"] = data["message"]

        def recall(self) -> None:
            self.transmit({"last": self.istate.get("last"), "visits": self.cstate.get("visits")})

        def leave(self) -> None:
            self.stop_stream_from(f"room:{self.params['room']}")

        def visit(self) -> None:
            self.cstate["visits"] = str(int(self.cstate.get("visits", "0")) + 1)
            self.cstate.pop("gone", None)

        async def typing(self, data: dict[str, Any]) -> None:
            events.append(("typing", threading.get_ident()))
            await self.abroadcast(
                f"room:{self.params['room']}", {"typing": self.identifiers["user"]}
            )

        def crash(self) -> None:
            raise KeyError("secret-internal-detail")

        def _helper(self) -> None:
            events.append("helper ran")

        @staticmethod
        def static_one() -> None:
            events.append("static ran")

    kwargs.setdefault("secret", SECRET)
    kwargs.setdefault("settings", IntegrationSettings(secret="s"))
    return Application(ChatConnection, [ChatChannel], **kwargs)


def call(
    app: Application,
    path: str,
    body: bytes | str,
    headers: list[tuple[str, str]] | None = None,
    method: str = "POST",
) -> tuple[int, Any]:
    """One request through the dispatcher (callbacks called as the WSGI app does):
    (status, parsed JSON or text)."""
    data = body.encode() if isinstance(body, str) else body
    response = _run(
        app.handle(method, path, SPEC_HEADERS if headers is None else headers, data, _invoke)
    )
    text = response.body.decode()
    if response.status == 200:
        assert ("content-type", "application/json") in response.headers
        return 200, json.loads(text)
    return response.status, text


@dataclass
class GoSession:
    """What AnyCable-Go keeps for one client and sends back (rpc.md §4.7)."""

    app: Application
    #: sends (path, body) and returns (HTTP status, parsed JSON); default: in-process
    post: Callable[[str, bytes], tuple[int, Any]] | None = None
    url: str = URL
    identifiers: str = ""
    cstate: dict[str, str] = field(default_factory=dict)
    istate: dict[str, dict[str, str]] = field(default_factory=dict)
    streams: dict[str, set[str]] = field(default_factory=dict)
    received: list[Any] = field(default_factory=list)

    def _post(self, path: str, body: bytes) -> tuple[int, Any]:
        if self.post is not None:
            return self.post(path, body)
        return call(self.app, path, body)

    def env(self, istate: dict[str, str] | None = None) -> Env:
        return Env(
            url=self.url, headers=dict(HEADERS), cstate=dict(self.cstate), istate=istate or {}
        )

    def connect(self) -> ConnectionResponse:
        status, body = self._post("/_anycable/connect", ConnectionRequest(self.env()).to_bytes())
        assert status == 200
        response = ConnectionResponse.from_json(json.dumps(body))
        if response.status is not Status.ERROR:
            self.cstate = merge_state(self.cstate, response.env.cstate)
            self.received += [json.loads(t) for t in response.transmissions]
        if response.status is Status.SUCCESS:
            self.identifiers = response.identifiers
        return response

    def command(
        self, command: str, identifier: str = IDENT, data: object = None
    ) -> CommandResponse:
        message = CommandMessage(
            command=command,
            identifier=identifier,
            connection_identifiers=self.identifiers,
            data="" if data is None else json.dumps(data),
            env=self.env(self.istate.get(identifier)),
        )
        status, body = self._post("/_anycable/command", message.to_bytes())
        assert status == 200
        response = CommandResponse.from_json(json.dumps(body))
        if response.status is Status.ERROR:
            return response
        streams = self.streams.setdefault(identifier, set())
        if response.stop_streams:
            streams.clear()
        else:
            streams.difference_update(response.stopped_streams)
        streams.update(response.streams)
        if response.env.istate or identifier in self.istate:
            self.istate[identifier] = merge_state(
                self.istate.get(identifier, {}), response.env.istate
            )
        self.cstate = merge_state(self.cstate, response.env.cstate)
        self.received += [json.loads(t) for t in response.transmissions]
        if command == "unsubscribe":
            self.streams.pop(identifier, None)
            self.istate.pop(identifier, None)
        return response

    def disconnect(self) -> DisconnectResponse:
        request = DisconnectRequest(
            identifiers=self.identifiers,
            subscriptions=list(self.streams),
            env=self.env(encode_disconnect_istate(self.istate)),
        )
        status, body = self._post("/_anycable/disconnect", request.to_bytes())
        assert status == 200
        return DisconnectResponse.from_json(json.dumps(body))
