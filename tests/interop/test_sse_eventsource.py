"""A real ``EventSource`` (npm ``eventsource`` 3.x in Node) against Cableway's SSE endpoint.

``sse_client.mjs`` opens ``new EventSource(url, {fetch})`` (the ``fetch`` option only taps each
request for the report) and prints what ``onopen``/``onmessage``/``onerror`` and
``addEventListener(<type>)`` observe.

Client behaviour these tests rely on (``eventsource`` 3.0.7, which follows the WHATWG spec):

* an event without an ``event:`` field is a ``message`` event → ``onmessage``; its ``data`` is the
  ``data:`` lines joined with ``\\n``; typed events (``event: welcome`` …) only reach listeners of
  that type;
* it remembers the last ``id:`` and, when it reconnects, sends it as the ``Last-Event-ID`` header;
* a network error or the end of the response → ``error`` event with readyState CONNECTING, then a
  new request after the reconnection time (3 s by default; the server sends no ``retry:`` except
  on a final disconnect);
* a response that is not ``200`` + ``text/event-stream`` *fails the connection*: one ``error``
  event, readyState CLOSED, and no retry — ever (spec §14.4);
* ``close()`` aborts the request and sets readyState CLOSED; nothing is retried afterwards.
"""

from __future__ import annotations

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
TYPED_EVENTS = [
    "welcome",
    "confirm_subscription",
    "reject_subscription",
    "confirm_history",
    "reject_history",
    "disconnect",
]
CONNECTING, OPEN, CLOSED = 0, 1, 2
# EventSource retries 3 s after a network error; the waits for a reconnection allow for that
# plus a failed attempt or two.
RECONNECT_TIMEOUT = 15.0
BROADCAST_TIMEOUT = 10.0

BEFORE_DROP = 15  # per drop, broadcast by a background thread; the drop happens while they flow
DROP_AFTER = 6  # ... as soon as the client has seen this many of them
WHILE_AWAY = 10  # per drop, broadcast while the client cannot connect
AFTER_RESTORE = 5  # live, after the last reconnection
DROPS = 2


def text(n: int) -> str:
    return f"message {n}"


def broadcast_text(server: CablewayServer, n: int) -> None:
    # Rails-style publication: the data is the JSON encoding of the payload (here a string).
    status = server.broadcast(STREAM, json.dumps(text(n)), timeout=BROADCAST_TIMEOUT)
    assert status == 201, f"broadcast {n}: HTTP {status}"


def parse_id(last_event_id: str) -> tuple[int, str, str]:
    """``offset/epoch/stream`` (spec §10.2) → (offset, epoch, stream)."""
    offset, epoch, stream = last_event_id.split("/", 2)
    return int(offset), epoch, stream


def typed(client: NodeClient, type_: str) -> list[dict[str, Any]]:
    return [json.loads(ev["data"]) for ev in client.find("typed", type=type_)]


def close_and_wait_idle(client: NodeClient) -> dict[str, Any]:
    """es.close(), then the Node process must exit by itself: nothing (no retry timer, no
    request) is left scheduled."""
    client.command("close")
    assert client.wait_exit() == 0
    return client.wait_for("idle_exit")


def drop_and_resume(
    client: NodeClient,
    broadcast: Callable[[int], None],
    *,
    cut: Callable[[], None],
    restore: Callable[[], None],
    after_restore: Callable[[int], None] = lambda _round: None,
) -> tuple[int, list[str]]:
    """DROPS times: the network fails (``cut``) while broadcasts flow, more is published
    while the client is away, then it may reconnect (``restore``) and must get
    ``confirm_history`` (``after_restore`` gets the round, from 1); then AFTER_RESTORE more
    are published and the last is waited for. Returns (messages published, the last
    event id the client saw before each drop)."""
    published = 0
    last_ids_before_drop: list[str] = []
    for round_no in range(1, DROPS + 1):
        broadcaster = Broadcaster(
            broadcast, published + 1, published + BEFORE_DROP, per_call_timeout=BROADCAST_TIMEOUT
        )
        client.wait_for("message", data=text(published + DROP_AFTER))
        cut()
        client.wait_count("error", round_no, ready_state=CONNECTING)
        broadcaster.join()
        published += BEFORE_DROP
        last_ids_before_drop.append(client.find("message")[-1]["last_event_id"])

        for n in range(published + 1, published + WHILE_AWAY + 1):
            broadcast(n)
        published += WHILE_AWAY
        restore()
        client.wait_count("typed", round_no, type="confirm_history", timeout=RECONNECT_TIMEOUT)
        after_restore(round_no)

    total = published + AFTER_RESTORE
    for n in range(published + 1, total + 1):
        broadcast(n)
    client.wait_for("message", data=text(total))
    return total, last_ids_before_drop


def assert_resumed_exactly_once(
    client: NodeClient, total: int, last_ids_before_drop: list[str], idle: dict[str, Any]
) -> None:
    """What the application saw after DROPS drops (every message 1..total once, in order, one
    epoch), and how (each successful reconnection carried the last id seen before its drop;
    one ``confirm_history`` per drop, no rejection, no error that closed the source)."""
    # What the application saw: every message exactly once, in order.
    messages = client.find("message")
    assert [m["data"] for m in messages] == [text(n) for n in range(1, total + 1)]
    ids = [parse_id(m["last_event_id"]) for m in messages]
    assert [i[0] for i in ids] == list(range(1, total + 1)), ids
    assert len({i[1] for i in ids}) == 1
    assert {i[2] for i in ids} == {STREAM}

    # How: each successful reconnection carried the last id seen before the drop.
    ok_requests = [r["request"] for r in client.find("response") if r["status"] == 200]
    assert len(ok_requests) == DROPS + 1, client.find("response")
    requests = {r["request"]: r for r in client.find("request")}
    assert requests[ok_requests[0]]["last_event_id"] is None
    for round_no in range(1, DROPS + 1):
        sent_id = requests[ok_requests[round_no]]["last_event_id"]
        assert sent_id == last_ids_before_drop[round_no - 1], (round_no, sent_id)
    assert not client.find("error", ready_state=CLOSED), "a network drop must not close it"
    assert len(typed(client, "confirm_history")) == DROPS
    assert not client.find("typed", type="reject_history")
    assert idle["ready_state"] == CLOSED


def test_eventsource_receives_unwrapped_messages_and_needs_no_disconnect_event(
    cableway_factory: ServerFactory, sse_client: ClientFactory
) -> None:
    # Happy path, GET /events?stream=chat (public mode). Relies on: `onmessage` fires for events
    # without `event:` with `data` = the data lines joined by "\n" and `lastEventId` = the `id:`;
    # typed events only reach their listeners; `close()` ends everything on the client side.
    # Nothing else is needed to end a healthy session: no `disconnect` event, no error, no
    # reconnection, one request in all.
    server = cableway_factory("public")
    client = sse_client(url=f"{server.http_url}/events?stream={STREAM}", events=TYPED_EVENTS)
    client.wait_for("open")
    client.wait_for("typed", type="confirm_subscription")

    turbo_html = (
        '<turbo-stream action="append" target="messages">\n'
        "  <template><p>Hi</p></template>\n"
        "</turbo-stream>"
    )
    payloads: list[tuple[str, Any]] = [
        ("hello", "hello"),
        (turbo_html, turbo_html),  # multi-line: several data: lines, joined back with "\n"
        ({"n": 3, "text": "not a string"}, None),  # non-string JSON: data is its JSON text
    ]
    for data, _ in payloads:
        assert server.broadcast(STREAM, json.dumps(data)) == 201
    messages = client.wait_count("message", len(payloads))

    assert messages[0]["data"] == "hello"
    assert messages[1]["data"] == turbo_html
    assert json.loads(messages[2]["data"]) == {"n": 3, "text": "not a string"}
    ids = [parse_id(m["last_event_id"]) for m in messages]
    assert [i[0] for i in ids] == [1, 2, 3], ids
    assert {i[2] for i in ids} == {STREAM}
    assert len({i[1] for i in ids}) == 1
    assert ids[0][1]

    welcome = typed(client, "welcome")
    assert len(welcome) == 1
    assert welcome[0]["type"] == "welcome"
    confirm = typed(client, "confirm_subscription")
    assert confirm == [
        {
            "type": "confirm_subscription",
            "identifier": json.dumps(
                {"channel": "$pubsub", "stream_name": STREAM}, separators=(",", ":")
            ),
        }
    ]
    client.command("state")
    assert client.find("done", op="state")[0]["ready_state"] == OPEN

    idle = close_and_wait_idle(client)
    assert idle["requests"] == 1
    assert idle["ready_state"] == CLOSED
    assert not client.find("error"), "a healthy session must not see an error event"
    assert not client.find("typed", type="disconnect")
    assert not client.find("typed", type="confirm_history")
    assert len(client.find("request")) == 1
    assert client.find("response")[0]["status"] == 200
    assert client.find("response")[0]["content_type"].startswith("text/event-stream")
    assert len(client.find("message")) == len(payloads)
    assert server.error_lines() == []


def test_eventsource_loses_nothing_when_the_network_drops_mid_stream(
    cableway_factory: ServerFactory, tcp_proxy: ProxyFactory, sse_client: ClientFactory
) -> None:
    # GET /events?stream=chat through a proxy that the test cuts (RST both ways: the response just
    # dies) while broadcasts flow, then keeps refusing connections while more are published.
    # Relies on: `error` + reconnection by EventSource itself after its retry time, with
    # `Last-Event-ID: <last id:>`; the server replays what follows that id (then
    # `event: confirm_history`) — so `onmessage` sees every message exactly once, in order.
    server = cableway_factory("public")
    proxy = tcp_proxy(server.port)
    client = sse_client(
        url=f"http://127.0.0.1:{proxy.port}/events?stream={STREAM}", events=TYPED_EVENTS
    )
    client.wait_for("typed", type="confirm_subscription")

    total, last_ids_before_drop = drop_and_resume(
        client, lambda n: broadcast_text(server, n), cut=proxy.cut, restore=proxy.restore
    )
    idle = close_and_wait_idle(client)

    assert_resumed_exactly_once(client, total, last_ids_before_drop, idle)
    assert server.error_lines() == []


@pytest.mark.parametrize("token_kind", ["missing", "expired", "bad_signature"])
def test_eventsource_stops_for_good_on_401(
    cableway_factory: ServerFactory, sse_client: ClientFactory, token_kind: str
) -> None:
    # --enforce_jwt: no/expired/forged `?jid=` → `401` (spec §10.1 step 5). Relies on: a non-200
    # response fails the connection (WHATWG "fail the connection"): one `error` event with
    # readyState CLOSED and no retry. control "none": the Node process reads no stdin, so it exits
    # by itself ("idle_exit") only if the EventSource left no timer or request behind.
    server = cableway_factory("enforced_jwt_public_streams")
    url = f"{server.http_url}/events?stream={STREAM}"
    if token_kind == "expired":
        url += "&jid=" + server.token({"user_id": 1}, exp=int(time.time()) - 60)
    elif token_kind == "bad_signature":
        token = server.token({"user_id": 1}, exp=int(time.time()) + 300)
        url += "&jid=" + token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    client = sse_client(url=url, events=TYPED_EVENTS, control="none")

    assert client.wait_exit() == 0
    idle = client.wait_for("idle_exit")
    assert idle["requests"] == 1, "EventSource must not retry after a 401"
    assert idle["ready_state"] == CLOSED
    [response] = client.find("response")
    assert response["status"] == 401
    [error] = client.find("error")
    assert error["code"] == 401
    assert error["ready_state"] == CLOSED
    assert not client.find("open")
    assert not client.find("typed")
    assert not client.find("message")


def test_eventsource_with_a_valid_token_opens(
    cableway_factory: ServerFactory, sse_client: ClientFactory
) -> None:
    # Control for the 401 test: the same server and URL with a valid `?jid=` is a 200
    # text/event-stream that confirms the subscription and delivers broadcasts.
    server = cableway_factory("enforced_jwt_public_streams")
    token = server.token({"user_id": 1}, exp=int(time.time()) + 300)
    client = sse_client(
        url=f"{server.http_url}/events?stream={STREAM}&jid={token}", events=TYPED_EVENTS
    )
    client.wait_for("typed", type="confirm_subscription")
    broadcast_text(server, 1)
    assert client.wait_for("message")["data"] == text(1)
    idle = close_and_wait_idle(client)
    assert idle["requests"] == 1
    assert not client.find("error")
