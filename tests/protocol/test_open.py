"""The open sequences both drivers share: WebSocket (handshake) and SSE request mapping."""

from __future__ import annotations

import json

import pytest

from cableway.auth.jwt import encode_token
from cableway.protocol.broker import SessionSnapshot
from cableway.protocol.channels import StreamPolicy
from cableway.protocol.connection import CableConnection, SessionSettings, SessionState
from cableway.protocol.events import CloseConnection, SendMessage
from cableway.protocol.handshake import (
    Accepted,
    AuthPolicy,
    Rejected,
    Restored,
    WebSocketOpen,
    identify,
    websocket_open,
)
from cableway.protocol.sse import Refusal, SseOpen, cors_headers, sse_connection, sse_open

KEY = "jwt-secret-of-at-least-thirty-two-bytes!"
NOW = 1_700_000_000.0
PUBLIC = StreamPolicy(public_streams=True)


def _ws(
    headers: dict[str, str] | None = None, query: str = "", protos: tuple[str, ...] = ()
) -> WebSocketOpen:
    return websocket_open(
        headers=headers or {},
        query=query,
        subprotocols=list(protos),
        fresh_sid="fresh",
        jwt_param="jid",
        ping_interval=3.0,
        ping_precision="s",
    )


def _core(sid: str = "fresh") -> CableConnection:
    return CableConnection(sid=sid, settings=SessionSettings(policy=PUBLIC), now=0.0)


def _messages(core: CableConnection) -> list[dict[str, object]]:
    return [json.loads(e.text) for e in core.events() if isinstance(e, SendMessage)]


# -- WebSocket ---------------------------------------------------------------------------


def test_websocket_open_defaults() -> None:
    opening = _ws()
    assert opening == WebSocketOpen(
        subprotocol=None,
        sid="fresh",
        ping_interval=3.0,
        ping_precision="s",
        token=None,
        restore_sid=None,
    )
    assert not opening.extended


def test_websocket_open_reads_query_headers_and_subprotocols() -> None:
    opening = _ws(
        {"x-request-id": "req-1", "x-jid": "from-header"},
        "pi=7&ptp=ms&jid=from-query",
        ("actioncable-v1-json", "anycable-token.from-proto"),
    )
    assert opening.subprotocol == "actioncable-v1-json"
    assert opening.sid == "req-1"
    assert (opening.ping_interval, opening.ping_precision) == (7.0, "ms")
    assert opening.token == "from-header"
    assert _ws({}, "jid=q", ("anycable-token.p",)).token == "p"
    assert _ws({}, "jid=q").token == "q"
    assert _ws({"x-request-id": "bad id!"}).sid == "fresh"


def test_restore_sid_only_with_the_extended_protocol() -> None:
    ext = ("actioncable-v1-ext-json",)
    assert _ws({"x-anycable-restore-sid": "old"}, "sid=q", ext).restore_sid == "old"
    assert _ws({}, "sid=q", ext).restore_sid == "q"
    assert _ws({"x-anycable-restore-sid": ""}, "", ext).restore_sid is None
    assert _ws({}, "sid=q", ext).extended
    v1 = ("actioncable-v1-json", "actioncable-v1-ext-json")
    assert _ws({"x-anycable-restore-sid": "old"}, "sid=q", v1).restore_sid is None


def test_identify_accepts_anonymous_and_jwt() -> None:
    core = _core()
    assert identify(core, _ws(), None, policy=AuthPolicy(), now=0.0, unix_time=NOW) == (
        Accepted('{"sid":"fresh"}')
    )
    assert core.state is SessionState.OPEN
    assert _messages(core)[0]["type"] == "welcome"

    token = encode_token({"user_id": 42}, KEY, exp=NOW + 60)
    core = _core()
    outcome = identify(
        core, _ws(query=f"jid={token}"), None, policy=AuthPolicy(KEY), now=0.0, unix_time=NOW
    )
    assert outcome == Accepted('{"user_id":42}')
    assert core.identifiers == '{"user_id":42}'


def test_identify_rejects_and_queues_the_close() -> None:
    token = encode_token({"user_id": 42}, KEY, exp=NOW - 1)
    core = _core()
    outcome = identify(
        core, _ws(query=f"jid={token}"), None, policy=AuthPolicy(KEY), now=0.0, unix_time=NOW
    )
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "token_expired"
    events = core.events()
    assert any(isinstance(e, CloseConnection) for e in events)
    text = [e.text for e in events if isinstance(e, SendMessage)]
    assert json.loads(text[0])["reason"] == "token_expired"


def test_identify_restores_without_authenticating() -> None:
    opening = _ws({"x-anycable-restore-sid": "old"}, "", ("actioncable-v1-ext-json",))
    identifier = json.dumps({"channel": "$pubsub", "stream_name": "chat"})
    snapshot = SessionSnapshot('{"user_id":7}', ((identifier, "chat"),))
    core = _core()
    # an enforced policy without a token would reject: the snapshot wins
    policy = AuthPolicy(KEY, enforce_jwt=True)
    outcome = identify(core, opening, snapshot, policy=policy, now=5.0, unix_time=NOW)
    assert outcome == Restored("old")
    assert core.identifiers == '{"user_id":7}'
    assert identifier in core.subscriptions
    assert _messages(core)[0]["restored_ids"] == [identifier]
    # no snapshot found: authenticate as usual
    core = _core()
    outcome = identify(core, opening, None, policy=policy, now=5.0, unix_time=NOW)
    assert outcome == Rejected("unauthorized", "no token")


# -- SSE ---------------------------------------------------------------------------------


def _sse(
    method: str = "GET",
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    policy: AuthPolicy | None = None,
) -> SseOpen | Refusal:
    return sse_open(
        method,
        query=query,
        headers=headers or {},
        body=body,
        fresh_sid="fresh",
        policy=policy or AuthPolicy(),
        jwt_param="jid",
        ping_interval=3.0,
        ping_precision="s",
        max_size=1024,
        unix_time=NOW,
    )


def test_sse_get_maps_the_query() -> None:
    opening = _sse("GET", "stream=chat&pi=9&ptp=ns&raw=TRUE&history_since=5")
    assert opening == SseOpen(
        sid="fresh",
        identifiers='{"sid":"fresh"}',
        commands=(
            {
                "command": "subscribe",
                "identifier": '{"channel":"$pubsub","stream_name":"chat"}',
                "history": {"since": 5},
            },
        ),
        unwrap=True,
        raw=True,
        ping_interval=9.0,
        ping_precision="ns",
    )


def test_sse_get_last_event_id_and_no_history() -> None:
    opening = _sse("GET", "channel=Chat", {"last-event-id": "3/ep/s1", "x-request-id": "r"})
    assert isinstance(opening, SseOpen)
    assert opening.sid == "r"
    assert opening.raw is False
    assert opening.commands == (
        {
            "command": "subscribe",
            "identifier": '{"channel":"Chat"}',
            "history": {"streams": {"s1": {"epoch": "ep", "offset": 3}}},
        },
    )
    plain = _sse("GET", "channel=Chat")
    assert isinstance(plain, SseOpen)
    assert "history" not in plain.commands[0]


@pytest.mark.parametrize(
    ("method", "query", "headers", "body", "status", "text"),
    [
        ("GET", "", {}, b"", 400, b"Bad Request: no channel"),
        ("GET", "stream=x&history_since=-1", {}, b"", 400, b"Bad Request: history_since"),
        ("GET", "stream=x", {"last-event-id": "x/e/s"}, b"", 400, b"Bad Request: Last-Event"),
        ("POST", "", {}, b"[1]", 400, b"Bad Request: SSE command is not a JSON object"),
        ("POST", "", {}, b"x" * 2000, 400, b"Bad Request: SSE request body too large"),
    ],
)
def test_sse_bad_requests(
    method: str, query: str, headers: dict[str, str], body: bytes, status: int, text: bytes
) -> None:
    refusal = _sse(method, query, headers, body)
    assert isinstance(refusal, Refusal)
    assert refusal.status == status
    assert refusal.body.startswith(text)


def test_sse_post_maps_json_lines_and_drops_null_history() -> None:
    body = b'{"identifier":"a","history":null}\n\n{"identifier":"b","history":{"since":1}}\n'
    opening = _sse("POST", "stream=ignored", body=body)
    assert isinstance(opening, SseOpen)
    assert opening.unwrap is False
    assert opening.raw is False
    assert opening.commands == (
        {"command": "subscribe", "identifier": "a"},
        {"command": "subscribe", "identifier": "b", "history": {"since": 1}},
    )


def test_sse_authentication() -> None:
    enforced = AuthPolicy(KEY, enforce_jwt=True)
    assert _sse("GET", "stream=x", policy=enforced) == Refusal(401, b"Unauthorized")
    token = encode_token({"user_id": 1}, KEY, exp=NOW + 60)
    opening = _sse("GET", f"stream=x&jid={token}", policy=enforced)
    assert isinstance(opening, SseOpen)
    assert opening.identifiers == '{"user_id":1}'
    by_header = _sse("GET", "stream=x", {"x-jid": token}, policy=enforced)
    assert isinstance(by_header, SseOpen)
    expired = encode_token({"user_id": 1}, KEY, exp=NOW - 1)
    assert _sse("GET", f"stream=x&jid={expired}", policy=enforced) == Refusal(401, b"Unauthorized")


def test_sse_connection_subscribes_or_refuses() -> None:
    opening = _sse("GET", "stream=chat")
    assert isinstance(opening, SseOpen)
    core = sse_connection(
        opening, settings=SessionSettings(policy=PUBLIC), now=0.0, ping_jitter=0.0
    )
    assert isinstance(core, CableConnection)
    assert core.sid == "fresh"
    assert opening.commands[0]["identifier"] in core.subscriptions
    kinds = [m.get("type") for m in _messages(core)]
    assert kinds[:2] == ["welcome", "confirm_subscription"]

    # public streams off and a bad signature: the subscription is rejected
    refused = _sse("GET", "turbo_signed_stream_name=forged")
    assert isinstance(refused, SseOpen)
    assert sse_connection(
        refused, settings=SessionSettings(policy=StreamPolicy()), now=0.0, ping_jitter=0.0
    ) == Refusal(400, b"Bad Request: subscription rejected")


def test_cors_headers() -> None:
    anyone = dict(cors_headers("https://a.example", ()))
    assert anyone[b"access-control-allow-origin"] == b"*"
    assert b"access-control-allow-credentials" not in anyone
    allowed = dict(cors_headers("https://a.example", ("a.example",)))
    assert allowed[b"access-control-allow-origin"] == b"https://a.example"
    assert allowed[b"access-control-allow-credentials"] == b"true"
    assert allowed[b"vary"] == b"Origin"
    for origin in ("https://b.example", None, "https://a.example, https://a.example"):
        assert b"access-control-allow-origin" not in dict(cors_headers(origin, ("a.example",)))
