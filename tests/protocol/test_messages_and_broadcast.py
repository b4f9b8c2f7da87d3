from __future__ import annotations

import json

import pytest
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import TextMessage

from cableway.protocol import messages
from cableway.protocol.broadcast import (
    EncodedBroadcast,
    Publication,
    RemoteDisconnect,
    broadcast_text,
    parse_broadcast,
)
from cableway.protocol.errors import RemoteProtocolError
from cableway.protocol.hub import Hub
from cableway.protocol.wsframe import text_frame

TURBO_HTML = (
    '<turbo-stream action="append" target="messages"><template>Hi</template></turbo-stream>'
)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"text":"hi"}', {"text": "hi"}),
        (json.dumps(TURBO_HTML), TURBO_HTML),
        (TURBO_HTML, TURBO_HTML),
        ("42", 42),
        ("null", "null"),
        ("NaN", "NaN"),
        ("", ""),
        ("[" * 50_000, "[" * 50_000),
        ("1" * 5000, "1" * 5000),
        ("multi\nline", "multi\nline"),
        (" \t\r\n[1] \n", [1]),
        ("\ufeff[1]", "\ufeff[1]"),
        ("Infinity", "Infinity"),
        ("-Infinity", "-Infinity"),
        ("-", "-"),
        ("true", True),
        ("nope", "nope"),
        ('"quoted"', "quoted"),
        ("\u00a0[1]", "\u00a0[1]"),
        ("x[1]", "x[1]"),
        ('["\\ud800"]', ["\ud800"]),  # an escaped lone surrogate: ASCII text
        ('["\ud800"]', ["\ud800"]),  # a raw one: re-encoded with escapes
        ('{"a":"\u00e9\u2603"}', {"a": "\u00e9\u2603"}),
        ("[" * 300 + "]" * 300, json.loads("[" * 300 + "]" * 300)),  # over orjson's share
        ("[" * 1010 + "]" * 1010, "[" * 1010 + "]" * 1010),  # too deep for the stdlib
        ("1e400", float("inf")),  # JSON; orjson refuses it, strict_json does not
        ("18446744073709551617", 18446744073709551617),
        ('"\\u0000"', "\u0000"),
        ("\x0c[1]", "\x0c[1]"),  # a form feed is not JSON whitespace
    ],
)
def test_publication_data_becomes_parsed_message_or_raw_string(data: str, message: object) -> None:
    encoded = EncodedBroadcast(Publication(stream="s", data=data))
    text = encoded.for_identifier('{"channel":"X"}')
    assert json.loads(text) == {"identifier": '{"channel":"X"}', "message": message}


@pytest.mark.parametrize(
    ("data", "message_json"),
    [
        ('["\\ud800"]', '["\\ud800"]'),  # ASCII JSON text goes out as sent
        (' {"a":"\u00e9"} ', '{"a":"\u00e9"}'),  # so does non-ASCII without surrogates
        ('["\ud800"]', '["\\ud800"]'),  # a raw lone surrogate is escaped (no UTF-8 form)
        ('["\u00e9\ud800"]', '["\\u00e9\\ud800"]'),  # all of it, then
    ],
)
def test_message_json_embeds_json_text_as_sent_unless_it_holds_a_lone_surrogate(
    data: str, message_json: str
) -> None:
    assert messages.message_json(data) == message_json
    messages.to_wire(messages.data_message('"i"', messages.message_json(data))).decode()


def test_message_keeps_key_order_and_optional_fields() -> None:
    pub = Publication(stream="chat_42", data='{"a":1}', broadcast_type="presence")
    text = EncodedBroadcast(pub, offset=42, epoch="y2023").for_identifier("id")
    assert text == (
        '{"type":"presence","identifier":"id","message":{"a":1},'
        '"stream_id":"chat_42","epoch":"y2023","offset":42}'
    )


def test_fixed_messages_are_byte_exact() -> None:
    assert (
        messages.welcome("V1StGXR8_Z5jdHi6B-myT")
        == '{"type":"welcome","sid":"V1StGXR8_Z5jdHi6B-myT"}'
    )
    assert messages.disconnect("unauthorized", reconnect=False) == (
        '{"type":"disconnect","reason":"unauthorized","reconnect":false}'
    )
    assert messages.confirm_subscription('{"channel":"$pubsub","stream_name":"chat"}') == (
        '{"type":"confirm_subscription","identifier":"{\\"channel\\":\\"$pubsub\\",\\"stream_name\\":\\"chat\\"}"}'
    )
    assert messages.ping(1694041735) == '{"type":"ping","message":1694041735}'
    assert messages.welcome("n", restored_ids=["a"]) == (
        '{"type":"welcome","sid":"n","restored":true,"restored_ids":["a"]}'
    )


def test_parse_single_batch_and_remote_command() -> None:
    one = parse_broadcast(
        b'{"stream":"s","data":"x","meta":{"exclude_socket":"abc","transient":true}}'
    )
    assert one == [Publication("s", "x", exclude_socket="abc", transient=True)]
    batch = parse_broadcast('[{"stream":"a","data":"1"},{"stream":"b","data":"2"}]')
    assert batch == [Publication("a", "1"), Publication("b", "2")]
    command = parse_broadcast(
        '{"command":"disconnect","payload":{"identifier":"{\\"u\\":1}","reconnect":true}}'
    )
    assert command == RemoteDisconnect('{"u":1}', reconnect=True)


def test_publications_compare_and_hash_by_value_and_have_no_instance_dict() -> None:
    one, same = Publication("s", "x", "sid", True, "t"), Publication("s", "x", "sid", True, "t")
    assert one == same
    assert hash(one) == hash(same)
    assert len({one, same, Publication("s", "x")}) == 2
    assert one != Publication("s", "x", "sid", False, "t")
    assert not hasattr(one, "__dict__")  # slotted: one per publication in flight


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"42",
        b'{"stream":"","data":"x"}',
        b'{"stream":"s","data":{"not":"a string"}}',
        b'{"stream":"s"}',
        b'{"stream":5,"data":"x"}',
        b'{"stream":"s","data":"x","meta":"{}"}',
        b'[{"stream":"a","data":"1"},{"stream":"b"}]',
        b"[" * 200_000,
        b'{"command":"reboot"}',
        b'{"command":"disconnect","payload":{}}',
    ],
)
def test_invalid_bodies_are_refused_whole(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_broadcast(body)


def test_batch_size_is_bounded() -> None:
    body = json.dumps([{"stream": "s", "data": "x"}] * 11)
    with pytest.raises(RemoteProtocolError):
        parse_broadcast(body, max_batch=10)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_prebuilt_frames_decode_as_one_text_message(size: int) -> None:
    payload = ("é" * size).encode()[:size] if size else b""
    payload = payload.decode("utf-8", "ignore").encode()
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(text_frame(payload))
    events = list(client.events())
    assert len(events) == 1
    assert isinstance(events[0], TextMessage)
    assert events[0].data == payload.decode()
    assert events[0].message_finished


def test_hub_groups_by_identifier_and_forgets_empty_streams() -> None:
    hub: Hub[str] = Hub()
    assert hub.add("s", "id1", "a") is True
    assert hub.add("s", "id1", "b") is False
    hub.add("s", "id2", "a")
    assert {k: set(v) for k, v in hub.recipients("s").items()} == {"id1": {"a", "b"}, "id2": {"a"}}
    hub.remove("s", "id1", "a")
    hub.remove("s", "id1", "b")
    assert hub.remove("s", "id2", "a") is True
    assert hub.recipients("s") == {}
    assert len(hub) == 0
    assert hub.remove("missing", "x", "a") is False


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"]
)
@pytest.mark.parametrize("text", ['{"stream":"s","data":"\u00e9"}', "[1]", "{}", '"x"', "7"])
def test_strict_json_reads_bytes_in_every_json_encoding(encoding: str, text: str) -> None:
    body = text.encode(encoding)
    assert messages.strict_json(body) == json.loads(body)


@pytest.mark.parametrize(
    ("body", "want"),
    [
        # orjson reads these itself: the values parse_broadcast reads are strict_json's
        (b'{"stream":"a","data":"1","stream":"b"}', [Publication("b", "1")]),
        (b'{"stream":"a","data":"x","n":123456789012345678901234567890}', [Publication("a", "x")]),
        (b'{"stream":"a","data":"x","meta":{"transient":1}}', [Publication("a", "x")]),
        (b'{"stream":"\\ud83d\\ude00","data":"\\u0000"}', [Publication("\U0001f600", "\x00")]),
        # orjson refuses these: strict_json's answer
        (b'{"stream":"\\ud800","data":"\\udc00"}', [Publication("\ud800", "\udc00")]),
        (b'{"stream":"\xed\xa0\x80","data":"x"}', [Publication("\ud800", "x")]),
        (b'\xef\xbb\xbf{"stream":"a","data":"x"}', [Publication("a", "x")]),
        ('{"stream":"a","data":"x"}'.encode("utf-16"), [Publication("a", "x")]),
        (b'{"stream":"a","data":"x","n":1e400}', [Publication("a", "x")]),
        (b'{"stream":"a","data":"x","n":NaN}', "body is not valid JSON"),
        (b"[" * 1100 + b"]" * 1100, "body nested too deeply"),
    ],
)
def test_parse_broadcast_gives_strict_json_verdicts_for_bodies_orjson_reads_differently(
    body: bytes, want: object
) -> None:
    if isinstance(want, str):
        with pytest.raises(RemoteProtocolError, match=want):
            parse_broadcast(body)
    else:
        assert parse_broadcast(body) == want


@pytest.mark.parametrize(
    "pub",
    [
        Publication("s", '{"a":1}'),
        Publication("s", "<turbo-stream></turbo-stream>"),
        Publication("s", '"\\ud800"'),
        Publication("s", "x", exclude_socket="sid", transient=True, broadcast_type="t"),
    ],
)
@pytest.mark.parametrize(("offset", "epoch"), [(None, None), (3, "ep"), (0, None)])
def test_broadcast_text_is_the_encoded_broadcast_for_one_identifier(
    pub: Publication, offset: int | None, epoch: str | None
) -> None:
    identifier = '{"channel":"C","x":"é"}'
    want = EncodedBroadcast(pub, offset=offset, epoch=epoch).for_identifier(identifier)
    assert broadcast_text(pub, identifier, offset, epoch) == want


def test_the_identifier_cache_stays_bounded_and_never_changes_a_text() -> None:
    from cableway.protocol import broadcast

    pub = Publication("s", "x")
    for n in range(broadcast._CACHED + 100):
        identifier = json.dumps({"channel": "C", "n": n, "é": "\ud800"})
        want = '{"identifier":' + messages.dumps(identifier) + ',"message":"x"}'
        assert broadcast_text(pub, identifier, None, None) == want
        assert broadcast_text(pub, identifier, None, None) == want  # from the cache
        assert len(broadcast._identifier_texts) <= broadcast._CACHED
    long = "i" * (broadcast._CACHED_LENGTH + 1)
    assert broadcast_text(pub, long, None, None) == '{"identifier":"' + long + '","message":"x"}'
    assert long not in broadcast._identifier_texts
