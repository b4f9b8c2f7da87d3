"""``@anycable/web`` on the plain Action Cable protocol (``actioncable-v1-json``).

``test_anycable_reliable.py`` covers the extended protocol; here the same real client
(``anycable_client.mjs``: ``createCable(url, {protocol: "actioncable-v1-json"})`` from
``@anycable/web`` 1.1, ``ws`` as its WebSocket) talks the plain one, in both ways of naming a
stream: ``cable.streamFrom(name)`` (public mode) and ``cable.streamFromSigned(signed)``
(``--secret`` + ``--enforce_jwt``, token through ``auth: {token}``).

Client behaviour these tests rely on (``@anycable/core`` 1.1.7, ``ActionCableProtocol``):

* the subscribe identifier is built by ``stringifyParams``: JSON with the keys **sorted**
  (``{"channel":"$pubsub","signed_stream_name":…}`` / ``{"channel":"$pubsub","stream_name":…}``)
  and no spaces; the pending subscription is looked up by that exact string, so
  ``confirm_subscription`` and every data frame must carry it back byte for byte (the client does
  not parse it);
* ``welcome.sid`` is stored (``Cable#setSessionId``: ``cable.sessionId``) and added as ``?sid=`` to
  the URL of the next connection (``WebSocketTransport#setParam``), next to ``jid``;
* on the plain protocol it never sends ``history`` (nor ``pong``): after any (re)connection it
  simply subscribes again, and whatever frame carries ``message`` for that identifier reaches the
  channel's ``message`` callback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # fixtures come from conftest.py; imported for annotations only
    from .conftest import CablewayServer, NodeClient

    ClientFactory = Callable[..., NodeClient]
    ServerFactory = Callable[[str], CablewayServer]

pytestmark = pytest.mark.interop

PROTOCOL = "actioncable-v1-json"
STREAM = "plain:chat"
RECONNECT = {"interval_ms": 150, "max_ms": 1000}
RECONNECT_TIMEOUT = 15.0


def _identifier(params: dict[str, str]) -> str:
    """What ``stringifyParams`` produces: sorted keys, compact JSON."""
    return json.dumps(dict(sorted(params.items())), separators=(",", ":"))


def _frames(client: NodeClient, socket_no: int) -> list[dict[str, Any]]:
    return [ev["data"] for ev in client.find("frame") if ev["socket"] == socket_no]


def _sent(client: NodeClient, socket_no: int) -> list[dict[str, Any]]:
    return [ev["data"] for ev in client.find("sent") if ev["socket"] == socket_no]


@pytest.mark.parametrize("how", ["stream_from_public", "stream_from_signed_jwt"])
def test_anycable_web_on_the_plain_protocol_subscribes_receives_and_reconnects_with_sid(
    how: str, cableway_factory: ServerFactory, anycable_client: ClientFactory
) -> None:
    # Relies on the behaviours in the module docstring: sorted-key identifier matched as an exact
    # string on confirm_subscription and on data frames; welcome.sid stored and sent back as
    # ?sid= (next to ?jid=) on reconnect; re-subscribe (no history) after reconnecting.
    if how == "stream_from_public":
        server = cableway_factory("public")
        token = None
        spec: dict[str, str] = {"name": "chat", "stream": STREAM}
        params = {"channel": "$pubsub", "stream_name": STREAM}
    else:
        server = cableway_factory("signed_jwt")
        token = server.token({"user_id": 7}, exp=int(time.time()) + 300)
        signed = server.sign(STREAM)
        spec = {"name": "chat", "signed": signed}
        params = {"channel": "$pubsub", "signed_stream_name": signed}
    identifier = _identifier(params)

    client = anycable_client(
        url=server.ws_url(),
        protocol=PROTOCOL,
        streams=[spec],
        reconnect=RECONNECT,
        **({"token": token} if token else {}),
    )

    # --- Connect and subscribe on the plain protocol. -----------------------------------------
    client.wait_for("channel_connect", name="chat")
    created = client.wait_for("socket_created", socket=1)
    assert created["protocols"] == PROTOCOL
    if token:
        assert f"jid={token}" in created["url"]
    assert client.wait_for("socket_open", socket=1)["protocol"] == PROTOCOL

    welcome = client.wait_frame(lambda f: f.get("type") == "welcome")["data"]
    sid = welcome.get("sid")
    assert isinstance(sid, str), welcome
    assert sid, welcome
    # the client stored it (Cable#setSessionId)
    assert client.wait_for("cable_connect")["session_id"] == sid

    [subscribe] = [f for f in _sent(client, 1) if f.get("command") == "subscribe"]
    assert subscribe["identifier"] == identifier  # keys sorted, compact
    confirm = client.wait_frame(lambda f: f.get("type") == "confirm_subscription")["data"]
    assert confirm["identifier"] == identifier  # echoed byte for byte

    # --- A broadcast reaches the `message` callback. -------------------------------------------
    first = {"n": 1, "text": "over the plain protocol"}
    assert server.broadcast(STREAM, json.dumps(first)) == 201
    client.wait_for("message", name="chat", message=first)
    data_frame = client.wait_frame(lambda f: f.get("message") == first)["data"]
    assert data_frame["identifier"] == identifier

    # --- The stored sid goes back as ?sid= on the next connection. -----------------------------
    client.command("kill_socket")
    client.wait_for("socket_close", socket=1)
    second_socket = client.wait_for("socket_created", socket=2, timeout=RECONNECT_TIMEOUT)
    assert f"sid={sid}" in second_socket["url"], second_socket["url"]
    if token:
        assert f"jid={token}" in second_socket["url"], second_socket["url"]
    client.wait_event(
        lambda ev: (
            ev.get("event") == "frame"
            and ev.get("socket") == 2
            and isinstance(ev.get("data"), dict)
            and ev["data"].get("type") == "confirm_subscription"
        ),
        what="confirm_subscription on the second socket",
        timeout=RECONNECT_TIMEOUT,
    )
    second = {"n": 2, "text": "after reconnecting"}
    assert server.broadcast(STREAM, json.dumps(second)) == 201
    client.wait_for("message", name="chat", message=second)

    # plain protocol: only `subscribe` (once per socket), same identifier, never `history`
    for socket_no in (1, 2):
        commands = [f.get("command") for f in _sent(client, socket_no)]
        assert commands == ["subscribe"], (socket_no, commands)
        assert [f["identifier"] for f in _sent(client, socket_no)] == [identifier]
    assert [ev["message"] for ev in client.find("message", name="chat")] == [first, second]

    assert client.disconnect() == 0
    assert not client.find("timeout")
    assert not client.find("error")
    assert server.error_lines() == []
