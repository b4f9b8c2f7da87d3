# Invariant: bodies decode or raise DecodeError, round-trip; the dispatcher answers 200/422 only.
"""Fuzz the RPC messages (``cableway.rpc``) and the channels dispatcher
(``cableway.channels.Application.handle``).

The first byte picks the call (``connect``, ``command``, ``disconnect`` by its value
modulo 3); the rest is the request body.

Invariant: every message class either decodes the body or raises ``DecodeError`` (never
anything else); a decoded message encodes to ASCII JSON that decodes back to an equal
message. The dispatcher, serving a small app whose callbacks use streams, state,
transmissions, whisper and presence, never raises; it answers 200 exactly when the body
decodes as the call's request (else 422), and a 200 body decodes as the call's response.

Run: ``python fuzz/fuzz_rpc.py -runs=100000 -max_len=2048 fuzz/corpus/rpc/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import logging
from typing import Any

from cableway.channels import Application, Channel, Connection
from cableway.channels.wsgi import _invoke, _run
from cableway.rpc import (
    CommandMessage,
    CommandResponse,
    ConnectionRequest,
    ConnectionResponse,
    DecodeError,
    DisconnectRequest,
    DisconnectResponse,
)

logging.getLogger("cableway.channels").disabled = True

MESSAGES: tuple[Any, ...] = (
    ConnectionRequest,
    ConnectionResponse,
    CommandMessage,
    CommandResponse,
    DisconnectRequest,
    DisconnectResponse,
)
CALLS = (
    ("connect", ConnectionRequest, ConnectionResponse),
    ("command", CommandMessage, CommandResponse),
    ("disconnect", DisconnectRequest, DisconnectResponse),
)


class FuzzConnection(Connection):
    def connect(self) -> None:
        if "reject" in self.params:
            self.reject()
        self.identified_by(user=self.params.get("user"), cookie=self.cookies.get("c"))
        self.cstate["seen"] = self.url[:10] or "x"


class Room(Channel):
    def subscribed(self) -> None:
        room = self.params.get("room")
        if not isinstance(room, str) or not room:
            self.reject()
        self.whispers_to(room)

    def say(self, data: dict[str, Any]) -> None:
        self.transmit(data)
        self.istate[str(data.get("k", "k"))] = str(data.get("v", ""))

    def leave(self) -> None:
        self.stop_all_streams()
        self.leave_presence()

    def here(self, data: dict[str, Any]) -> None:
        self.join_presence(self.params.get("room"), data.get("id"), data.get("info"))


APP = Application(FuzzConnection, [Room], http_rpc_secret="k")
HEADERS = [("authorization", "Bearer k")]


def test_one_input(data: bytes) -> None:
    mode, body = (data[0], data[1:]) if data else (0, b"")
    decoded: dict[Any, Any] = {}
    for cls in MESSAGES:
        try:
            message = cls.from_json(body)
        except DecodeError:
            continue
        text = message.to_json()
        assert text.isascii(), text
        assert cls.from_json(text) == message, (message, text)
        decoded[cls] = message
    call, request_class, response_class = CALLS[mode % 3]
    response = _run(APP.handle("POST", f"/rpc/{call}", HEADERS, body, _invoke))
    if request_class in decoded and body.strip():
        assert response.status == 200, (response.status, response.body)
        response_class.from_json(response.body)
    else:
        assert response.status == 422, (response.status, response.body)


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway"])
