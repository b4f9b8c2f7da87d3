from __future__ import annotations

import json

import pytest

from cableway.auth.jwt import encode_token
from cableway.protocol.channels import StreamPolicy, resolve_stream
from cableway.protocol.handshake import (
    Accepted,
    AuthPolicy,
    Rejected,
    authenticate,
    find_token,
    parse_query,
    ping_settings,
    request_sid,
    select_subprotocol,
)

from .helpers import turbo_identifier

KEY = "jwt-secret-of-at-least-thirty-two-bytes!"
NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["actioncable-v1-json", "actioncable-unsupported"], "actioncable-v1-json"),
        (["actioncable-v1-ext-json"], "actioncable-v1-ext-json"),
        (["actioncable-v1-ext-json", "actioncable-v1-json"], "actioncable-v1-json"),
        (["actioncable-unsupported"], None),
        ([], None),
    ],
)
def test_subprotocol_follows_server_preference(offered: list[str], chosen: str | None) -> None:
    assert select_subprotocol(offered) == chosen


def test_token_precedence_header_then_subprotocol_then_query() -> None:
    query = {"jid": "from-query"}
    protos = ["actioncable-v1-json", "anycable-token.from-proto"]
    assert (
        find_token(headers={"x-jid": "from-header"}, query=query, subprotocols=protos, param="jid")
        == "from-header"
    )
    assert find_token(headers={}, query=query, subprotocols=protos, param="jid") == "from-proto"
    assert find_token(headers={}, query=query, subprotocols=[], param="jid") == "from-query"
    assert find_token(headers={"x-token": "t"}, query={}, subprotocols=[], param="token") == "t"
    assert find_token(headers={}, query={"jid": ""}, subprotocols=[], param="jid") is None


def test_authenticate_outcomes() -> None:
    policy = AuthPolicy(jwt_secret=KEY)
    good = encode_token({"user_id": 42}, KEY, exp=NOW + 60)
    assert authenticate(good, sid="s", policy=policy, now=NOW) == Accepted('{"user_id":42}')
    expired = encode_token({"user_id": 42}, KEY, exp=NOW - 1)
    assert authenticate(expired, sid="s", policy=policy, now=NOW) == Rejected(
        "token_expired", ""
    ) or isinstance(authenticate(expired, sid="s", policy=policy, now=NOW), Rejected)
    assert authenticate(expired, sid="s", policy=policy, now=NOW).reason == "token_expired"  # type: ignore[union-attr]
    forged = encode_token({"user_id": 42}, "another-secret-of-thirty-two-bytes!!", exp=NOW + 60)
    assert authenticate(forged, sid="s", policy=policy, now=NOW).reason == "unauthorized"  # type: ignore[union-attr]
    assert authenticate("garbage", sid="s", policy=policy, now=NOW).reason == "unauthorized"  # type: ignore[union-attr]
    assert authenticate(None, sid="s1", policy=policy, now=NOW) == Accepted('{"sid":"s1"}')
    enforced = AuthPolicy(jwt_secret=KEY, enforce_jwt=True)
    assert authenticate(None, sid="s", policy=enforced, now=NOW).reason == "unauthorized"  # type: ignore[union-attr]
    assert authenticate("anything", sid="s2", policy=AuthPolicy(), now=NOW) == Accepted(
        '{"sid":"s2"}'
    )


def test_ping_query_overrides_and_garbage() -> None:
    assert ping_settings(parse_query("pi=1&ptp=ms"), interval=3, precision="s") == (1.0, "ms")
    assert ping_settings(parse_query("pi=0"), interval=3, precision="s") == (0.0, "s")
    assert ping_settings(parse_query("pi=-1&ptp=weeks"), interval=3, precision="s") == (3, "s")
    assert ping_settings(parse_query("pi=%FF%00&ptp"), interval=3, precision="s") == (3, "s")
    assert ping_settings(parse_query("pi=99999999999"), interval=3, precision="s") == (3, "s")
    assert parse_query("a=1&" * 1000) == {}
    assert parse_query("jid=a&jid=b") == {"jid": "b"}


def test_request_sid_sanitises_x_request_id() -> None:
    assert request_sid("req-123", "fresh") == "req-123"
    assert request_sid('bad"id', "fresh") == "fresh"
    assert request_sid("x" * 65, "fresh") == "fresh"
    assert request_sid(None, "fresh") == "fresh"


def test_resolve_stream_rules() -> None:
    signed_policy = StreamPolicy(
        streams_secret="streams", turbo_streams=True, turbo_secret="s3Krit"
    )
    assert resolve_stream(turbo_identifier("chat/2023"), signed_policy) == "chat/2023"
    assert resolve_stream(turbo_identifier("chat/2023", "other"), signed_policy) is None
    pubsub = json.dumps({"channel": "$pubsub", "signed_stream_name": turbo_identifier("x")})
    assert resolve_stream(pubsub, signed_policy) is None
    from cableway.auth.signed_streams import sign_stream_name

    signed = sign_stream_name("news", "streams")
    assert (
        resolve_stream(
            json.dumps({"channel": "$pubsub", "signed_stream_name": signed}), signed_policy
        )
        == "news"
    )
    plain = json.dumps({"channel": "$pubsub", "stream_name": "news"})
    assert resolve_stream(plain, signed_policy) is None
    assert resolve_stream(plain, StreamPolicy(public_streams=True)) == "news"
    both = json.dumps(
        {"channel": "$pubsub", "stream_name": "news", "signed_stream_name": "bad--sig"}
    )
    assert resolve_stream(both, StreamPolicy(public_streams=True, streams_secret="streams")) is None
    cleartext = StreamPolicy(turbo_streams=True, turbo_cleartext=True)
    clear_id = json.dumps({"channel": "Turbo::StreamsChannel", "signed_stream_name": "chat_42"})
    assert resolve_stream(clear_id, cleartext) == "chat_42"
    assert resolve_stream(clear_id, StreamPolicy(turbo_streams=True)) is None
    assert resolve_stream(clear_id, StreamPolicy()) is None
    for garbage in [
        "",
        "nope",
        "[]",
        '{"channel":5}',
        '{"channel":"Other"}',
        '{"channel":"Turbo::StreamsChannel","signed_stream_name":5}',
    ]:
        assert resolve_stream(garbage, signed_policy) is None
