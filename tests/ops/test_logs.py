"""cableway.ops.logs: escaping (no forged lines), redaction (no secrets), JSON lines, and a real
server's logs grepped for every secret and token it was given."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest
import trio
import trio.testing
from hypothesis import assume, given
from hypothesis import strategies as st

from cableway.config import Config
from cableway.ops import logs
from cableway.ops.logs import (
    REDACTED,
    JsonFormatter,
    SecretFilter,
    TextFormatter,
    configure_logging,
    escape_controls,
    safe,
)
from cableway.toolkit.tokens import identification_token

from ..integration.helpers import (
    broadcast,
    cable,
    config,
    recv_json,
    running,
    subscribe,
    turbo_identifier,
    welcome,
)

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}"
FORGED = "\n2024-03-06 13:38:07.545 INF forged admin=true"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    factory = logging.getLogRecordFactory()
    active = logs._active_filter
    cableway = logging.getLogger("cableway")
    propagate = cableway.propagate
    cableway.propagate = True  # the fuzz harness, imported by another test, turns it off
    yield
    cableway.propagate = propagate
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.setLogRecordFactory(factory)
    logs._active_filter = active


def record(
    message: str, *args: object, level: int = logging.INFO, **extra: object
) -> logging.LogRecord:
    made = logging.LogRecord("cableway", level, __file__, 1, message, args or None, None)
    made.__dict__.update(extra)
    return made


# --- escaping --------------------------------------------------------------------------------


def test_a_client_value_cannot_forge_a_text_line() -> None:
    line = TextFormatter().format(record("subscribe identifier=%s", "x" + FORGED, sid="abc"))
    assert "\n" not in line
    assert re.fullmatch(
        rf"{STAMP} INF subscribe identifier=x\\n2024-03-06 13:38:07\.545 INF forged admin=true "
        r"sid=abc",
        line,
    )


def test_every_control_character_is_escaped_in_messages_and_values() -> None:
    nasty = "a\r\nb\x00c\x1b[31md\x7fe\x85f\u2028g\u2029h\u202ei\tj"
    line = TextFormatter().format(record(nasty, value=nasty))
    assert line.count("\n") == 0
    assert all(char.isprintable() for char in line)
    escaped = "a\\r\\nb\\x00c\\x1b[31md\\x7fe\\x85f\\u2028g\\u2029h\\u202ei\\tj"
    assert f" INF {escaped} value=" in line
    assert line.splitlines() == [line]


def test_tracebacks_are_indented_so_no_line_can_pass_for_a_record() -> None:
    try:
        raise ValueError("bad input" + FORGED)
    except ValueError:
        made = logging.LogRecord(
            "cableway", logging.ERROR, __file__, 1, "boom", None, sys.exc_info()
        )
    lines = TextFormatter().format(made).split("\n")
    assert re.fullmatch(rf"{STAMP} ERR boom", lines[0])
    assert lines[1] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in lines[1:])
    # the exception's own newline starts a continuation line, indented like the others
    assert lines[-2:] == [
        "    ValueError: bad input",
        "    2024-03-06 13:38:07.545 INF forged admin=true",
    ]


def test_empty_message_has_no_double_space() -> None:
    line = TextFormatter().format(record("", context="metrics", clients_num=3))
    assert re.fullmatch(rf"{STAMP} INF context=metrics clients_num=3", line)


def test_safe_is_unambiguous_and_bounded() -> None:
    assert safe("plain") == "plain"
    assert safe("a\nb") == "a\\nb"
    assert safe("a\\nb") == "a\\\\nb"  # a literal backslash-n stays distinguishable
    assert safe(b"\xff\x00ok") == "\\xff\\x00ok"
    assert safe(42) == "42"
    assert safe("x" * 300) == "x" * 256 + "...(44 more characters)"
    assert safe("abcdef", limit=3) == "abc...(3 more characters)"
    assert escape_controls("tab\there") == "tab\\there"


@given(st.text(), st.text())
def test_text_records_are_always_one_line(message: str, value: str) -> None:
    line = TextFormatter().format(record("%s", message, value=value))
    assert line.splitlines() == [line]
    assert safe(message).splitlines() in ([safe(message)], [])
    assert JsonFormatter().format(record("%s", message, value=value)).splitlines() != []


# --- JSON ------------------------------------------------------------------------------------


def test_json_lines() -> None:
    made = record("Connected %s", "x" + FORGED, level=logging.WARNING, sid="abc", n=3, ok=True)
    line = JsonFormatter().format(made)
    assert "\n" not in line
    data = json.loads(line)
    assert list(data) == ["time", "level", "msg", "sid", "n", "ok"]
    assert data["level"] == "WARN"
    assert data["msg"] == "Connected x" + FORGED
    assert (data["sid"], data["n"], data["ok"]) == ("abc", 3, True)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)", data["time"])


@pytest.mark.parametrize(
    ("level", "name"),
    [(logging.DEBUG, "DEBUG"), (logging.INFO, "INFO"), (logging.ERROR, "ERROR")],
)
def test_json_levels_are_slogs(level: int, name: str) -> None:
    assert json.loads(JsonFormatter().format(record("m", level=level)))["level"] == name


def test_json_escapes_line_separators_and_carries_the_traceback() -> None:
    try:
        raise KeyError("k")
    except KeyError:
        made = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "a\u2028b\x85", None, sys.exc_info()
        )
    line = JsonFormatter().format(made)
    assert line.splitlines() == [line]
    data = json.loads(line)
    assert data["msg"] == "a\u2028b\x85"
    assert data["error"].startswith("Traceback (most recent call last):")
    assert data["error"].endswith("KeyError: 'k'")


# --- redaction -------------------------------------------------------------------------------

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJleHQiOiJ7XCJpZFwiOjF9In0.dGhpcyBpcyBub3QgYSBzaWduYXR1cmU"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("secret is s3cr3t-value!", f"secret is {REDACTED}!"),
        ("GET /cable?jid=abc.def&x=1", f"GET /cable?jid={REDACTED}&x=1"),
        ("GET /cable?x=1&JID=abc", f"GET /cable?x=1&JID={REDACTED}"),
        ("GET /events?token=t0k3n", f"GET /events?token={REDACTED}"),
        ("GET /cable?user_jid=keep", "GET /cable?user_jid=keep"),
        ("X-JID: abc", f"X-JID: {REDACTED}"),
        ("x-jid=abc rest", f"x-jid={REDACTED} rest"),
        ("[(b'x-jid', b'abc'), (b'host', b'h')]", f"[(b'x-jid', b'{REDACTED}'), (b'host', b'h')]"),
        ("{'X-JID': 'abc'}", f"{{'X-JID': '{REDACTED}'}}"),
        ("Authorization: Bearer k3y", f"Authorization: Bearer {REDACTED}"),
        ("authorization: basic dXNlcg==", f"authorization: basic {REDACTED}"),
        ("sent bearer k3y", f"sent bearer {REDACTED}"),
        (f"token {JWT} rejected", f"token {REDACTED} rejected"),
        ("nothing to hide: jid, token, bearer", "nothing to hide: jid, token, bearer"),
    ],
)
def test_redaction(text: str, expected: str) -> None:
    secret_filter = SecretFilter(["s3cr3t-value"], ["jid"])
    assert secret_filter.redact(text) == expected
    assert secret_filter.redact(expected) == expected  # idempotent


def test_custom_jwt_param_is_redacted_in_query_and_header() -> None:
    secret_filter = SecretFilter.from_config(Config(jwt_param="auth"))
    assert secret_filter.redact("/cable?auth=abc X-AUTH: def") == (
        f"/cable?auth={REDACTED} X-AUTH: {REDACTED}"
    )


def test_longest_secret_is_redacted_first() -> None:
    secret_filter = SecretFilter(["abc", "abc-def"])
    assert secret_filter.redact("abc-def-g abc") == f"{REDACTED}-g {REDACTED}"


@given(
    st.text(),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.!$%/+=", min_size=1),
    st.sampled_from(" =:'\"&,;()[]{}<>\n"),
)
def test_redaction_never_lets_a_secret_through(around: str, secret: str, gap: str) -> None:
    # wherever a secret stands as a whole token (not inside a longer word), it is hidden
    assume(secret not in around and secret not in gap)
    secret_filter = SecretFilter([secret], ["jid"])
    for text in (around + gap + secret, secret + gap + around, f"{around}{gap}{secret}{gap}"):
        redacted = secret_filter.redact(text)
        assert secret not in redacted.replace(REDACTED, " ")
        assert secret_filter.redact(redacted) == redacted


@pytest.mark.parametrize(
    "line",
    [
        "JWT authentication is enabled (param: jid, enforced: false)",
        "Using channels router: $pubsub, Turbo::StreamsChannel",
        "Accept broadcast requests at http://localhost:8090/_broadcast (no authorization)",
        "Handle WebSocket connections at http://localhost:8080/cable",
    ],
)
def test_one_letter_secrets_never_rewrite_the_servers_own_words(line: str) -> None:
    # the README's example: ANYCABLE_JWT_ID_KEY=K ANYCABLE_TURBO_RAILS_KEY=T
    secret_filter = SecretFilter(["K", "T", "s", "a"], ["jid"])
    assert secret_filter.redact(line) == line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /cable?jid=K", f"GET /cable?jid={REDACTED}"),
        (
            "connection rejected sid=T reason=unauthorized",
            f"connection rejected sid={REDACTED} reason=unauthorized",
        ),
        ('{"key": "T"}', f'{{"key": "{REDACTED}"}}'),
        ("Authorization: Bearer K", f"Authorization: Bearer {REDACTED}"),
        ("K", REDACTED),
        ("K T", f"{REDACTED} {REDACTED}"),
    ],
)
def test_one_letter_secrets_are_hidden_where_they_stand_alone(text: str, expected: str) -> None:
    secret_filter = SecretFilter(["K", "T"], ["jid"])
    assert secret_filter.redact(text) == expected


@pytest.mark.parametrize("secret", ["T", "R", "E", "REDACTED", "D]", "[R"])
def test_a_replacement_is_never_redacted_again(secret: str) -> None:
    secret_filter = SecretFilter([secret])
    once = secret_filter.redact(f"x {secret} y")
    assert once == f"x {REDACTED} y"
    assert secret_filter.redact(once) == once


def test_a_record_is_redacted_once_by_the_factory_and_the_handler(
    restore_logging: None,
) -> None:
    stream = io.StringIO()
    configure_logging(Config(jwt_secret="T", turbo_streams_secret="K"), stream)
    logging.getLogger("cableway").info("JWT authentication for sid=%s", "T")
    line = stream.getvalue()
    assert line.endswith(f" INF JWT authentication for sid={REDACTED}\n"), line


def test_filter_redacts_args_extras_and_tracebacks() -> None:
    secret_filter = SecretFilter(["s3cr3t"])
    try:
        raise RuntimeError("failed with s3cr3t")
    except RuntimeError:
        made = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "key %s", ("s3cr3t",), sys.exc_info()
        )
    made.__dict__.update({"url": "/cable?jid=t0k", "jid": "t0k", "n": 3, "other": ["s3cr3t"]})
    assert secret_filter.filter(made) is True
    for formatter in (TextFormatter(), JsonFormatter(), logging.Formatter()):
        text = formatter.format(made)
        assert "s3cr3t" not in text
        assert "t0k" not in text
    assert made.getMessage() == f"key {REDACTED}"
    assert made.__dict__["n"] == 3  # untouched


def test_configure_logging_redacts_records_of_every_logger_for_every_handler(
    restore_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    stream = io.StringIO()
    configure_logging(Config(secret="s3cr3t", log_level="debug"), stream)
    caplog.set_level(logging.DEBUG)
    # a logger created after configure_logging, as the transport's are
    logging.getLogger("cableway.some.new.module").debug("GET /cable?jid=t0k with %s", "s3cr3t")
    assert caplog.records
    for made in caplog.records:
        assert made.getMessage() == f"GET /cable?jid={REDACTED} with {REDACTED}"
    for text in (caplog.text, stream.getvalue()):
        assert "s3cr3t" not in text
        assert "t0k" not in text
        assert f"jid={REDACTED}" in text


def test_configure_logging_format_and_replacement(restore_logging: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(Config(log_format="json"), first)
    configure_logging(Config(log_format="json", log_level="warn"), second)
    log = logging.getLogger("cableway")
    log.info("hidden")
    log.warning("shown", extra={"sid": "abc"})
    assert first.getvalue() == ""
    data = json.loads(second.getvalue())
    assert (data["msg"], data["level"], data["sid"]) == ("shown", "WARN", "abc")


# --- the real server -------------------------------------------------------------------------

SECRET = "master-SECRET-0f6c2a"
JWT_SECRET = "jwt-SECRET-at-least-thirty-two-bytes-long-1b9e"
STREAMS_SECRET = "streams-SECRET-77d1"
TURBO_SECRET = "turbo-SECRET-4c0a"
BROADCAST_KEY = "broadcast-KEY-93ab51"


async def test_a_real_server_never_logs_secrets_or_tokens(
    restore_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(
        secret=SECRET,
        jwt_secret=JWT_SECRET,
        streams_secret=STREAMS_SECRET,
        turbo_streams_secret=TURBO_SECRET,
        broadcast_key=BROADCAST_KEY,
        log_level="debug",
    )
    stream = io.StringIO()
    configure_logging(cfg, stream)
    caplog.set_level(logging.DEBUG)
    good = identification_token({"user_id": "42"}, JWT_SECRET, expires_in=60)
    forged = identification_token(
        {"user_id": "1"}, "some-other-key-of-thirty-two-bytes!!", expires_in=60
    )
    garbage = "not-a-jwt-but-secret-looking-7f3e"
    tokens = (good, forged, garbage)

    async with running(cfg) as server:
        async with cable(server, f"?jid={good}") as ws:
            await welcome(ws)
            identifier = turbo_identifier("chat", TURBO_SECRET)
            assert (await subscribe(ws, identifier))["type"] == "confirm_subscription"
            response = await broadcast(server, {"stream": "chat", "data": "hi"}, key=BROADCAST_KEY)
            assert response.status == 201
            assert (await recv_json(ws))["message"] == "hi"
        for token in (forged, garbage):
            async with cable(server, f"?jid={token}") as ws:
                message = await recv_json(ws)
                assert message["type"] == "disconnect"
                assert message["reason"] == "unauthorized"
        async with cable(server, headers=[("X-JID", forged)]) as ws:
            assert (await recv_json(ws))["reason"] == "unauthorized"
        refused = await broadcast(
            server, {"stream": "chat", "data": "x"}, key="wrong-" + BROADCAST_KEY
        )
        assert refused.status == 401
        # What a careless debug line in the transport would print: redacted all the same.
        logging.getLogger("cableway.http").debug(
            "request GET /cable?jid=%s X-JID: %s Authorization: Bearer %s",
            garbage,
            forged,
            BROADCAST_KEY,
        )
        await trio.testing.wait_all_tasks_blocked()  # let the server finish logging

    assert any("unauthorized" in made.getMessage() for made in caplog.records), (
        "the server should have logged the rejected connections"
    )
    outputs = [stream.getvalue(), caplog.text]
    for made in caplog.records:
        outputs += [made.getMessage(), TextFormatter().format(made), JsonFormatter().format(made)]
    everything = "\n".join(outputs)
    assert (
        "GET /cable?jid=[REDACTED] X-JID: [REDACTED] Authorization: Bearer [REDACTED]" in everything
    )
    for secret in (SECRET, JWT_SECRET, STREAMS_SECRET, TURBO_SECRET, BROADCAST_KEY, *tokens):
        assert secret not in everything


async def test_a_forged_line_from_a_client_stays_on_its_line(
    restore_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(log_level="debug")
    stream = io.StringIO()
    configure_logging(cfg, stream)
    caplog.set_level(logging.DEBUG)
    async with running(cfg) as server:
        # X-Request-Id becomes the session id, and a bad broadcast body is logged
        async with cable(
            server, headers=[("X-Request-Id", "abc" + FORGED.replace("\n", "\t"))]
        ) as ws:
            await welcome(ws)
        await broadcast(server, {"stream": "s\n" + FORGED, "data": 1})
        logging.getLogger("cableway.session").debug("client said %s", safe("hi" + FORGED))
        await trio.testing.wait_all_tasks_blocked()  # let the server finish logging
    for line in stream.getvalue().splitlines():
        assert re.match(rf"{STAMP} (DBG|INF|WRN|ERR) ", line), line
    assert "INF forged" in stream.getvalue()  # it is there, escaped, inside another line
