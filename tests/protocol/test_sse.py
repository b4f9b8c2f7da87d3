from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cableway.protocol import messages
from cableway.protocol.sse import (
    DISCONNECT_RETRY_MS,
    SSE_HEADERS,
    encode_event,
    history_from_request,
    identifier_from_query,
    message_to_event,
    parse_last_event_id,
    parse_post_body,
)

# --- a small WHATWG EventSource parser (HTML §9.2.6 "Interpreting an event stream") ---


@dataclass
class Block:
    """The fields between two blank lines, and the event dispatched at its end (if any)."""

    fields: list[tuple[str, str]] = field(default_factory=list)
    event: ParsedEvent | None = None


@dataclass(frozen=True)
class ParsedEvent:
    type: str
    data: str
    last_event_id: str


@dataclass
class Parsed:
    blocks: list[Block]
    leftover: list[str]  # lines after the last blank line (never dispatched)
    retry: int | None

    @property
    def events(self) -> list[ParsedEvent]:
        return [b.event for b in self.blocks if b.event is not None]


def whatwg_parse(stream: bytes) -> Parsed:
    text = stream.decode("utf-8", "replace")
    text = text.removeprefix("\ufeff")
    *lines, tail = re.split(r"\r\n|\r|\n", text)
    blocks: list[Block] = []
    block = Block()
    data, event_type, id_buffer, retry = "", "", "", None
    pending: list[str] = []
    for line in lines:
        if line == "":
            last_event_id = id_buffer
            if data:
                block.event = ParsedEvent(
                    event_type or "message", data.removesuffix("\n"), last_event_id
                )
            blocks.append(block)
            block, data, event_type, pending = Block(), "", "", []
            continue
        pending.append(line)
        if line.startswith(":"):
            continue
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        block.fields.append((name, value))
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id":
            if "\0" not in value:
                id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
    if tail:
        pending.append(tail)
    return Parsed(blocks, pending, retry)


def normalise(data: str) -> str:
    return re.sub(r"\r\n|\r", "\n", data)


def single_data_event(raw: bytes) -> ParsedEvent:
    """Exactly one block, holding only ``data`` fields, and nothing after it."""
    parsed = whatwg_parse(raw)
    assert len(parsed.blocks) == 1
    assert parsed.leftover == []
    assert parsed.retry is None
    assert {name for name, _ in parsed.blocks[0].fields} == {"data"}
    event = parsed.blocks[0].event
    assert event is not None
    assert event.type == "message"
    assert event.last_event_id == ""
    return event


# --- framing: the spec §10.2 example ---

PUBSUB_ID = '{"channel":"$pubsub","stream_name":"chat_42"}'
TURBO_HTML = (
    '<turbo-stream action="append" target="messages"><template>Hi</template></turbo-stream>'
)


def test_spec_example_byte_for_byte() -> None:
    stream = [
        messages.welcome("yi421"),
        messages.confirm_subscription(PUBSUB_ID),
        messages.ping(1694041735),
        messages.data_message(
            messages.dumps(PUBSUB_ID),
            messages.message_json('{"text":"hello"}'),
            stream_id="chat_42",
            epoch="vRXl",
            offset=1,
        ),
        messages.disconnect("server_restart", reconnect=True),
    ]
    out = b"".join(
        event
        for text in stream
        if (event := message_to_event(text, unwrap=True, raw=False)) is not None
    )
    assert out == (
        b"event: welcome\n"
        b'data: {"type":"welcome","sid":"yi421"}\n'
        b"\n"
        b"event: confirm_subscription\n"
        b'data: {"type":"confirm_subscription","identifier":'
        b'"{\\"channel\\":\\"$pubsub\\",\\"stream_name\\":\\"chat_42\\"}"}\n'
        b"\n"
        b"event: ping\n"
        b'data: {"type":"ping","message":1694041735}\n'
        b"\n"
        b'data: {"text":"hello"}\n'
        b"id: 1/vRXl/chat_42\n"
        b"\n"
        b"event: disconnect\n"
        b'data: {"type":"disconnect","reason":"server_restart","reconnect":true}\n'
        b"\n"
    )
    events = whatwg_parse(out).events
    assert [e.type for e in events] == [
        "welcome",
        "confirm_subscription",
        "ping",
        "message",
        "disconnect",
    ]
    assert events[3].last_event_id == "1/vRXl/chat_42"
    assert parse_last_event_id(events[3].last_event_id) == (1, "vRXl", "chat_42")


def _data(
    message: str,
    *,
    stream_id: str | None = None,
    epoch: str | None = None,
    offset: int | None = None,
) -> str:
    return messages.data_message(
        messages.dumps(PUBSUB_ID),
        messages.message_json(message),
        stream_id=stream_id,
        epoch=epoch,
        offset=offset,
    )


def test_turbo_html_is_unwrapped_to_the_raw_string() -> None:
    out = message_to_event(_data(json.dumps(TURBO_HTML)), unwrap=True, raw=False)
    assert out == b"data: " + TURBO_HTML.encode() + b"\n\n"
    # plain non-JSON data is also delivered as the string
    assert message_to_event(_data("hello"), unwrap=True, raw=False) == b"data: hello\n\n"


def test_multiline_string_becomes_several_data_lines() -> None:
    html = "<turbo-stream>\n  <template>\r\n    Hi\r  </template>\n</turbo-stream>"
    out = message_to_event(_data(json.dumps(html)), unwrap=True, raw=False)
    assert out == (
        b"data: <turbo-stream>\n"
        b"data:   <template>\n"
        b"data:     Hi\n"
        b"data:   </template>\n"
        b"data: </turbo-stream>\n\n"
    )
    assert single_data_event(out).data == normalise(html)


def test_unwrapped_non_string_message_is_compact_json() -> None:
    out = message_to_event(_data('{"a": [1, 2.5, "é"], "b": null}'), unwrap=True, raw=False)
    assert out == 'data: {"a":[1,2.5,"é"],"b":null}\n\n'.encode()
    assert message_to_event(_data("42"), unwrap=True, raw=False) == b"data: 42\n\n"


def test_raw_mode_drops_typed_messages_only() -> None:
    for typed in (
        messages.welcome("sid"),
        messages.ping(1),
        messages.confirm_subscription(PUBSUB_ID),
        messages.reject_subscription(PUBSUB_ID),
        messages.disconnect("remote", reconnect=False),
        messages.data_message(messages.dumps(PUBSUB_ID), '"x"', kind="presence"),
    ):
        assert message_to_event(typed, unwrap=True, raw=True) is None
        assert message_to_event(typed, unwrap=True, raw=False) is not None
    assert message_to_event(_data('"x"'), unwrap=True, raw=True) == b"data: x\n\n"


def test_post_mode_keeps_the_full_json() -> None:
    text = _data('{"text":"hello"}', stream_id="s/1", epoch="e", offset=7)
    out = message_to_event(text, unwrap=False, raw=False)
    assert out == b"data: " + text.encode() + b"\nid: 7/e/s/1\n\n"


def test_disconnect_without_reconnect_gets_a_retry() -> None:
    text = messages.disconnect("unauthorized", reconnect=False)
    out = message_to_event(text, unwrap=True, raw=False)
    assert out == (b"event: disconnect\ndata: " + text.encode() + b"\nretry: 31536000000\n\n")
    assert whatwg_parse(out).retry == DISCONNECT_RETRY_MS
    reconnect = messages.disconnect("server_restart", reconnect=True)
    assert b"retry" not in (message_to_event(reconnect, unwrap=True, raw=False) or b"")


def test_typed_broadcast_is_an_event_with_its_position() -> None:
    text = messages.data_message(
        messages.dumps(PUBSUB_ID), '{"a":1}', kind="update", stream_id="s", epoch="e", offset=3
    )
    out = message_to_event(text, unwrap=True, raw=False)
    assert out == b"event: update\ndata: " + text.encode() + b"\nid: 3/e/s\n\n"


@pytest.mark.parametrize("kind", ["bad\nname", "bad\rname", "nul\0", "del\x7f", "c1\x85"])
def test_unrepresentable_type_is_dropped(kind: str) -> None:
    text = messages.data_message(messages.dumps(PUBSUB_ID), '"x"', kind=kind)
    assert message_to_event(text, unwrap=True, raw=False) is None


def test_position_without_epoch_or_with_control_characters_gives_no_id() -> None:
    assert message_to_event(
        _data('"x"', stream_id="s", epoch="", offset=1), unwrap=True, raw=False
    ) == (b"data: x\n\n")
    out = message_to_event(
        _data('"x"', stream_id="a\nid: 9", epoch="e", offset=1), unwrap=True, raw=False
    )
    assert out == b"data: x\n\n"


def test_pathological_messages() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        message_to_event("[1]", unwrap=True, raw=False)
    with pytest.raises(ValueError, match="Expecting value"):
        message_to_event("not json", unwrap=True, raw=False)
    with pytest.raises(ValueError, match="message field"):
        message_to_event('{"identifier":"x"}', unwrap=True, raw=False)
    # too large a number to re-encode, or too deep to parse: dropped, not raised
    assert message_to_event('{"identifier":"x","message":1e999}', unwrap=True, raw=False) is None
    deep = '{"identifier":"x","message":' + "[" * 100_000 + "]" * 100_000 + "}"
    assert message_to_event(deep, unwrap=True, raw=False) is None
    # a lone surrogate (from a JSON escape) is sent as U+FFFD
    out = message_to_event('{"identifier":"x","message":"a\\ud800b"}', unwrap=True, raw=False)
    assert out == "data: a\ufffdb\n\n".encode()


# --- encode_event ---


def test_encode_event_field_order_and_spacing() -> None:
    assert encode_event("x", event="e", id="1/a/b", retry=5) == (
        b"event: e\ndata: x\nid: 1/a/b\nretry: 5\n\n"
    )
    assert encode_event("") == b"data: \n\n"
    assert encode_event("", event="") == b"data: \n\n"
    assert encode_event("x", id="") == b"data: x\nid: \n\n"
    # a WHATWG parser strips one space: a leading space of the payload survives
    out = encode_event(" indented\n  twice", event=" e", id=" i")
    parsed = whatwg_parse(out)
    assert parsed.events == [ParsedEvent(type=" e", data=" indented\n  twice", last_event_id=" i")]


def test_injection_is_one_event_with_the_original_data() -> None:
    """Security O7: line breaks in data cannot start new fields or events."""
    payload = "a\n\ndata: x\nid: 9\nevent: disconnect\r\nretry: 1"
    for raw in (
        encode_event(payload),
        message_to_event(_data(json.dumps(payload)), unwrap=True, raw=False),
    ):
        assert raw is not None
        event = single_data_event(raw)
        assert event.data == "a\n\ndata: x\nid: 9\nevent: disconnect\nretry: 1"
    assert encode_event("a\r\rb\r\n\nc") == (b"data: a\ndata: \ndata: b\ndata: \ndata: c\n\n")


@pytest.mark.parametrize(
    "bad", ["a\nb", "a\rb", "a\r\nb", "a\0b", "\n", "tab\t", "del\x7f", "c1\x85", "lone\ud800"]
)
@pytest.mark.parametrize("where", ["event", "id"])
def test_encode_event_rejects_control_characters_in_event_and_id(where: str, bad: str) -> None:
    """Security O8."""
    with pytest.raises(ValueError, match=where):
        encode_event("x", event=bad) if where == "event" else encode_event("x", id=bad)


@pytest.mark.parametrize("retry", [-1, True, 1.5, "5"])
def test_encode_event_rejects_bad_retry(retry: object) -> None:
    with pytest.raises(ValueError, match="retry"):
        encode_event("x", retry=retry)  # type: ignore[arg-type]


@given(data=st.text(), event=st.text(), id=st.text())
def test_round_trip_property(data: str, event: str, id: str) -> None:
    raw = encode_event(data)
    assert single_data_event(raw).data == normalise(re.sub(r"[\ud800-\udfff]", "\ufffd", data))
    try:
        raw = encode_event(data, event=event, id=id)
    except ValueError:
        assert re.search(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]", event + id)
        return
    parsed = whatwg_parse(raw)
    assert len(parsed.blocks) == 1
    assert parsed.leftover == []
    names = [name for name, _ in parsed.blocks[0].fields]
    assert names == ["event"] * bool(event) + ["data"] * names.count("data") + ["id"]
    assert parsed.events == [
        ParsedEvent(type=event or "message", data=normalise(data), last_event_id=id)
    ]


# --- Last-Event-ID (security O9) ---


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1/vRXl/chat_42", (1, "vRXl", "chat_42")),
        ("0/e/s", (0, "e", "s")),
        ("12/ep/chat/2023/a", (12, "ep", "chat/2023/a")),
        ("12/ep//", (12, "ep", "/")),
        ("18446744073709551615/e/s", (2**64 - 1, "e", "s")),
        ("1/e", None),
        ("1", None),
        ("", None),
        ("/e/s", None),
        ("1//s", None),
        ("1/e/", None),
        ("1/" + "e" * 10_000 + "/s", None),
        ("x" * 10_240, None),
    ],
)
def test_last_event_id_parses_or_is_ignored(value: str, expected: object) -> None:
    assert parse_last_event_id(value) == expected


@pytest.mark.parametrize(
    "offset",
    ["abc", "-1", "+1", " 12", "12 ", "1_000", "١٢", "²", "1.0", "0x1", "18446744073709551616"],
)
def test_last_event_id_bad_offset_raises(offset: str) -> None:
    with pytest.raises(ValueError, match="offset"):
        parse_last_event_id(offset + "/e/s")


def test_last_event_id_length_limit_is_4096() -> None:
    value = "1/e/" + "s" * 4092
    assert parse_last_event_id(value) == (1, "e", "s" * 4092)
    assert parse_last_event_id(value + "s") is None


# --- request mapping ---


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"identifier": '{"channel":"Chat", "id":1}'}, '{"channel":"Chat", "id":1}'),
        ({"channel": "ChatChannel"}, '{"channel":"ChatChannel"}'),
        ({"stream": "chat/2023"}, '{"channel":"$pubsub","stream_name":"chat/2023"}'),
        ({"signed_stream": "abc--x"}, '{"channel":"$pubsub","signed_stream_name":"abc--x"}'),
        (
            {"turbo_signed_stream_name": "t--s"},
            '{"channel":"Turbo::StreamsChannel","signed_stream_name":"t--s"}',
        ),
        (
            {"turbo_stream_name": "room:1"},
            '{"channel":"Turbo::StreamsChannel","signed_stream_name":"room:1"}',
        ),
        ({"stream": 'q"é\n'}, '{"channel":"$pubsub","stream_name":"q\\"é\\n"}'),
        ({}, None),
        ({"jid": "x", "history_since": "1"}, None),
        ({"identifier": "", "channel": ""}, None),
    ],
)
def test_identifier_from_query(query: dict[str, str], expected: str | None) -> None:
    assert identifier_from_query(query) == expected


def test_identifier_precedence() -> None:
    query = {
        "turbo_stream_name": "5",
        "turbo_signed_stream_name": "4",
        "signed_stream": "3",
        "stream": "2",
        "channel": "1",
        "identifier": "0",
    }
    expected = [
        "0",
        '{"channel":"1"}',
        '{"channel":"$pubsub","stream_name":"2"}',
        '{"channel":"$pubsub","signed_stream_name":"3"}',
        '{"channel":"Turbo::StreamsChannel","signed_stream_name":"4"}',
        '{"channel":"Turbo::StreamsChannel","signed_stream_name":"5"}',
    ]
    for key, identifier in zip(list(query)[::-1], expected, strict=True):
        assert identifier_from_query(query) == identifier
        del query[key]
    assert identifier_from_query(query) is None


def test_history_from_request() -> None:
    assert history_from_request({}, None) is None
    assert history_from_request({"history_since": ""}, "1/e") is None
    assert history_from_request({}, "7/ep/chat/1") == {
        "streams": {"chat/1": {"epoch": "ep", "offset": 7}}
    }
    assert history_from_request({"history_since": "1694041735"}, None) == {"since": 1694041735}
    assert history_from_request({"history_since": "5"}, "7/ep/s") == {
        "streams": {"s": {"epoch": "ep", "offset": 7}},
        "since": 5,
    }


@pytest.mark.parametrize("since", ["abc", "-5", "1.5", "١", " 1", "9223372036854775808"])
def test_history_since_must_be_an_integer(since: str) -> None:
    with pytest.raises(ValueError, match="history_since"):
        history_from_request({"history_since": since}, None)


def test_history_bad_last_event_id_offset_raises() -> None:
    with pytest.raises(ValueError, match="offset"):
        history_from_request({}, "x/e/s")


# --- POST body ---


def test_post_body_json_lines() -> None:
    body = (
        b'{"command":"subscribe","identifier":"{\\"channel\\":\\"A\\"}"}\n'
        b"\n"
        b"  \r\n"
        b'{"identifier":"b","history":{"since":5}}\r\n'
        b'{"command":"whatever","identifier":"c","history":null}'
    )
    assert parse_post_body(body) == [
        {"command": "subscribe", "identifier": '{"channel":"A"}'},
        {"identifier": "b", "history": {"since": 5}},
        {"command": "whatever", "identifier": "c", "history": None},
    ]
    assert parse_post_body(b"") == []
    assert parse_post_body(b"\n\n") == []


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"{", "valid JSON"),
        (b'{"identifier":"a"}\n{', "valid JSON"),
        (b'{"identifier":NaN}', "valid JSON"),
        (b"[]", "object"),
        (b'"x"', "object"),
        (b"null", "object"),
        (b"{}", "identifier"),
        (b'{"identifier":1}', "identifier"),
        (b'{"identifier":null}', "identifier"),
        (b'{"identifier":"a","history":[]}', "history"),
        (b'{"identifier":"\xff"}', "UTF-8"),
        (b'\xef\xbb\xbf{"identifier":"a"}', "valid JSON"),
        ('{"identifier":"a"}'.encode("utf-16"), "UTF-8"),
        (b'{"identifier":"a","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deeply"),
    ],
)
def test_post_body_rejects(body: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_post_body(body, max_size=1_000_000)


def test_post_body_size_limit() -> None:
    line = b'{"identifier":"' + b"a" * 100 + b'"}\n'
    body = line * (65536 // len(line))
    assert len(parse_post_body(body)) == 65536 // len(line)
    with pytest.raises(ValueError, match="too large"):
        parse_post_body(body + line)
    with pytest.raises(ValueError, match="too large"):
        parse_post_body(line, max_size=10)


def test_sse_headers() -> None:
    """Security O6."""
    headers = dict(SSE_HEADERS)
    assert len(headers) == len(SSE_HEADERS)
    assert all(name == name.lower() for name in headers)
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"cache-control"] == b"private, no-cache, no-store, must-revalidate, max-age=0"
    assert headers[b"pragma"] == b"no-cache"
    assert headers[b"expires"] == b"0"
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"x-accel-buffering"] == b"no"
