"""The cableway command: help, version, errors, the serve path, log lines, docs in sync."""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import tomllib
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import cableway
from cableway.cli import help_text, load_effective_config, main, options_markdown, parse_args
from cableway.config import OPTIONS, REFUSED, Config, all_options
from cableway.ops.logs import TextFormatter, configure_logging

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
BEGIN = "<!-- BEGIN GENERATED OPTIONS -->\n"
END = "<!-- END GENERATED OPTIONS -->\n"

# A value each refused option rejects.
REFUSED_VALUES = {
    "broadcast_adapter": "nats",
    "broker": "nats",
    "pubsub": "nats",
    "presets": "fly",
}


# --- help and version ------------------------------------------------------------------------


def test_help_lists_every_option_with_its_environment_variable_and_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"], env={}) == 0
    out = capsys.readouterr().out
    assert out == help_text()
    assert out.startswith("usage: cableway [serve] [options]")
    for option in all_options():
        assert re.search(rf"^  {re.escape(option.flag)}\b", out, re.MULTILINE), option.flag
        for variable in option.env:
            assert variable in out
    for option in OPTIONS:
        assert f"default: {option.default}" in out
    assert "env: ANYCABLE_PORT, PORT; default: 8080" in out
    assert "env: (none); default: 1048576" in out
    assert "default: derived from --secret" in out
    assert "env: ANYCABLE_SECRET; default: unset" in out


@pytest.mark.parametrize("argv", [["serve", "--help"], ["-h"], ["serve", "-h"], ["--port=x", "-h"]])
def test_help_variants(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv, env={}) == 0
    assert capsys.readouterr().out == help_text()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"], env={}) == 0
    assert capsys.readouterr().out == f"cableway {cableway.__version__}\n"


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cableway", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0
    assert result.stdout == f"cableway {cableway.__version__}\n"


# --- errors ----------------------------------------------------------------------------------


def assert_one_line_error(capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("cableway: error: ")
    assert captured.err.endswith("\n")
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err
    for fragment in fragments:
        assert fragment in captured.err
    return captured.err


def test_unknown_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bogus"], env={}) == 2
    assert_one_line_error(capsys, "unknown option --bogus")


def test_bad_value_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port=abc"], env={}) == 2
    assert_one_line_error(capsys, "--port", "'abc'")


def test_bad_environment_value_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], env={"ANYCABLE_ENFORCE_JWT": "yes"}) == 2
    assert_one_line_error(capsys, "ANYCABLE_ENFORCE_JWT", "'yes'")


def test_every_refused_option_has_a_test_value() -> None:
    assert set(REFUSED_VALUES) == set(REFUSED)


@pytest.mark.parametrize(("name", "value"), sorted(REFUSED_VALUES.items()))
def test_refused_options_exit_2_naming_the_option(
    name: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([f"--{name}={value}", "--noauth"], env={}) == 2
    err = assert_one_line_error(capsys, f"--{name}")
    assert "Cableway" in err


def test_refused_environment_variable_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], env={"ANYCABLE_BROKER": "nats"}) == 2
    assert_one_line_error(capsys, "ANYCABLE_BROKER=nats", "not supported yet by Cableway")


def test_secrets_are_not_echoed_in_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--secret=s3cr3t", "--port=x"], env={}) == 2
    err = assert_one_line_error(capsys, "--port")
    assert "s3cr3t" not in err


# --- parse_args and serve --------------------------------------------------------------------


def test_serve_subcommand_is_the_same_as_no_subcommand() -> None:
    argv = ["--secret=qwerty", "--port=9000", "--turbo_streams"]
    env = {"ANYCABLE_HOST": "0.0.0.0"}
    assert parse_args(["serve", *argv], env) == parse_args(argv, env)
    assert parse_args(["serve"], {}) == parse_args([], {}) == Config()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> list[Config]:
    """Stand in for cableway.transport.server; records the configs it is served."""
    served: list[Config] = []
    module = types.ModuleType("cableway.transport.server")

    async def serve(config: Config, *, worker: object = None) -> None:
        assert worker is None  # not started by a --workers supervisor
        served.append(config)

    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cableway.transport.server", module)
    return served


def test_main_configures_logging_and_serves(
    fake_server: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--jwt_id_key=s3cr3t", "--debug"], env={"PORT": "9100"}) == 0
    assert fake_server == [parse_args(["--jwt_id_key=s3cr3t", "--debug"], {"PORT": "9100"})]
    err = capsys.readouterr().err
    line = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}"
    assert re.search(rf"^{line} INF Starting Cableway {cableway.__version__} ", err, re.M)
    assert re.search(
        rf"^{line} WRN --jwt_id_key is deprecated, use --jwt_secret$", err, re.MULTILINE
    )
    assert re.search(rf"^{line} DBG Configuration: Config\(", err, re.MULTILINE)
    assert "[REDACTED]" in err
    assert "s3cr3t" not in err


def test_main_logs_json_lines(
    fake_server: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--noauth", "--log_format=json", "--secret=s3cr3t"], env={}) == 0
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines()]
    assert lines[0]["level"] == "INFO"
    assert lines[0]["msg"].startswith(f"Starting Cableway {cableway.__version__} ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)", lines[0]["time"])
    assert "s3cr3t" not in err


def test_main_without_debug_hides_debug_lines(
    fake_server: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--noauth", "--log_level=warn"], env={}) == 0
    assert len(fake_server) == 1
    err = capsys.readouterr().err
    assert " INF " not in err
    assert " DBG " not in err


def test_ctrl_c_exits_130(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    module = types.ModuleType("cableway.transport.server")

    async def serve(config: Config, *, worker: object = None) -> None:
        raise KeyboardInterrupt

    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cableway.transport.server", module)
    assert main(["--noauth"], env={}) == 130
    assert "Traceback" not in capsys.readouterr().err


# --- log lines -------------------------------------------------------------------------------


def make_record(level: int, message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("cableway", level, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize(
    ("level", "short"),
    [
        (logging.DEBUG, "DBG"),
        (logging.INFO, "INF"),
        (logging.WARNING, "WRN"),
        (logging.ERROR, "ERR"),
        (logging.CRITICAL, "ERR"),
    ],
)
def test_log_line_format(level: int, short: str) -> None:
    line = TextFormatter().format(make_record(level, "Handle WebSocket connections", sid="abc"))
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}} {short} Handle WebSocket connections sid=abc",
        line,
    )


def test_log_values_needing_quotes_are_quoted() -> None:
    line = TextFormatter().format(
        make_record(logging.INFO, "m", context="a b", empty="", eq="x=y", n=3)
    )
    assert line.endswith(' m context="a b" empty="" eq="x=y" n=3')


def test_configure_logging_level(restore_logging: None) -> None:
    before = list(logging.getLogger().handlers)  # pytest's own capture handlers
    configure_logging(Config(log_level="warn"))
    assert logging.getLogger().level == logging.WARNING
    configure_logging(Config(log_level="debug"))
    assert logging.getLogger().level == logging.DEBUG
    handlers = logging.getLogger().handlers
    assert handlers[: len(before)] == before  # left alone
    assert len(handlers) == len(before) + 1  # the second call replaced the first handler


# --- docs/configuration.md -------------------------------------------------------------------


def test_docs_reference_is_generated_from_the_option_tables() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert BEGIN in text
    assert END in text
    generated = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert generated == options_markdown(), (
        "docs/configuration.md is out of date: replace the generated block with the output of "
        "python -c 'from cableway.cli import options_markdown; print(options_markdown(), end=\"\")'"
    )


def test_docs_mention_every_option_and_environment_variable() -> None:
    text = DOC.read_text(encoding="utf-8")
    for option in all_options():
        assert f"`{option.flag}`" in text
        for variable in option.env:
            assert f"`{variable}`" in text


# --- backend helpers: cableway sign | token | broadcast | check -------------------------------

# spec §11.2: the broadcast key derived from --secret=qwerty
QWERTY_KEY = "42923a28b760e667fc92f7c6123bb07a282822b329dd2ef48e7aee7830d98485"
JWT = "jwt-secret-of-at-least-thirty-two-bytes!"
SIGNED_CHAT = "ImNoYXQvMjAyMyI=--2b2e054b6413bf3bc7e8bbad2f68962aa2ba19821800ccbd8de6fd7314e8320c"


def run_ok(capsys: pytest.CaptureFixture[str], argv: list[str], env: dict[str, str]) -> str:
    assert main(argv, env=env) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


@pytest.mark.parametrize("command", ["sign", "token", "broadcast"])
def test_each_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"], env={}) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cableway {command} ")
    assert "environment:" in out
    assert "example: cableway " + command in out


def test_main_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_ok(capsys, ["--help"], {})
    for command in ("sign", "token", "broadcast", "check"):
        assert re.search(rf"^  {command} ", out, re.MULTILINE)


def test_sign_known_answers(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_ok(capsys, ["sign", "--secret", "s3Krit", "chat/2023"], {}) == SIGNED_CHAT + "\n"
    out = run_ok(capsys, ["sign", "notifications/17", "--secret=secret"], {})
    assert out == (
        "Im5vdGlmaWNhdGlvbnMvMTci--"
        "05577ac2d36b12b90805c977b8cc0141521f14a0b4e5a0df4a1ac0fc4165370a\n"
    )


def test_sign_joins_parts_like_turbo_rails(capsys: pytest.CaptureFixture[str]) -> None:
    from cableway.auth.signed_streams import verify_signed_stream_name

    out = run_ok(capsys, ["sign", "--secret=k", "Z2lkOi8vbXlhcHAvUm9vbS8x", "messages"], {})
    assert verify_signed_stream_name(out.strip(), "k") == "Z2lkOi8vbXlhcHAvUm9vbS8x:messages"


@pytest.mark.parametrize(
    ("env", "secret"),
    [
        ({"ANYCABLE_SECRET": "s3Krit"}, "s3Krit"),
        ({"ANYCABLE_STREAMS_SECRET": "s3Krit", "ANYCABLE_SECRET": "x"}, "s3Krit"),
        (
            {
                "ANYCABLE_TURBO_STREAMS_SECRET": "s3Krit",
                "ANYCABLE_STREAMS_SECRET": "y",
                "ANYCABLE_SECRET": "x",
            },
            "s3Krit",
        ),
        ({"ANYCABLE_TURBO_STREAMS_SECRET": "none", "ANYCABLE_SECRET": "s3Krit"}, "s3Krit"),
        ({"ANYCABLE_TURBO_STREAMS_SECRET": "", "ANYCABLE_SECRET": "s3Krit"}, "s3Krit"),
    ],
)
def test_sign_secret_from_environment(
    env: dict[str, str], secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_ok(capsys, ["sign", "chat/2023"], env) == SIGNED_CHAT + "\n"


def test_sign_flag_wins_over_environment(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"ANYCABLE_TURBO_STREAMS_SECRET": "other"}
    assert run_ok(capsys, ["sign", "--secret", "s3Krit", "chat/2023"], env) == SIGNED_CHAT + "\n"


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        (["sign", "chat"], {}, "no secret"),
        (["sign", "chat"], {"ANYCABLE_SECRET": "none"}, "no secret"),
        (["sign", "--secret="], {}, "arguments are required"),
        (["sign", "--secret=", "chat"], {}, "no secret"),
        (["sign", "--secret=k", ""], {}, "empty"),
        (["sign", "--bogus", "chat"], {"ANYCABLE_SECRET": "k"}, "--bogus"),
        (["token", "user_id=1"], {}, "no secret"),
        (["token", "--secret=k"], {}, "no identifiers"),
        (["token", "--secret=k", "user_id"], {}, "not key=value"),
        (["token", "--secret=k", "=1"], {}, "not key=value"),
        (["token", "--secret=k", "a=1", "a=2"], {}, "given twice"),
        (["token", "--secret=k", "a=1", "--identifiers={}"], {}, "not both"),
        (["token", "--secret=k", "--identifiers={"], {}, "not valid JSON"),
        (["token", "--secret=k", "--identifiers=[1]"], {}, "JSON object"),
        (["token", "--secret=k", "--identifiers={}"], {}, "JSON object"),
        (["token", "--secret=k", "--ttl=-1", "a=1"], {}, "--ttl"),
        (["token", "--secret=k", "--ttl=nan", "a=1"], {}, "--ttl"),
        (["token", "--secret=k", "--ttl=abc", "a=1"], {}, "--ttl"),
        (["broadcast", "s"], {}, "DATA"),
        (["broadcast", "--key=a", "--secret=b", "s", "d"], {}, "not allowed with"),
        (["broadcast", "--url=localhost:1/x", "s", "d"], {}, "URL"),
        (["broadcast", "--timeout=0", "s", "d"], {}, "--timeout"),
        (["broadcast", "", "d"], {}, "STREAM"),
    ],
)
def test_command_usage_errors_exit_2(
    argv: list[str], env: dict[str, str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, env=env) == 2
    assert_one_line_error(capsys, fragment)


def test_token_is_accepted_by_the_server_verifier(capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from cableway.auth.jwt import decode_identifiers

    before = time.time()
    token = run_ok(capsys, ["token", f"--secret={JWT}", "user_id=42", "org=a=b"], {}).strip()
    assert decode_identifiers(token, JWT, now=before) == '{"user_id":"42","org":"a=b"}'
    exp = jwt_claims(token, JWT)["exp"]
    assert int(before) + 3600 <= exp <= time.time() + 3600
    token = run_ok(
        capsys,
        ["token", "--ttl", "60", "--identifiers", '{"user_id":42}'],
        {
            "ANYCABLE_JWT_SECRET": JWT,
            "ANYCABLE_SECRET": "s",
        },
    ).strip()
    assert decode_identifiers(token, JWT, now=before) == '{"user_id":42}'
    assert int(before) + 60 <= jwt_claims(token, JWT)["exp"] <= time.time() + 60


def test_token_ttl_0_never_expires(capsys: pytest.CaptureFixture[str]) -> None:
    token = run_ok(capsys, ["token", "--ttl=0", "u=1"], {"ANYCABLE_SECRET": JWT}).strip()
    assert jwt_claims(token, JWT) == {"ext": '{"u":"1"}'}


def jwt_claims(token: str, secret: str) -> dict[str, object]:
    import jwt

    claims: dict[str, object] = jwt.decode(
        token, secret, algorithms=["HS256"], options={"verify_exp": False}
    )
    return claims


def test_broadcast_sends_data_as_the_exact_string(capsys: pytest.CaptureFixture[str]) -> None:
    from .toolkit.stub_http import stub_server

    html = '<turbo-stream action="append" target="m"><template>Hi</template></turbo-stream>'
    with stub_server() as stub:
        run_ok(capsys, ["broadcast", "--url", stub.url, "--key=k", "chat/1", html], {})
        run_ok(capsys, ["broadcast", "--url", stub.url, "--raw", "chat/1", '{"a":1}'], {})
    first, second = stub.requests
    assert first.headers["authorization"] == "Bearer k"
    assert json.loads(first.body) == {"stream": "chat/1", "data": json.dumps(html)}
    assert "authorization" not in second.headers
    assert json.loads(second.body) == {"stream": "chat/1", "data": '{"a":1}'}


def test_broadcast_reads_data_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from .toolkit.stub_http import stub_server

    monkeypatch.setattr(sys, "stdin", io.StringIO("<p>from stdin</p>\n"))
    with stub_server() as stub:
        run_ok(capsys, ["broadcast", f"--url={stub.url}", "s", "-"], {})
    assert json.loads(json.loads(stub.requests[0].body)["data"]) == "<p>from stdin</p>\n"


SECURED = "http://localhost:8080/_broadcast"
OPEN = "http://localhost:8090/_broadcast"


@pytest.mark.parametrize(
    ("argv", "env", "authorization", "url"),
    [
        ([], {}, None, OPEN),
        (["--key=k"], {}, "Bearer k", SECURED),
        (["--secret=qwerty"], {}, f"Bearer {QWERTY_KEY}", SECURED),
        ([], {"ANYCABLE_BROADCAST_KEY": "k", "ANYCABLE_SECRET": "s"}, "Bearer k", SECURED),
        ([], {"ANYCABLE_SECRET": "qwerty"}, f"Bearer {QWERTY_KEY}", SECURED),
        ([], {"ANYCABLE_BROADCAST_KEY": "none", "ANYCABLE_SECRET": "s"}, None, SECURED),
        (["--key=none"], {"ANYCABLE_SECRET": "s"}, None, SECURED),
        (["--key=k"], {"ANYCABLE_BROADCAST_KEY": "e"}, "Bearer k", SECURED),
        (
            ["--url=http://h:1/b"],
            {"ANYCABLE_HTTP_BROADCAST_URL": "http://e/x"},
            None,
            "http://h:1/b",
        ),
        ([], {"ANYCABLE_HTTP_BROADCAST_URL": "http://e/x"}, None, "http://e/x"),
    ],
)
def test_broadcast_key_and_url_resolution(
    argv: list[str],
    env: dict[str, str],
    authorization: str | None,
    url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cableway.toolkit.broadcaster import Broadcaster

    sent: list[tuple[str, str | None]] = []

    def record(self: Broadcaster, body: bytes) -> None:
        sent.append((self.url, self._key))

    monkeypatch.setattr(Broadcaster, "_send", record)
    run_ok(capsys, ["broadcast", *argv, "s", "d"], env)
    key = authorization.removeprefix("Bearer ") if authorization else None
    assert sent == [(url, key)]


@pytest.mark.parametrize(
    ("status", "fragment"),
    [(401, "check the broadcast key"), (400, "400"), (503, "503")],
)
def test_broadcast_failure_exits_1_with_one_line(
    status: int, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from .toolkit.stub_http import stub_server

    with stub_server(status, b"Bad Request: nope\n") as stub:
        assert main(["broadcast", f"--url={stub.url}", "--key=secret-key", "s", "d"], env={}) == 1
    err = assert_one_line_error(capsys, fragment)
    assert "secret-key" not in err


def test_broadcast_connection_refused_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    from .toolkit.stub_http import closed_port

    url = f"http://127.0.0.1:{closed_port()}/_broadcast"
    assert main(["broadcast", f"--url={url}", "s", "d"], env={}) == 1
    assert_one_line_error(capsys, "cannot reach", url)


async def test_broadcast_command_reaches_a_real_subscriber() -> None:
    import trio

    from .integration.helpers import cable, config, recv_json, running, subscribe, welcome

    cfg = config(public_streams=True, broadcast_key=QWERTY_KEY)
    identifier = json.dumps({"channel": "$pubsub", "stream_name": "news"})
    async with running(cfg) as server, cable(server) as ws:
        await welcome(ws)
        assert (await subscribe(ws, identifier))["type"] == "confirm_subscription"
        url = f"http://127.0.0.1:{server.broadcast_port}/_broadcast"
        argv = ["broadcast", f"--url={url}", "news", "<p>Hello</p>"]
        with trio.fail_after(10):
            status = await trio.to_thread.run_sync(
                lambda: main(argv, env={"ANYCABLE_SECRET": "qwerty"})
            )
        assert status == 0
        assert await recv_json(ws) == {"identifier": identifier, "message": "<p>Hello</p>"}


def test_check_dispatches_to_cableway_check(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    module = types.ModuleType("cableway.tools.check")

    def check_main(argv: list[str]) -> int:
        calls.append(argv)
        return 3

    module.main = check_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cableway.tools.check", module)
    assert main(["check", "--url", "ws://x/cable"], env={}) == 3
    assert calls == [["--url", "ws://x/cable"]]


def test_check_without_the_module_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "cableway.tools.check", None)
    assert main(["check"], env={}) == 2
    assert_one_line_error(capsys, "cableway check is not available")


def test_a_leading_flag_always_means_serve(fake_server: list[Config]) -> None:
    # "sign" after a flag is not a command: it is an unexpected argument to serve
    assert main(["--noauth", "sign"], env={}) == 2
    assert main(["serve", "--noauth"], env={}) == 0
    assert fake_server == [parse_args(["--noauth"], {})]


# --- configuration file and --print-config ----------------------------------------------------


def test_print_config_prints_toml_with_secrets_redacted_and_exits_0(
    fake_server: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--print-config", "--secret=s3cr3t", "--port=9000"], env={}) == 0
    captured = capsys.readouterr()
    assert fake_server == []
    values = tomllib.loads(captured.out)
    assert values["server"]["port"] == 9000
    assert values["secret"] == "[REDACTED]"
    assert values["jwt"]["secret"] == "[REDACTED]"
    assert "s3cr3t" not in captured.out + captured.err


def test_print_config_shows_warnings_on_stderr(
    fake_server: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--print-config", "--jwt_id_key=" + "k" * 32], env={}) == 0
    captured = capsys.readouterr()
    assert captured.err == "cableway: warning: --jwt_id_key is deprecated, use --jwt_secret\n"
    assert tomllib.loads(captured.out)["jwt"]["secret"] == "[REDACTED]"


def test_config_file_precedence_file_env_cli(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_server: list[Config],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "anycable.toml").write_text(
        'host = "0.0.0.0"\nport = 7000\nhealth_path = "/up"\nnoauth = true\n', encoding="utf-8"
    )
    assert main(["--port=9000"], env={"ANYCABLE_HOST": "127.0.0.1"}) == 0
    [config] = fake_server
    assert (config.host, config.port, config.health_path, config.noauth) == (
        "127.0.0.1",
        9000,
        "/up",
        True,
    )
    assert "INF Using configuration file ./anycable.toml" in capsys.readouterr().err
    # --ignore-config-path skips it
    assert main(["--ignore-config-path"], env={}) == 0
    assert fake_server[1] == Config()


def test_explicit_config_path(
    tmp_path: Path, fake_server: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cable.toml"
    path.write_text("max_conn = 3\n", encoding="utf-8")
    assert main(["--config-path", str(path)], env={}) == 0
    assert main([], env={"ANYCABLE_CONFIG_PATH": str(path)}) == 0
    assert [config.max_conn for config in fake_server] == [3, 3]


def test_load_effective_config_reads_no_default_file_when_absent() -> None:
    config, warnings, path = load_effective_config(["serve"], {}, exists=lambda _: False)
    assert (config, warnings, path) == (Config(), (), None)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("port = \n", "is not valid TOML"),
        ("port = 0\n", "invalid value '0' for port in "),
        ("[server]\nport = 0\n", "invalid value '0' for [server] port in "),
        ("[ds]\nenabled = true\n", "[ds] enabled = true in "),
    ],
)
def test_config_file_errors_exit_2(
    content: str,
    fragment: str,
    tmp_path: Path,
    fake_server: list[Config],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "anycable.toml"
    path.write_text(content, encoding="utf-8")
    assert main([f"--config-path={path}"], env={}) == 2
    assert_one_line_error(capsys, fragment)
    assert fake_server == []


def test_print_config_output_loads_back_to_the_same_config(
    tmp_path: Path, fake_server: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    flags = [
        "--port=9000",
        "--path=/cable,/accounts/{tenant}/cable",
        "--broadcast_key=none",
        "--jwt_secret=" + "j" * 32,
        "--allowed_origins=app.example.com",
        "--broker=none",
        "--sse=false",
        "--metrics_http=/metrics",
        "--metrics_tags=env:prod",
        "--enable_native_pings",
        "--max_subscriptions=9",
    ]
    assert main(["--print-config", *flags], env={}) == 0
    printed = capsys.readouterr().out
    path = tmp_path / "anycable.toml"
    path.write_text(printed.replace('"[REDACTED]"', '"' + "j" * 32 + '"'), encoding="utf-8")
    config, warnings, _ = load_effective_config([f"--config-path={path}"], {})
    assert config == parse_args(flags, {})
    assert warnings == ()
    assert main(["--print-config", f"--config-path={path}"], env={}) == 0
    assert capsys.readouterr().out == printed
    assert main([f"--config-path={path}"], env={}) == 0
    assert fake_server == [config]


def test_an_anycable_print_config_file_runs_the_server(
    tmp_path: Path, fake_server: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "anycable.toml"
    path.write_text(
        '# AnyCable server configuration.\nsecret = "none"\nbroadcast_adapters = ["http"]\n'
        'broadcast_key = "none"\n[server]\nhost = "127.0.0.1"\nport = 9123\n'
        'allowed_origins = ""\n[rpc]\nimplementation = "none"\nhost = "localhost:50051"\n'
        '[jwt]\nsecret = ""\nparam = "jid"\n[ws]\npaths = ["/cable"]\n[sse]\nenabled = false\n'
        '[metrics]\nhttp = "/metrics"\nport = 9123\n[disconnector]\nrate = 100\n',
        encoding="utf-8",
    )
    assert main([f"--config-path={path}", "--noauth"], env={}) == 0
    [config] = fake_server
    assert (config.host, config.port, config.sse, config.metrics_http) == (
        "127.0.0.1",
        9123,
        False,
        "/metrics",
    )
    assert " WRN " not in capsys.readouterr().err


def test_missing_explicit_config_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config-path", str(tmp_path / "nope.toml")], env={}) == 2
    assert_one_line_error(capsys, "nope.toml does not exist")


# --- the real command, as a subprocess -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cableway:
    """``python -m cableway ARGS`` in a subprocess; its stderr read line by line."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("ANYCABLE_")}
        environment.pop("PORT", None)
        environment.pop("REDIS_URL", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cableway", *args],
            env={**environment, **env},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr:
            for line in self.process.stderr:
                self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, fragment: str, timeout: float = 30.0) -> str:
        """The first stderr line containing ``fragment`` (fails at end of output)."""
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                pytest.fail(f"{fragment!r} never logged:\n" + "".join(self.seen))
            self.seen.append(line)
            if fragment in line:
                return line

    def finish(self, timeout: float = 30.0, *, stop: bool = True) -> tuple[int, str, str]:
        """(status, stdout, all of stderr) once it exits; ``stop``: stop it first (SIGINT)."""
        if stop and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout)  # (stderr belongs to the reader thread)
        assert self.process.stdout is not None
        out = self.process.stdout.read()
        self.process.stdout.close()
        self._reader.join(timeout)
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                break
            self.seen.append(line)
        return self.process.returncode, out, "".join(self.seen)


def websocket_request(port: int, target: str, headers: dict[str, str]) -> bytes:
    """Open a WebSocket handshake on ``target`` and return what the server sends back."""
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: actioncable-v1-json",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        received = b""
        while b"unauthorized" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    return received


def test_one_letter_secrets_leave_the_startup_log_intact_and_hide_credentials() -> None:
    # the README's example, with one-letter secrets: no word of the server's own is rewritten,
    # and the secret still never shows where a request carries it
    port = free_port()
    server = Cableway(
        # broadcasts on the main port: the default 8090 may be taken on a shared machine
        [
            "--host=127.0.0.1",
            f"--port={port}",
            f"--http_broadcast_port={port}",
            "--debug",
            "--enforce_jwt",
        ],
        {"ANYCABLE_JWT_ID_KEY": "K", "ANYCABLE_TURBO_RAILS_KEY": "T"},
    )
    try:
        server.wait_for("JWT authentication is enabled (param: jid, enforced: true)")
        reply = websocket_request(port, "/cable?jid=K", {"X-Request-Id": "T"})
        assert b"unauthorized" in reply
        server.wait_for("connection rejected")
    finally:
        status, _, err = server.finish()
    assert status == 0, err
    assert "REDAC" not in err.replace("[REDACTED]", "")
    assert "[REDACTED]" not in "".join(line for line in err.splitlines() if "Handle" in line)
    assert "Using channels router: $pubsub, Turbo::StreamsChannel" in err
    assert "connection rejected sid=[REDACTED] reason=unauthorized" in err
    for line in err.splitlines():
        words = re.split(r"[^A-Za-z0-9]+", line)
        assert not {"K", "T"} & set(words), line


# --- start-up errors: one line, naming the cause and the option -----------------------------


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("cableway: error: ")]


@pytest.fixture
def occupied_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_port_in_use_is_one_line_naming_the_port_option(occupied_port: int) -> None:
    server = Cableway(["--host=127.0.0.1", f"--port={occupied_port}", "--noauth"], {})
    status, out, err = server.finish(stop=False)
    assert status == 1
    assert out == ""
    assert error_lines(err) == [
        f"cableway: error: port {occupied_port} on 127.0.0.1 is already in use (--port): "
        "stop the other server or choose another port"
    ]
    assert err.endswith(error_lines(err)[0] + "\n")


def test_a_broadcast_port_in_use_names_the_broadcast_port_option(occupied_port: int) -> None:
    server = Cableway(
        [
            "--host=127.0.0.1",
            f"--port={free_port()}",
            f"--http_broadcast_port={occupied_port}",
            "--noauth",
        ],
        {},
    )
    status, _, err = server.finish(stop=False)
    assert status == 1
    [line] = error_lines(err)
    assert f"port {occupied_port} on 127.0.0.1 is already in use (--http_broadcast_port)" in line


def test_debug_adds_the_traceback_to_the_one_line(occupied_port: int) -> None:
    server = Cableway(["--host=127.0.0.1", f"--port={occupied_port}", "--noauth", "--debug"], {})
    status, _, err = server.finish(stop=False)
    assert status == 1
    assert "    Traceback (most recent call last):" in err
    assert err.splitlines()[-1].startswith("cableway: error: port ")


def test_an_address_that_does_not_resolve_names_the_host_option() -> None:
    server = Cableway(["--host=no-such-host.invalid", f"--port={free_port()}", "--noauth"], {})
    status, _, err = server.finish(stop=False)
    assert status == 1
    [line] = error_lines(err)
    assert line.startswith("cableway: error: cannot resolve the address 'no-such-host.invalid' ")
    assert "(--host)" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may listen on any port")
def test_a_privileged_port_as_non_root_is_one_line() -> None:
    server = Cableway(["--host=127.0.0.1", "--port=81", "--noauth"], {})
    status, _, err = server.finish(stop=False)
    assert status == 1
    [line] = error_lines(err)
    assert "permission denied to listen on 127.0.0.1:81 (--port)" in line


def test_permission_denied_is_one_line_naming_the_port(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # as root no port is refused: force the error the kernel gives a non-root user
    import trio

    async def refuse(port: int, *, host: str) -> list[trio.SocketListener]:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(trio, "open_tcp_listeners", refuse)
    assert main(["--host=127.0.0.1", "--port=80", "--noauth"], env={}) == 1
    [line] = error_lines(capsys.readouterr().err)
    assert line == (
        "cableway: error: permission denied to listen on 127.0.0.1:80 (--port): ports below "
        "1024 need root (or CAP_NET_BIND_SERVICE); choose a port of 1024 or more"
    )


def test_an_unreadable_config_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([f"--config-path={tmp_path}"], env={}) == 2
    assert_one_line_error(capsys, f"cannot read configuration file {tmp_path}: ")


def test_enforce_jwt_without_a_jwt_secret_is_one_line(
    capsys: pytest.CaptureFixture[str], fake_server: list[Config]
) -> None:
    assert main(["--enforce_jwt"], env={}) == 2
    assert_one_line_error(capsys, "--enforce_jwt needs a JWT secret (--jwt_secret or --secret)")
    assert main([], env={"ANYCABLE_ENFORCE_JWT": "true"}) == 2
    assert_one_line_error(capsys, "ANYCABLE_ENFORCE_JWT needs a JWT secret")
    assert fake_server == []


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        (
            "ANYCABLE_JWT_SECRT",
            "the environment variable ANYCABLE_JWT_SECRT is not read by Cableway "
            "(did you mean ANYCABLE_JWT_SECRET?)",
        ),
        (
            "CABLEWAY_PORT",
            "the environment variable CABLEWAY_PORT is not read by Cableway "
            "(did you mean ANYCABLE_PORT?)",
        ),
        (
            "ANYCABLE_NODE_ID",
            "the environment variable ANYCABLE_NODE_ID is not read by Cableway",
        ),
    ],
)
def test_an_environment_variable_no_option_reads_is_named_in_a_warning(
    variable: str,
    expected: str,
    fake_server: list[Config],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--noauth"], env={variable: "x", "ANYCABLE_HOST": "127.0.0.1"}) == 0
    err = capsys.readouterr().err
    warnings = [line.split(" WRN ", 1)[1] for line in err.splitlines() if " WRN " in line]
    assert warnings == [expected]
    assert fake_server[0].host == "127.0.0.1"


def test_variables_of_other_programs_and_options_get_no_warning(
    fake_server: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "ANYCABLE_HTTP_BROADCAST_URL": "http://localhost:8090/_broadcast",
        "ANYCABLE_WEBSOCKET_URL": "ws://localhost:8080/cable",
        "ANYCABLE_DISABLE_TELEMETRY": "true",
        "ANYCABLE_NOAUTH": "true",
        "PATH": "/usr/bin",
    }
    assert main([], env=env) == 0
    assert " WRN " not in capsys.readouterr().err
