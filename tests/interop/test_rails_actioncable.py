"""The real ``@rails/actioncable`` consumer (Node + ``ws``) against a real Cableway server.

Setup (see conftest.py): ``cableway --jwt_secret J --turbo_streams --turbo_streams_secret T
--broadcast_key B --http_broadcast_port <main port>``; the client connects with ``?jid=<JWT>`` and
subscribes the way ``<turbo-cable-stream-source>`` does (turbo-rails uses this same consumer):
``{channel: "Turbo::StreamsChannel", signed_stream_name: <MessageVerifier-signed name>}``.

Client behaviour these tests rely on (``@rails/actioncable`` 8.1, actioncable.esm.js):

* the subprotocols offered are ``["actioncable-v1-json", "actioncable-unsupported"]`` and, on
  ``open``, a negotiated protocol other than ``actioncable-v1-json`` makes it close for good;
* it reads only ``type``, ``identifier``, ``message``, ``reason`` and ``reconnect`` of a frame;
* ``welcome`` makes it (re)send ``subscribe`` for every subscription (Subscriptions#reload) and
  SubscriptionGuarantor re-sends ``subscribe`` every 500 ms until confirmed/rejected, so the
  server may see duplicate subscribes;
* callbacks are routed by comparing the frame's ``identifier`` with ``JSON.stringify(params)``
  using ``===``, so the server must echo the identifier string byte for byte.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # fixtures come from conftest.py; imported for annotations only
    from conftest import CablewayServer, NodeClient

    ClientFactory = Callable[..., NodeClient]

pytestmark = pytest.mark.interop

# What turbo-rails broadcasts to for `turbo_stream_from @room, :messages` (gid://app/Room/1).
STREAM = "Z2lkOi8vY2FibGV3YXkvUm9vbS8x:messages"
TURBO_HTML = (
    '<turbo-stream action="append" target="messages"><template>Hi</template></turbo-stream>'
)


def turbo_params(signed_stream_name: str) -> dict[str, Any]:
    # Key order matters: it is the identifier string (JSON.stringify keeps insertion order).
    return {"channel": "Turbo::StreamsChannel", "signed_stream_name": signed_stream_name}


def identifier_of(params: dict[str, Any]) -> str:
    # == JSON.stringify(params) for plain string values (compact separators, insertion order).
    return json.dumps(params, separators=(",", ":"), ensure_ascii=False)


def user_token(server: CablewayServer) -> str:
    return server.token({"user_id": 42}, exp=int(time.time()) + 300)


def test_welcome_then_turbo_stream_subscription_is_confirmed(
    cableway_server: CablewayServer, rails_client: ClientFactory
) -> None:
    # Relies on: the consumer sends nothing before `welcome`; on `welcome` it sends
    # {"command":"subscribe","identifier":JSON.stringify(params)} and fires `connected`
    # ({reconnected: false}) when a confirm_subscription carries exactly that identifier.
    params = turbo_params(cableway_server.signed_turbo_stream(STREAM))
    client = rails_client(
        url=cableway_server.ws_url(user_token(cableway_server)),
        subscriptions=[{"name": "turbo", "params": params}],
    )

    connected = client.wait_for("connected", name="turbo")
    assert connected["reconnected"] is False

    opened = client.wait_for("socket_open")
    assert opened["protocol"] == "actioncable-v1-json"

    frames = [ev["data"] for ev in client.find("frame")]
    assert frames[0]["type"] == "welcome", frames
    confirmations = [f for f in frames if f.get("type") == "confirm_subscription"]
    assert confirmations
    assert confirmations[0]["identifier"] == identifier_of(params)

    sent = [ev["data"] for ev in client.find("sent")]
    assert sent[0] == {"command": "subscribe", "identifier": identifier_of(params)}
    # The server never confirms twice, even if the guarantor re-sent the subscribe.
    assert len(confirmations) == 1
    assert not client.find("rejected")

    assert client.disconnect() == 0
    assert client.wait_for("idle_exit")["sockets"] == 1


def test_turbo_stream_broadcast_reaches_received_as_the_html_string(
    cableway_server: CablewayServer, rails_client: ClientFactory
) -> None:
    # Relies on: every frame whose `type` is not one of welcome/disconnect/ping/confirm/reject is
    # passed to `received(frame.message)` of the subscription(s) whose identifier === the frame's;
    # turbo-rails then needs `message` to be a string of <turbo-stream> HTML. Rails publishers
    # JSON-encode the payload, so /_broadcast gets data = JSON string of the HTML (spec §4.4).
    params = turbo_params(cableway_server.signed_turbo_stream(STREAM))
    client = rails_client(
        url=cableway_server.ws_url(user_token(cableway_server)),
        subscriptions=[{"name": "turbo", "params": params}],
    )
    client.wait_for("connected", name="turbo")

    status = cableway_server.broadcast(STREAM, json.dumps(TURBO_HTML))
    assert status == 201

    received = client.wait_for("received", name="turbo")
    assert received["message"] == TURBO_HTML
    assert isinstance(received["message"], str)

    assert client.disconnect() == 0
    assert len(client.find("received")) == 1, "the broadcast must be delivered exactly once"


def test_tampered_signed_stream_name_fires_rejected(
    cableway_server: CablewayServer, rails_client: ClientFactory
) -> None:
    # Relies on: reject_subscription whose identifier === JSON.stringify(params) makes the
    # consumer forget the subscription (stops the 500 ms re-subscribe guarantor) and fire
    # `rejected`; `connected` never fires. The socket itself stays open.
    signed = cableway_server.signed_turbo_stream(STREAM)
    encoded, digest = signed.split("--")
    tampered = f"{encoded}--{digest[:-1]}{'0' if digest[-1] != '0' else '1'}"
    params = turbo_params(tampered)
    client = rails_client(
        url=cableway_server.ws_url(user_token(cableway_server)),
        subscriptions=[{"name": "turbo", "params": params}],
    )

    client.wait_for("rejected", name="turbo")
    rejections = client.wait_frame(lambda f: f.get("type") == "reject_subscription")
    assert rejections["data"]["identifier"] == identifier_of(params)
    assert not client.find("connected")
    assert not client.find("socket_close"), "a rejected subscription must not close the socket"

    assert client.disconnect() == 0
    assert not client.find("connected")


def test_expired_jwt_disconnects_with_token_expired_and_no_reconnect(
    cableway_server: CablewayServer, rails_client: ClientFactory
) -> None:
    # Relies on: a `disconnect` frame makes the consumer call close({allowReconnect: reconnect});
    # with reconnect:false it stops its ConnectionMonitor (the only thing that ever reopens the
    # socket), so `disconnected` fires with willAttemptReconnect false. With control "none" the
    # Node process reads no stdin, so it exits by itself ("idle_exit") only if the consumer left
    # no timer or socket behind, i.e. it will never try to reconnect.
    expired = cableway_server.token({"user_id": 42}, exp=int(time.time()) - 60)
    params = turbo_params(cableway_server.signed_turbo_stream(STREAM))
    client = rails_client(
        url=cableway_server.ws_url(expired),
        subscriptions=[{"name": "turbo", "params": params}],
        control="none",
    )

    disconnect = client.wait_frame(lambda f: f.get("type") == "disconnect")
    assert disconnect["data"] == {
        "type": "disconnect",
        "reason": "token_expired",
        "reconnect": False,
    }

    disconnected = client.wait_for("disconnected", name="turbo")
    assert disconnected["will_attempt_reconnect"] is False
    closed = client.wait_for("socket_close")
    assert closed["monitor_running"] is False

    assert client.wait_exit() == 0
    assert client.wait_for("idle_exit")["sockets"] == 1, "the consumer must not reconnect"
    frame_types = [ev["data"].get("type") for ev in client.find("frame")]
    assert "welcome" not in frame_types
    assert not client.find("connected")
    assert not client.find("sent"), "nothing may be sent before a welcome"


def test_two_stream_sources_of_one_stream_share_one_server_subscription(
    cableway_server: CablewayServer, rails_client: ClientFactory
) -> None:
    # Two <turbo-cable-stream-source> elements for the same stream on one page = two consumer
    # subscriptions with the same identifier. Relies on: on `welcome` the consumer sends one
    # `subscribe` per subscription (the identical duplicate must be ignored silently, spec §4.5);
    # one confirm/data frame is fanned out to every local subscription with that identifier; it
    # sends `unsubscribe` only when the last local subscription with the identifier goes away.
    params = turbo_params(cableway_server.signed_turbo_stream(STREAM))
    client = rails_client(
        url=cableway_server.ws_url(user_token(cableway_server)),
        subscriptions=[{"name": "a", "params": params}, {"name": "b", "params": params}],
    )
    client.wait_for("connected", name="a")
    client.wait_for("connected", name="b")
    subscribes = [ev for ev in client.find("sent") if ev["data"]["command"] == "subscribe"]
    assert len(subscribes) >= 2, "the consumer subscribes once per local subscription"

    assert cableway_server.broadcast(STREAM, json.dumps("first")) == 201
    client.wait_for("received", name="a", message="first")
    client.wait_for("received", name="b", message="first")

    # Dropping one element keeps the server subscription (no unsubscribe is sent).
    client.command("unsubscribe", name="a")
    assert cableway_server.broadcast(STREAM, json.dumps("second")) == 201
    client.wait_for("received", name="b", message="second")
    assert not client.find("received", name="a", message="second")

    # Dropping the last one unsubscribes; a later broadcast must not arrive. The server takes
    # one connection's commands in order, so once a subscription to another stream, sent after
    # the unsubscribe, is confirmed, the unsubscribe has been carried out (the client's "sent"
    # alone says nothing about the server). A broadcast to that other stream, accepted after
    # "third", bounds the wait: it is written to the socket after anything "third" would be.
    client.command("unsubscribe", name="b")
    client.wait_for("sent", data={"command": "unsubscribe", "identifier": identifier_of(params)})
    other = turbo_params(cableway_server.signed_turbo_stream(f"{STREAM}:other"))
    client.command("subscribe", name="c", params=other)
    client.wait_for("connected", name="c")
    assert cableway_server.broadcast(STREAM, json.dumps("third")) == 201
    assert cableway_server.broadcast(f"{STREAM}:other", json.dumps("sentinel")) == 201
    client.wait_for("received", name="c", message="sentinel")

    assert client.disconnect() == 0
    data_frames = [ev["data"] for ev in client.find("frame") if "message" in ev["data"]]
    data_frames = [f for f in data_frames if f.get("type") != "ping"]
    assert [f["message"] for f in data_frames] == ["first", "second", "sentinel"]
    assert (
        len([f for f in client.find("frame") if f["data"].get("type") == "confirm_subscription"])
        == 2
    )


def test_compressed_both_ways_with_the_ws_package_in_node(
    cableway_factory: Callable[[str], CablewayServer], rails_client: ClientFactory
) -> None:
    # Relies on: the `ws` package offers permessage-deflate by default, inflates RSV1 frames
    # before @rails/actioncable sees them, and compresses its own messages of 1 KiB or more
    # (its default threshold), here the subscribe command with a padded identifier.
    server = cableway_factory("turbo_deflate")
    params = {**turbo_params(server.signed_turbo_stream(STREAM)), "padding": "p" * 1500}
    client = rails_client(
        url=server.ws_url(user_token(server)), subscriptions=[{"name": "turbo", "params": params}]
    )
    client.wait_for("connected", name="turbo")  # the compressed subscribe was inflated
    [opened] = client.find("socket_open")
    assert opened["extensions"] == "permessage-deflate"  # ws reports the names only

    # well over the 128-byte threshold: sent compressed, each without the other's context
    sent = [TURBO_HTML * 8, TURBO_HTML.replace("append", "prepend") * 8]
    for html in sent:
        assert server.broadcast(STREAM, json.dumps(html)) == 201
    client.wait_for("received", name="turbo", message=sent[1])
    assert client.disconnect() == 0
    assert [r["message"] for r in client.find("received")] == sent
    assert server.error_lines() == []
