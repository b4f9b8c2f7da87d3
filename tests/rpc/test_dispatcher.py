"""cableway.channels: the dispatcher answers the spec's requests as AnyCable-Go expects
(rpc.md §5, the §7.3 vectors with the §7.4 lessons applied)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from cableway.channels import Application, Channel, Connection
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
)
from cableway.testing import capture_broadcasts
from tests.toolkit.stub_http import closed_port

from .chat import HEADERS, IDENT, KEY, SPEC_HEADERS, URL, GoSession, call, make_app

ENV = {"url": URL, "headers": HEADERS}
IDS = '{"user":"alice"}'


@pytest.fixture
def events() -> list[Any]:
    return []


@pytest.fixture
def app(events: list[Any]) -> Application:
    return make_app(events)


def command(
    app: Application, command: str, identifier: str = IDENT, data: Any = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "command": command,
        "identifier": identifier,
        "connection_identifiers": IDS,
        "env": {**ENV, "cstate": {"visits": "1"}},
    }
    if data is not None:
        body["data"] = json.dumps(data)
    body.update(extra)
    status, answer = call(app, "/_anycable/command", json.dumps(body))
    assert status == 200
    return answer  # type: ignore[no-any-return]


# -- Connect ----------------------------------------------------------------------------


def test_v1_connect_accepted(app: Application, events: list[Any]) -> None:
    status, body = call(app, "/_anycable/connect", json.dumps({"env": ENV}))
    assert status == 200
    assert body == {
        "status": 1,
        "identifiers": IDS,
        "transmissions": ['{"type":"welcome","sid":"s1d-test"}'],
        "env": {"cstate": {"visits": "1"}},
    }
    assert events[0][1:3] == ({"_session_id": "abc"}, "127.0.0.1")


def test_v2_connect_rejected_says_do_not_reconnect(app: Application) -> None:
    status, body = call(
        app,
        "/_anycable/connect",
        json.dumps({"env": {**ENV, "url": "http://localhost:8080/cable"}}),
    )
    assert status == 200
    assert body == {
        "status": 2,
        "transmissions": ['{"type":"disconnect","reason":"unauthorized","reconnect":false}'],
    }


def test_v15_connect_without_sid_omits_it_from_the_welcome(app: Application) -> None:
    headers = [h for h in SPEC_HEADERS if h[0] != "x-anycable-meta-sid"]
    _, body = call(app, "/_anycable/connect", json.dumps({"env": ENV}), headers)
    assert body["transmissions"] == ['{"type":"welcome"}']


def test_connect_default_accepts_with_empty_identifiers() -> None:
    _, body = call(Application(secret="secret"), "/_anycable/connect", json.dumps({"env": ENV}))
    assert body["status"] == 1
    assert body["identifiers"] == "{}"


# -- Command ----------------------------------------------------------------------------


def test_v3_subscribe_accepted(app: Application) -> None:
    body = command(app, "subscribe")
    assert body == {
        "status": 1,
        "streams": ["room:42"],
        "transmissions": [
            json.dumps({"type": "confirm_subscription", "identifier": IDENT}, separators=(",", ":"))
        ],
    }


def test_v4_subscribe_rejected_keeps_no_stream(app: Application) -> None:
    identifier = '{"channel":"chat"}'
    body = command(app, "subscribe", identifier)
    assert body == {
        "status": 2,
        "transmissions": [
            '{"type":"reject_subscription","identifier":' + json.dumps(identifier) + "}"
        ],
    }


def test_v5b_action_transmits_and_broadcasts(app: Application) -> None:
    with capture_broadcasts() as broadcasts:
        body = command(app, "message", data={"action": "speak", "message": "hi"})
    assert body["status"] == 1
    assert [json.loads(t) for t in body["transmissions"]] == [
        {"identifier": IDENT, "message": {"echo": "hi"}}
    ]
    assert broadcasts.on("room:42") == [{"message": "hi", "from": "alice"}]


def test_v5_a_failed_broadcast_does_not_lose_the_transmission(
    events: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    settings = IntegrationSettings(
        secret="s", http_broadcast_url=f"http://127.0.0.1:{port}/_broadcast"
    )
    app = make_app(events, settings=settings)
    with caplog.at_level(logging.ERROR, logger="cableway.integration"):
        body = command(app, "message", data={"action": "speak", "message": "hi"})
    assert body["status"] == 1
    assert [json.loads(t)["message"] for t in body["transmissions"]] == [{"echo": "hi"}]
    assert "broadcast" in caplog.text


def test_v6_state_is_returned_flat(app: Application) -> None:
    body = command(app, "message", data={"action": "remember", "message": "hi"})
    assert body == {"status": 1, "env": {"istate": {"last": "hi"}}}


def test_v16_state_comes_back_flat_and_only_changes_are_returned(app: Application) -> None:
    body = command(
        app,
        "message",
        data={"action": "remember", "message": "again"},
        env={**ENV, "cstate": {"visits": "1"}, "istate": {"last": "hi"}},
    )
    assert body["env"] == {"istate": {"last": "again"}}
    same = command(
        app,
        "message",
        data={"action": "remember", "message": "hi"},
        env={**ENV, "istate": {"last": "hi"}},
    )
    assert "env" not in same


def test_v7_stop_stream(app: Application) -> None:
    assert command(app, "message", data={"action": "leave"}) == {
        "status": 1,
        "stopped_streams": ["room:42"],
    }


def test_v8_unknown_action_is_an_error(app: Application) -> None:
    body = command(app, "message", data={"action": "nope"})
    assert body["status"] == 0
    assert "unknown action 'nope'" in body["error_msg"]


@pytest.mark.parametrize(
    "action",
    [
        "subscribed",
        "unsubscribed",
        "__init__",
        "__class__",
        "__init_subclass__",
        "_helper",
        "static_one",
        "stream_from",
        "stop_all_streams",
        "transmit",
        "broadcast",
        "reject",
        "action_names",
        "connection",
        "istate",
        "receive",
        "",
    ],
)
def test_only_public_methods_of_the_subclass_are_actions(
    app: Application, events: list[Any], action: str
) -> None:
    body = command(app, "message", data={"action": action, "stream": "x"})
    assert body["status"] == 0
    assert "unknown action" in body["error_msg"]
    assert events == []


def test_action_name_must_be_a_string_and_data_an_object(app: Application) -> None:
    assert command(app, "message", data={"action": ["speak"]})["status"] == 0
    assert command(app, "message", data=["speak"])["status"] == 0
    body = {
        "command": "message",
        "identifier": IDENT,
        "connection_identifiers": IDS,
        "data": "{not json",
        "env": ENV,
    }
    assert call(app, "/_anycable/command", json.dumps(body))[1]["status"] == 0


def test_the_action_list_is_what_the_subclass_defines(app: Application) -> None:
    assert app.channels["chat"].action_names() == {
        "speak",
        "remember",
        "recall",
        "leave",
        "visit",
        "typing",
        "crash",
    }


def test_v9_unsubscribe_stops_all_streams_and_runs_the_callback(
    app: Application, events: list[Any]
) -> None:
    body = command(app, "unsubscribe")
    assert body == {"status": 1, "stop_streams": True}
    assert events == [("unsubscribed", {"room": "42"}, {})]


def test_v10_subscribe_without_connection_identifiers(app: Application) -> None:
    body = {"command": "subscribe", "identifier": IDENT, "env": ENV}
    status, answer = call(app, "/_anycable/command", json.dumps(body))
    assert (status, answer["status"], answer["streams"]) == (200, 1, ["room:42"])


def test_cstate_changes_from_a_channel(app: Application) -> None:
    body = command(
        app,
        "message",
        data={"action": "visit"},
        env={**ENV, "cstate": {"visits": "1", "gone": "x"}},
    )
    assert body["env"] == {"cstate": {"visits": "2", "gone": ""}}


def test_app_exception_is_a_200_error_without_details(
    app: Application, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="cableway.channels"):
        body = command(app, "message", data={"action": "crash"})
    assert body == {
        "status": 0,
        "error_msg": "KeyError in ChatChannel.crash (see the application log)",
    }
    assert "secret-internal-detail" in caplog.text  # the traceback is in the app's log only


def test_async_action_runs_under_the_sync_dispatcher(app: Application, events: list[Any]) -> None:
    with capture_broadcasts() as broadcasts:
        body = command(app, "message", data={"action": "typing"})
    assert body["status"] == 1
    assert broadcasts.on("room:42") == [{"typing": "alice"}]


def test_unknown_channels(app: Application) -> None:
    for identifier in ('{"channel":"Nope"}', "not json", '["chat"]', '{"channel":1}'):
        body = command(app, "subscribe", identifier)
        assert body["status"] == 2
        assert json.loads(body["transmissions"][0]) == {
            "type": "reject_subscription",
            "identifier": identifier,
        }
        assert command(app, "message", identifier, data={"action": "speak"})["status"] == 0
        assert command(app, "unsubscribe", identifier) == {"status": 1, "stop_streams": True}


def test_unknown_command_and_bad_identifiers_are_errors(app: Application) -> None:
    assert command(app, "perform")["status"] == 0
    assert command(app, "subscribe", connection_identifiers="[1]")["status"] == 0


# -- Disconnect -------------------------------------------------------------------------


def test_v11_disconnect_runs_unsubscribed_then_disconnect(
    app: Application, events: list[Any]
) -> None:
    body = {"identifiers": IDS, "subscriptions": [IDENT], "env": {**ENV, "cstate": {"visits": "1"}}}
    assert call(app, "/_anycable/disconnect", json.dumps(body)) == (200, {"status": 1})
    assert events == [("unsubscribed", {"room": "42"}, {}), ("disconnect", {"user": "alice"})]


def test_v17_disconnect_decodes_nested_istate(app: Application, events: list[Any]) -> None:
    istate = {IDENT: '{"last":"again"}'}
    body = {
        "identifiers": IDS,
        "subscriptions": [IDENT, '{"channel":"Nope"}'],
        "env": {**ENV, "istate": istate},
    }
    assert call(app, "/_anycable/disconnect", json.dumps(body)) == (200, {"status": 1})
    assert events[0] == ("unsubscribed", {"room": "42"}, {"last": "again"})


def test_a_failing_unsubscribed_does_not_skip_the_others() -> None:
    seen: list[str] = []

    class Bad(Channel):
        def unsubscribed(self) -> None:
            raise RuntimeError("x")

    class Good(Channel):
        def unsubscribed(self) -> None:
            seen.append("good")

    class Conn(Connection):
        def disconnect(self) -> None:
            seen.append("disconnect")

    app = Application(Conn, [Bad, Good], secret="secret")
    body = {"subscriptions": ['{"channel":"Bad"}', '{"channel":"Good"}'], "env": ENV}
    _, answer = call(app, "/_anycable/disconnect", json.dumps(body))
    assert seen == ["good", "disconnect"]
    assert answer == {
        "status": 0,
        "error_msg": "RuntimeError in Bad.unsubscribed (see the application log)",
    }


# -- HTTP-level outcomes (rpc.md §3.8) ---------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "bearer " + KEY, KEY])
def test_v12_wrong_or_missing_secret_is_401(app: Application, authorization: str | None) -> None:
    headers = [h for h in SPEC_HEADERS if h[0] != "authorization"]
    if authorization is not None:
        headers.append(("Authorization", authorization))
    assert call(app, "/_anycable/connect", json.dumps({"env": ENV}), headers) == (
        401,
        "Unauthorized",
    )


def test_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYCABLE_SECRET", "secret")
    monkeypatch.delenv("ANYCABLE_HTTP_RPC_SECRET", raising=False)
    assert call(Application(), "/x/connect", json.dumps({"env": ENV}))[0] == 200
    assert call(Application(), "/x/connect", json.dumps({"env": ENV}), [])[0] == 401
    monkeypatch.setenv("ANYCABLE_HTTP_RPC_SECRET", "other")
    assert call(Application(), "/x/connect", json.dumps({"env": ENV}))[0] == 401
    assert (
        call(
            Application(),
            "/x/connect",
            json.dumps({"env": ENV}),
            [("authorization", "Bearer other")],
        )[0]
        == 200
    )


def test_no_secret_means_no_check(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("ANYCABLE_SECRET", raising=False)
    monkeypatch.delenv("ANYCABLE_HTTP_RPC_SECRET", raising=False)
    with caplog.at_level(logging.WARNING, logger="cableway.channels"):
        app = Application()
    assert "no RPC secret" in caplog.text
    assert call(app, "/connect", json.dumps({"env": ENV}), [])[0] == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [("not json", 422), ("", 422), ("  ", 422), ('{"env":{"url":1}}', 422), ("[]", 422)],
)
def test_v13_bad_bodies_are_422(app: Application, body: str, status: int) -> None:
    code, text = call(app, "/_anycable/connect", body)
    assert code == status
    assert "Traceback" not in text


def test_v14_unknown_paths_are_404_and_other_methods_405(app: Application) -> None:
    assert call(app, "/_anycable/ping", "{}")[0] == 404
    assert call(app, "/_anycable/connect/", "{}")[0] == 404
    assert call(app, "/_anycable/connect", "{}", method="GET")[0] == 405


def test_unauthenticated_requests_learn_nothing_about_paths(app: Application) -> None:
    assert call(app, "/_anycable/ping", "{}", [])[0] == 401


# -- a whole session, state kept by a Go-like server ------------------------------------


def test_state_round_trips_through_the_server(app: Application, events: list[Any]) -> None:
    session = GoSession(app)
    assert session.connect().status == 1
    assert session.identifiers == IDS
    assert session.cstate == {"visits": "1"}
    session.command("subscribe")
    assert session.streams == {IDENT: {"room:42"}}
    session.command("message", data={"action": "remember", "message": "hi"})
    session.command("message", data={"action": "visit"})
    session.command("message", data={"action": "recall"})
    assert session.received[-1] == {"identifier": IDENT, "message": {"last": "hi", "visits": "2"}}
    session.command("message", data={"action": "remember", "message": "again"})
    session.command("message", data={"action": "leave"})
    assert session.streams == {IDENT: set()}
    assert session.disconnect().status == 1
    assert events[-2:] == [
        ("unsubscribed", {"room": "42"}, {"last": "again"}),
        ("disconnect", {"user": "alice"}),
    ]


def test_registry() -> None:
    class A(Channel):
        pass

    class B(Channel):
        channel_name = "b"

    app = Application(channels=[A, B], secret="x")
    assert set(app.channels) == {"A", "b"}
    assert Application(channels={"x": A}, secret="x").channels == {"x": A}
    with pytest.raises(ValueError, match="two channels"):
        app.register(B, name="A")
    with pytest.raises(TypeError):
        Application(channels=[object], secret="x")  # type: ignore[list-item]
    assert "secret" not in repr(app)
    assert "A" in repr(app)


# -- without HTTP ------------------------------------------------------------------------


async def test_process_answers_decoded_calls_in_process(events: list[Any]) -> None:
    app = make_app(events)
    env = Env(url=URL, headers=dict(HEADERS))
    connected = await app.process(ConnectionRequest(env), sid="abc")
    assert isinstance(connected, ConnectionResponse)
    assert connected.transmissions == ['{"type":"welcome","sid":"abc"}']
    with capture_broadcasts() as broadcasts:
        answer = await app.process(
            CommandMessage("message", IDENT, connected.identifiers, '{"action":"typing"}', env)
        )
    assert answer.status is Status.SUCCESS
    assert broadcasts.on("room:42") == [{"typing": "alice"}]
    gone = await app.process(DisconnectRequest(connected.identifiers, [IDENT], env))
    assert gone == DisconnectResponse(Status.SUCCESS)
    assert events[-1] == ("disconnect", {"user": "alice"})
    with pytest.raises(TypeError):
        await app.process(CommandResponse())  # type: ignore[arg-type]
