"""Nothing lost over a dropped WebSocket: the real ``@anycable/web`` client against Cableway.

The client (``anycable_client.mjs``: ``createCable`` from ``@anycable/web`` 1.1, protocol
``actioncable-v1-ext-json``, ``ws`` as its WebSocket) subscribes to one stream, the test broadcasts,
the connection dies in the middle of the broadcasts with no close handshake, more is broadcast
while the client is away, and the client comes back by itself — twice in a row, so the second
restore starts from a session that was itself restored. What the application's ``message``
callback saw must be every message exactly once and in order.

The last test pins down a race: a message published between the restored welcome and the
client's ``history`` command must still be seen once and in order (the server holds live
messages of restored subscriptions until their history was replayed).

Client behaviour these tests rely on (``@anycable/core`` 1.1.7):

* ``welcome.sid`` is stored and added to the URL as ``?sid=`` for the next connection
  (``Cable#setSessionId`` → ``WebSocketTransport#setParam``), keeping any ``jid`` already there;
* data frames with ``stream_id``/``epoch``/``offset`` update its position for that stream
  (``ActionCableExtendedProtocol#trackStreamPosition``) — it never deduplicates: whatever frames
  carry a ``message`` reach the ``message`` callback;
* an abnormal close (code 1006) with a known sid is a "recoverable closure": the channel goes to
  ``connecting`` (no ``disconnect``) and the Monitor reconnects after ``reconnectStrategy(attempt)``
  ms (``backoffWithJitter``, here with small numbers), forever;
* on ``{"type":"welcome","restored":true,"restored_ids":[…]}`` it sends, per restored identifier,
  ``{"identifier":…,"command":"history","history":{"since":…,"streams":{<stream>:{epoch,offset}}}}``
  and does not re-subscribe it; the channel emits ``connect`` with ``restored: true``;
  ``confirm_history`` becomes the channel ``info`` event ``history_received``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from .conftest import Broadcaster

if TYPE_CHECKING:  # fixtures come from conftest.py; imported for annotations only
    from .conftest import CablewayServer, NodeClient, TcpProxy

    ClientFactory = Callable[..., NodeClient]
    ServerFactory = Callable[[str], CablewayServer]
    ProxyFactory = Callable[[int], TcpProxy]

pytestmark = pytest.mark.interop

STREAM = "chat"
# Small reconnect backoff (the library's own backoffWithJitter): 1st retry after ~0.1-0.45 s,
# never more than 1 s. Waits below are bounded by RECONNECT_TIMEOUT.
RECONNECT = {"interval_ms": 150, "max_ms": 1000}
RECONNECT_TIMEOUT = 15.0
BROADCAST_TIMEOUT = 10.0

BEFORE_DROP = 15  # per drop, broadcast by a background thread; the drop happens while they flow
DROP_AFTER = 6  # ... as soon as the client has seen this many of them
WHILE_AWAY = 10  # per drop, broadcast while the client cannot connect
AFTER_RESTORE = 5  # live, after the last restore
DROPS = 2  # the second restore starts from a session that was itself restored


def payload(n: int) -> dict[str, Any]:
    return {"n": n, "text": f"message {n}"}


def broadcast(server: CablewayServer, n: int) -> None:
    status = server.broadcast(STREAM, json.dumps(payload(n)), timeout=BROADCAST_TIMEOUT)
    assert status == 201, f"broadcast {n}: HTTP {status}"


def welcomes(client: NodeClient) -> list[tuple[int, dict[str, Any]]]:
    """(socket number, frame) of every welcome, in order."""
    return [
        (ev["socket"], ev["data"])
        for ev in client.find("frame")
        if isinstance(ev.get("data"), dict) and ev["data"].get("type") == "welcome"
    ]


def frames_on(client: NodeClient, socket_no: int) -> list[dict[str, Any]]:
    return [ev["data"] for ev in client.find("frame") if ev["socket"] == socket_no]


def sent_on(client: NodeClient, socket_no: int) -> list[dict[str, Any]]:
    return [ev["data"] for ev in client.find("sent") if ev["socket"] == socket_no]


def run_drops_and_restores(
    server: CablewayServer,
    proxy: TcpProxy,
    client: NodeClient,
    drop: Callable[[], None],
) -> None:
    """The scenario shared by both tests (``DROPS`` times), then every assertion.

    ``drop()`` must kill the client's connection abruptly and leave the proxy refusing new
    connections, so the broadcasts that follow are certainly made while the client is away.
    """
    connected = client.wait_for("channel_connect", name="chat")
    assert connected["restored"] is False
    identifier = client.wait_for("channel_created", name="chat")["identifier"]
    client.wait_frame(lambda f: f.get("type") == "welcome")

    published = 0
    published_at_restore: list[int] = []
    for round_no in range(1, DROPS + 1):
        # 1. Messages flow; the connection dies in the middle of them.
        live_socket = welcomes(client)[-1][0]
        broadcaster = Broadcaster(
            lambda n: broadcast(server, n),
            published + 1,
            published + BEFORE_DROP,
            per_call_timeout=BROADCAST_TIMEOUT,
        )
        client.wait_for("message", name="chat", message=payload(published + DROP_AFTER))
        drop()
        closed = client.wait_for("socket_close", socket=live_socket)
        assert closed["code"] == 1006, f"the client must see an abnormal close, got {closed}"
        broadcaster.join()
        published += BEFORE_DROP

        # 2. While it is away (the proxy refuses connections), more messages are published.
        for n in range(published + 1, published + WHILE_AWAY + 1):
            broadcast(server, n)
        published += WHILE_AWAY
        published_at_restore.append(published)
        proxy.restore()

        # 3. It reconnects on its own, with ?sid=, the session is restored, history replayed.
        client.wait_count(
            "channel_connect", round_no, name="chat", restored=True, timeout=RECONNECT_TIMEOUT
        )
        client.wait_count(
            "info", round_no, name="chat", type="history_received", timeout=RECONNECT_TIMEOUT
        )

    # 4. Live again.
    total = published + AFTER_RESTORE
    for n in range(published + 1, total + 1):
        broadcast(server, n)
    client.wait_for("message", name="chat", message=payload(total))
    assert client.disconnect() == 0

    # --- What the application saw: every message exactly once, in order. ----------------------
    events = client.find("message", name="chat")
    seen = [ev["message"] for ev in events]
    assert [m.get("n") for m in seen] == list(range(1, total + 1)), seen
    assert seen == [payload(n) for n in range(1, total + 1)]
    metas = [ev["meta"] for ev in events]
    assert [m["offset"] for m in metas] == list(range(1, total + 1)), metas
    assert {m["epoch"] for m in metas} == {metas[0]["epoch"]}
    assert {m["stream"] for m in metas} == {STREAM}
    assert not any(ev["restored"] is False for ev in client.find("channel_connect")[1:])
    assert not client.find("channel_disconnect", reason="recovery_failed")

    # --- How it got there (protocol level). --------------------------------------------------
    all_welcomes = welcomes(client)
    assert len(all_welcomes) == DROPS + 1, all_welcomes
    assert not all_welcomes[0][1].get("restored"), all_welcomes[0]
    for round_no in range(1, DROPS + 1):
        previous_socket, previous = all_welcomes[round_no - 1]
        socket_no, welcome = all_welcomes[round_no]
        url = client.find("socket_created", socket=socket_no)[0]["url"]
        assert f"sid={previous['sid']}" in url, (url, previous)
        assert welcome.get("restored") is True, welcome
        assert welcome.get("restored_ids") == [identifier], welcome
        assert welcome["sid"], welcome
        assert welcome["sid"] != previous["sid"], welcome

        frames = frames_on(client, socket_no)
        assert frames[0]["type"] == "welcome", frames
        assert not any(f.get("type") == "confirm_subscription" for f in frames), frames
        sent = sent_on(client, socket_no)
        assert not any(s.get("command") == "subscribe" for s in sent), sent

        # The client asks for what follows the last message it got on the dropped socket.
        before_drop = [f for f in frames_on(client, previous_socket) if "offset" in f]
        last_seen, epoch = before_drop[-1]["offset"], before_drop[-1]["epoch"]
        history = [s for s in sent if s.get("command") == "history"]
        assert len(history) == 1, sent
        assert history[0]["identifier"] == identifier
        assert history[0]["history"]["streams"] == {STREAM: {"epoch": epoch, "offset": last_seen}}

        # The replay: exactly the offsets after that position up to what was published before
        # the restore, in order, then confirm_history; everything later is live.
        end = next(i for i, f in enumerate(frames) if f.get("type") == "confirm_history")
        replayed = [f["offset"] for f in frames[:end] if "offset" in f]
        assert replayed == list(range(last_seen + 1, published_at_restore[round_no - 1] + 1))
        live = [f["offset"] for f in frames[end:] if "offset" in f]
        assert all(o > published_at_restore[round_no - 1] for o in live), frames

    assert not client.find("timeout")
    assert not client.find("error")
    assert server.error_lines() == []


def test_anycable_web_loses_nothing_when_the_network_drops_mid_stream(
    cableway_factory: ServerFactory, tcp_proxy: ProxyFactory, anycable_client: ClientFactory
) -> None:
    # Public mode, `cable.streamFrom("chat")`. The network fails between client and server (the
    # proxy resets both TCP connections: no close frame either way) while broadcasts are flowing,
    # and stays down (connections refused) while more are published. Relies on the client
    # behaviours listed in the module docstring: ?sid= on reconnect, reconnect by its own backoff
    # after a 1006 close, `history` with its last position after a restored welcome, no dedupe.
    server = cableway_factory("public")
    proxy = tcp_proxy(server.port)
    client = anycable_client(
        url=f"ws://127.0.0.1:{proxy.port}/cable",
        streams=[{"name": "chat", "stream": STREAM}],
        reconnect=RECONNECT,
    )
    run_drops_and_restores(server, proxy, client, drop=proxy.cut)
    assert proxy.forwarded == DROPS + 1, proxy.describe()


def test_anycable_web_loses_nothing_when_its_own_socket_is_destroyed(
    cableway_factory: ServerFactory, tcp_proxy: ProxyFactory, anycable_client: ClientFactory
) -> None:
    # `--secret` (JWT enforced + signed streams), `cable.streamFromSigned(signed)`, token through
    # `auth: {token}` (?jid=). This time the client's own TCP socket is destroyed under the library
    # (`ws._socket.destroy()`: no close frame, ws reports 1006), while the proxy refuses new
    # connections until the test has published the "away" messages. Relies on: the jid param stays
    # in the URL next to sid; a restored session needs no token re-check; plus the docstring list.
    server = cableway_factory("signed_jwt")
    proxy = tcp_proxy(server.port)
    token = server.token({"user_id": 7}, exp=int(time.time()) + 300)
    client = anycable_client(
        url=f"ws://127.0.0.1:{proxy.port}/cable",
        token=token,
        streams=[{"name": "chat", "signed": server.sign(STREAM)}],
        reconnect=RECONNECT,
    )

    def drop() -> None:
        proxy.hold()
        client.command("kill_socket")

    run_drops_and_restores(server, proxy, client, drop=drop)
    reconnect_url = client.find("socket_created")[-1]["url"]
    assert f"jid={token}" in reconnect_url, reconnect_url


def test_anycable_web_broadcast_between_restore_and_history_is_seen_once_in_order(
    cableway_factory: ServerFactory, tcp_proxy: ProxyFactory, anycable_client: ClientFactory
) -> None:
    # Real networks have latency: after `{"type":"welcome","restored":true}` the client's
    # `history` command needs a round trip to reach the server, and the stream keeps publishing
    # meanwhile. The proxy makes that window deterministic: it holds what the client sends once
    # the server has spoken on the new connection (the handshake passes, the `history` command
    # waits) while the test publishes one message, then releases it. Relies on: the client sends
    # `history` with its last position right after a restored welcome, passes every data frame to
    # `message` (no dedupe), and `confirm_history` → `history_received`.
    server = cableway_factory("public")
    proxy = tcp_proxy(server.port)
    client = anycable_client(
        url=f"ws://127.0.0.1:{proxy.port}/cable",
        streams=[{"name": "chat", "stream": STREAM}],
        reconnect=RECONNECT,
    )
    client.wait_for("channel_connect", name="chat")
    for n in (1, 2, 3):
        broadcast(server, n)
    client.wait_for("message", name="chat", message=payload(3))

    proxy.hold()
    client.command("kill_socket")
    client.wait_for("socket_close", socket=1)
    for n in (4, 5, 6):  # while away
        broadcast(server, n)

    proxy.hold_client_data()
    proxy.restore()
    client.wait_frame(lambda f: f.get("type") == "welcome" and f.get("restored") is True)
    client.wait_event(
        lambda ev: ev.get("event") == "sent" and ev["data"].get("command") == "history",
        what="history command",
    )
    broadcast(server, 7)  # after the restore, before the server has seen `history`
    # Either it arrives live now, or (a server that holds live delivery until the history is
    # served) it does not; give a live delivery the time a local round trip takes, bounded.
    with contextlib.suppress(AssertionError):
        client.wait_frame(lambda f: f.get("offset") == 7, timeout=1.0)
    proxy.release_client_data()
    client.wait_for("info", name="chat", type="history_received", timeout=RECONNECT_TIMEOUT)
    broadcast(server, 8)
    client.wait_for("message", name="chat", message=payload(8))
    assert client.disconnect() == 0

    seen = [ev["message"]["n"] for ev in client.find("message", name="chat")]
    assert seen == list(range(1, 9)), f"the app saw {seen}"
