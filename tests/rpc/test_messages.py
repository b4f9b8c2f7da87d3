"""cableway.rpc: the RPC messages as AnyCable-Go writes and reads them (rpc.md §2, §6, §7)."""

from __future__ import annotations

import json

import pytest

from cableway.rpc import (
    CommandMessage,
    CommandResponse,
    ConnectionRequest,
    ConnectionResponse,
    DecodeError,
    DisconnectRequest,
    DisconnectResponse,
    Env,
    EnvResponse,
    PresenceResponse,
    Status,
    decode_disconnect_istate,
    encode_disconnect_istate,
    merge_state,
    state_changes,
)

URL = "http://localhost:8080/cable?user=alice"
HEADERS = {"cookie": "_session_id=abc", "REMOTE_ADDR": "127.0.0.1"}
ENV_JSON = '"env":{"url":"http://localhost:8080/cable?user=alice","headers":{"REMOTE_ADDR":"127.0.0.1","cookie":"_session_id=abc"}'
IDENT = '{"channel":"chat","room":"42"}'
IDENT_JSON = json.dumps(IDENT)
IDS = '{"user":"alice"}'


# -- spec §6: the bodies the server sends, byte for byte (Go's encoding of the structs) ---


def test_connect_request_is_the_go_body() -> None:
    body = ConnectionRequest(Env(url=URL, headers=HEADERS)).to_json()
    assert body == "{" + ENV_JSON + "}}"


def test_subscribe_request_is_the_go_body() -> None:
    message = CommandMessage(
        command="subscribe",
        identifier=IDENT,
        connection_identifiers=IDS,
        env=Env(url=URL, headers=HEADERS, cstate={"visits": "1"}),
    )
    assert message.to_json() == (
        '{"command":"subscribe","identifier":'
        + IDENT_JSON
        + ',"connection_identifiers":'
        + json.dumps(IDS)
        + ","
        + ENV_JSON
        + ',"cstate":{"visits":"1"}}}'
    )


def test_message_request_carries_data_and_flat_istate() -> None:
    message = CommandMessage(
        command="message",
        identifier=IDENT,
        connection_identifiers=IDS,
        data='{"action":"speak","message":"hi"}',
        env=Env(url=URL, headers=HEADERS, cstate={"visits": "1"}, istate={"last": "hi"}),
    )
    assert message.to_json() == (
        '{"command":"message","identifier":'
        + IDENT_JSON
        + ',"connection_identifiers":'
        + json.dumps(IDS)
        + ',"data":'
        + json.dumps('{"action":"speak","message":"hi"}')
        + ","
        + ENV_JSON
        + ',"cstate":{"visits":"1"},"istate":{"last":"hi"}}}'
    )


def test_disconnect_request_nests_istate_per_identifier() -> None:
    request = DisconnectRequest(
        identifiers=IDS,
        subscriptions=[IDENT],
        env=Env(
            url=URL,
            headers=HEADERS,
            cstate={"visits": "1"},
            istate=encode_disconnect_istate({IDENT: {"last": "hi"}}),
        ),
    )
    assert request.to_json() == (
        '{"identifiers":'
        + json.dumps(IDS)
        + ',"subscriptions":['
        + IDENT_JSON
        + "],"
        + ENV_JSON
        + ',"cstate":{"visits":"1"},"istate":{'
        + IDENT_JSON
        + ":"
        + json.dumps('{"last":"hi"}')
        + "}}}"
    )


def test_empty_fields_are_omitted_as_go_does() -> None:
    # no connection_identifiers (identifiers ""), no data, no state (rpc.md §2.6)
    body = json.loads(
        CommandMessage(command="subscribe", identifier=IDENT, env=Env(url=URL)).to_json()
    )
    assert body == {"command": "subscribe", "identifier": IDENT, "env": {"url": URL}}
    assert json.loads(DisconnectRequest(env=Env(url=URL)).to_json()) == {"env": {"url": URL}}


def test_requests_round_trip() -> None:
    message = CommandMessage(
        "message", IDENT, IDS, '{"action":"x"}', Env(URL, HEADERS, {"a": "1"}, {"b": "2"})
    )
    assert CommandMessage.from_json(message.to_bytes()) == message
    request = DisconnectRequest(IDS, [IDENT, "other"], Env(URL, HEADERS, {}, {IDENT: "{}"}))
    assert DisconnectRequest.from_json(request.to_json()) == request
    assert (
        ConnectionRequest.from_json(ConnectionRequest(Env(URL, HEADERS)).to_json()).env.url == URL
    )


def test_a_request_without_optional_fields_decodes_with_defaults() -> None:
    # V10: Go omits connection_identifiers when the identifiers are ""
    message = CommandMessage.from_json('{"command":"subscribe","identifier":"x","env":{"url":"u"}}')
    assert message.connection_identifiers == ""
    assert message.data == ""
    assert message.env.cstate == {}
    assert message.env.istate == {}
    assert DisconnectRequest.from_json("{}").subscriptions == []


# -- spec §7.3: the answers of @anycable/serverless-js, as the server decodes them ---------

V1 = r'{"status":1,"identifiers":"{\"user\":\"alice\"}","transmissions":["{\"type\":\"welcome\",\"sid\":\"s1d-test\"}"],"error_msg":"","env":{"cstate":{"visits":"1"}}}'
V2 = r'{"status":2,"identifiers":"","transmissions":["{\"type\":\"disconnect\",\"reason\":\"unauthorized\"}"],"error_msg":"Auth failed","env":{}}'
V3 = r'{"status":1,"disconnect":false,"stop_streams":false,"transmissions":["{\"identifier\":\"{\\\"channel\\\":\\\"chat\\\",\\\"room\\\":\\\"42\\\"}\",\"type\":\"confirm_subscription\"}"],"streams":["room:42"],"stopped_streams":[],"env":{"cstate":{"visits":"1"}},"error_msg":""}'
V4 = r'{"status":2,"disconnect":false,"stop_streams":false,"transmissions":["{\"identifier\":\"{\\\"channel\\\":\\\"chat\\\"}\",\"type\":\"reject_subscription\"}"],"streams":[],"stopped_streams":[],"env":{"cstate":{"visits":"1"}},"error_msg":""}'
V5 = '{"status":0,"error_msg":"Server error"}'
V5B = r'{"status":1,"disconnect":false,"stop_streams":false,"transmissions":["{\"identifier\":\"{\\\"channel\\\":\\\"chat\\\",\\\"room\\\":\\\"42\\\"}\",\"message\":{\"echo\":\"hi\"}}"],"streams":[],"stopped_streams":[],"env":{"cstate":{"visits":"1"}},"error_msg":""}'
V6 = r'{"status":1,"disconnect":false,"stop_streams":false,"transmissions":[],"streams":[],"stopped_streams":[],"env":{"cstate":{"visits":"1"},"istate":{"I":"{\"last\":\"hi\"}"}},"error_msg":""}'
V7 = r'{"status":1,"disconnect":false,"stop_streams":false,"transmissions":[],"streams":[],"stopped_streams":["room:42"],"env":{"cstate":{"visits":"1"}},"error_msg":""}'
V9 = '{"status":1,"disconnect":false,"stop_streams":false,"transmissions":[],"streams":[],"stopped_streams":[],"env":{"cstate":{"visits":"1"}},"error_msg":""}'
V11 = '{"status":1,"error_msg":""}'


def test_v1_connect_accepted() -> None:
    response = ConnectionResponse.from_json(V1)
    assert response.status is Status.SUCCESS
    assert response.identifiers == IDS
    assert response.transmissions == ['{"type":"welcome","sid":"s1d-test"}']
    assert response.env.cstate == {"visits": "1"}


def test_v2_connect_rejected() -> None:
    response = ConnectionResponse.from_json(V2)
    assert response.status is Status.FAILURE
    assert response.identifiers == ""
    assert response.error_msg == "Auth failed"
    assert json.loads(response.transmissions[0]) == {"type": "disconnect", "reason": "unauthorized"}


def test_v3_v4_subscribe_accepted_and_rejected() -> None:
    accepted = CommandResponse.from_json(V3)
    assert accepted.status is Status.SUCCESS
    assert accepted.streams == ["room:42"]
    assert json.loads(accepted.transmissions[0]) == {
        "identifier": IDENT,
        "type": "confirm_subscription",
    }
    rejected = CommandResponse.from_json(V4)
    assert rejected.status is Status.FAILURE
    assert rejected.streams == []
    assert json.loads(rejected.transmissions[0])["type"] == "reject_subscription"


def test_v5_v8_error_answers() -> None:
    response = CommandResponse.from_json(V5)
    assert response.status is Status.ERROR
    assert response.error_msg == "Server error"


def test_v5b_v6_v7_v9_message_answers() -> None:
    assert json.loads(CommandResponse.from_json(V5B).transmissions[0]) == {
        "identifier": IDENT,
        "message": {"echo": "hi"},
    }
    assert CommandResponse.from_json(V6).env.istate == {"I": '{"last":"hi"}'}
    assert CommandResponse.from_json(V7).stopped_streams == ["room:42"]
    unsubscribed = CommandResponse.from_json(V9)
    assert (unsubscribed.status, unsubscribed.stop_streams, unsubscribed.transmissions) == (
        Status.SUCCESS,
        False,
        [],
    )


def test_v11_disconnect_answer() -> None:
    assert DisconnectResponse.from_json(V11) == DisconnectResponse(Status.SUCCESS, "")


# -- what Go's decoder accepts and refuses (rpc.md §2.6) -----------------------------------


def test_keys_match_case_insensitively() -> None:
    response = CommandResponse.from_json('{"Status":1,"STOP_STREAMS":true,"Error_Msg":"x"}')
    assert (response.status, response.stop_streams, response.error_msg) == (
        Status.SUCCESS,
        True,
        "x",
    )


def test_camel_case_and_unknown_keys_are_ignored() -> None:
    response = CommandResponse.from_json(
        '{"status":1,"stopStreams":true,"stoppedStreams":["a"],"errorMsg":"x","extra":{}}'
    )
    assert response == CommandResponse(status=Status.SUCCESS)


def test_last_duplicate_key_wins() -> None:
    assert CommandResponse.from_json('{"status":2,"Status":1}').status is Status.SUCCESS


@pytest.mark.parametrize("status", ['"SUCCESS"', '"1"', "1.0", "1e0", "true", "2147483648", "[]"])
def test_status_must_be_an_int32(status: str) -> None:
    with pytest.raises(DecodeError):
        ConnectionResponse.from_json('{"status":' + status + "}")


@pytest.mark.parametrize("status", ["3", "-1", "2147483647", "null"])
def test_unknown_or_missing_status_is_error(status: str) -> None:
    assert ConnectionResponse.from_json('{"status":' + status + "}").status is Status.ERROR
    assert DisconnectResponse.from_json("{}").status is Status.ERROR


@pytest.mark.parametrize(
    "body",
    [
        '{"identifiers":{"user":"alice"}}',
        '{"transmissions":[{"type":"welcome"}]}',
        '{"transmissions":"x"}',
        '{"env":{"cstate":{"n":1}}}',
        '{"env":{"cstate":[]}}',
        '{"env":"x"}',
        "[]",
        '"x"',
        "",
        "not json",
        '{"status":NaN}',
        '{"status":1',
    ],
)
def test_wrong_types_and_bad_json_are_decode_errors(body: str) -> None:
    with pytest.raises(DecodeError):
        ConnectionResponse.from_json(body)


@pytest.mark.parametrize(
    "body", ['{"disconnect":1}', '{"stop_streams":"true"}', '{"streams":[1]}', '{"presence":[]}']
)
def test_command_response_types_are_strict(body: str) -> None:
    with pytest.raises(DecodeError):
        CommandResponse.from_json(body)


def test_null_is_the_zero_value() -> None:
    response = CommandResponse.from_json(
        '{"status":null,"disconnect":null,"streams":null,"transmissions":["a",null],"env":{"cstate":{"k":null}},"presence":null}'
    )
    assert response.status is Status.ERROR
    assert response.disconnect is False
    assert response.streams == []
    assert response.transmissions == ["a", ""]
    assert response.env.cstate == {"k": ""}  # "" = delete the key
    assert response.presence is None


def test_presence_decodes_and_encodes() -> None:
    body = '{"status":1,"presence":{"type":"join","id":"u1","info":"{\\"name\\":\\"A\\"}"}}'
    response = CommandResponse.from_json(body)
    assert response.presence == PresenceResponse("join", "u1", '{"name":"A"}')
    assert json.loads(response.to_json()) == json.loads(body)


def test_invalid_utf8_and_lone_surrogates_become_replacement_characters() -> None:
    response = ConnectionResponse.from_json(
        b'{"status":1,"identifiers":"a\xffb","error_msg":"\\ud800"}'
    )
    assert response.identifiers == "a\ufffdb"
    assert response.error_msg == "\ufffd"


def test_output_is_ascii_and_encodes_any_string() -> None:
    body = CommandResponse(status=Status.SUCCESS, transmissions=["é\ud800<"]).to_bytes()
    assert body.isascii()
    assert json.loads(body)["transmissions"] == ["é\ud800<"]


# -- responses as the SDK writes them ------------------------------------------------------


def test_responses_omit_empties_but_always_carry_status() -> None:
    assert ConnectionResponse(error_msg="boom").to_json() == '{"status":0,"error_msg":"boom"}'
    assert DisconnectResponse(Status.SUCCESS).to_json() == '{"status":1}'
    assert (
        CommandResponse(status=Status.SUCCESS, stop_streams=True).to_json()
        == '{"status":1,"stop_streams":true}'
    )


def test_responses_round_trip() -> None:
    response = CommandResponse(
        status=Status.FAILURE,
        disconnect=True,
        stop_streams=True,
        streams=["a", "b"],
        transmissions=["{}"],
        error_msg="e",
        env=EnvResponse({"c": "1"}, {"i": ""}),
        stopped_streams=["c"],
        presence=PresenceResponse("leave", "u"),
    )
    assert CommandResponse.from_json(response.to_json()) == response
    connect = ConnectionResponse(Status.SUCCESS, IDS, ["{}"], "", EnvResponse({"a": "b"}))
    assert ConnectionResponse.from_json(connect.to_bytes()) == connect


# -- state rules (rpc.md §2.2) --------------------------------------------------------------


def test_merge_state_deletes_on_empty_and_keeps_unmentioned_keys() -> None:
    assert merge_state({"a": "1", "b": "2"}, {"a": "", "c": "3"}) == {"b": "2", "c": "3"}


def test_state_changes_is_the_inverse_of_merge() -> None:
    before = {"a": "1", "b": "2", "c": "3"}
    after = {"a": "1", "b": "20", "d": "4"}
    changes = state_changes(before, after)
    assert changes == {"b": "20", "d": "4", "c": ""}
    assert merge_state(before, changes) == after


def test_state_values_must_be_strings() -> None:
    with pytest.raises(TypeError):
        state_changes({}, {"n": 1})  # type: ignore[dict-item]


def test_disconnect_istate_round_trips_and_tolerates_garbage() -> None:
    nested = encode_disconnect_istate({IDENT: {"last": "hi"}, "x": {}})
    assert nested == {IDENT: '{"last":"hi"}', "x": "{}"}
    assert decode_disconnect_istate(nested, IDENT) == {"last": "hi"}
    assert decode_disconnect_istate(nested, "missing") == {}
    assert decode_disconnect_istate({"x": "not json"}, "x") == {}
    assert decode_disconnect_istate({"x": '{"n":1}'}, "x") == {}
