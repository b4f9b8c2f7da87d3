"""The cableway command: help, version, errors, the serve path, log lines, docs in sync."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import cableway
from cableway.cli import help_text, main, options_markdown, parse_args
from cableway.config import OPTIONS, REFUSED, Config, all_options
from cableway.logs import TextFormatter, configure_logging

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
BEGIN = "<!-- BEGIN GENERATED OPTIONS -->\n"
END = "<!-- END GENERATED OPTIONS -->\n"

# A value each refused option rejects.
REFUSED_VALUES = {
    "broadcast_adapter": "redis",
    "broker": "memory",
    "pubsub": "nats",
    "sse": "true",
    "rpc_host": "localhost:50051",
    "norpc": "false",
    "allowed_origins": "https://example.com",
    "max-conn": "10",
    "metrics_http": "/metrics",
    "log_format": "json",
    "pong_timeout": "3",
    "presets": "fly",
    "ssl_cert": "cert.pem",
    "ssl_key": "key.pem",
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

    async def serve(config: Config) -> None:
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

    async def serve(config: Config) -> None:
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
    configure_logging("warn")
    assert logging.getLogger().level == logging.WARNING
    configure_logging("debug")
    assert logging.getLogger().level == logging.DEBUG
    assert len(logging.getLogger().handlers) == 1


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
