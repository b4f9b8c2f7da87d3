"""The ``cableway`` command: ``cableway [serve] [options]``.

Parses the configuration (:mod:`cableway.config`), sets up logging and runs the server. Errors
in the configuration are reported as one ``cableway: error: ...`` line with exit status 2.
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from collections.abc import Mapping, Sequence

from . import __version__
from .config import (
    OPTIONS,
    REFUSED,
    Config,
    ConfigError,
    Option,
    load_config,
    load_config_with_warnings,
    refused_options,
)
from .logs import configure_logging

__all__ = ["help_text", "main", "options_markdown", "parse_args"]

log = logging.getLogger("cableway")

USAGE = "usage: cableway [serve] [options]"
INTRO = """\
Cableway: an AnyCable-compatible real-time server (Action Cable protocol and Hotwire Turbo
Streams) on trio. `cableway` and `cableway serve` are the same command.

Every option can also be set with the environment variable shown; flags win over the
environment, and an empty variable counts as unset. Boolean flags take no value (--noauth) or
an explicit one (--noauth=false). Secret options accept "none" to mean unset."""

_HELP_WIDTH = 100
_FLAG_COLUMN = 34


def _strip_serve(argv: Sequence[str]) -> list[str]:
    args = list(argv)
    if args and args[0] == "serve":
        del args[0]
    return args


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> Config:
    """The configuration for ``cableway [serve] <argv>`` (program name excluded) and ``env``."""
    return load_config(_strip_serve(argv), env)


# ---------------------------------------------------------------------------------------------
# --help and docs/configuration.md, both generated from the option tables
# ---------------------------------------------------------------------------------------------


def _sections() -> dict[str, list[Option]]:
    sections: dict[str, list[Option]] = {}
    for option in OPTIONS:
        sections.setdefault(option.section, []).append(option)
    return sections


def _flag_usage(option: Option) -> str:
    if option.kind == "bool":
        return f"{option.flag}[=BOOL]"
    return f"{option.flag}={option.metavar}"


def _help_entry(flag: str, lines: Sequence[str]) -> list[str]:
    indent = " " * _FLAG_COLUMN
    head = f"  {flag}"
    body: list[str] = []
    for line in lines:
        body.extend(textwrap.wrap(line, _HELP_WIDTH - _FLAG_COLUMN) or [""])
    if len(head) < _FLAG_COLUMN - 1:
        return [head.ljust(_FLAG_COLUMN) + body[0], *(indent + rest for rest in body[1:])]
    return [head, *(indent + rest for rest in body)]


def _env_text(option: Option) -> str:
    return ", ".join(option.env) if option.env else "(none)"


def help_text() -> str:
    """The text of ``cableway --help``: every option, its environment variable and default."""
    out = [USAGE, "", INTRO]
    for section, options in _sections().items():
        out += ["", f"{section}:"]
        for option in options:
            details = f"env: {_env_text(option)}; default: {option.default}"
            out += _help_entry(_flag_usage(option), [option.help, details])
    out += ["", "Recognised AnyCable options that Cableway refuses (exit status 2):"]
    for name, refusal in REFUSED.items():
        env = _env_text(next(o for o in (*OPTIONS, *refused_options()) if o.name == name))
        accepted = refusal.accepted.replace("`", "")
        out += _help_entry(
            f"--{name}", [refusal.reason, f"env: {env}; accepted values: {accepted}"]
        )
    out += ["", "Other:"]
    out += _help_entry("-h, --help", ["show this help and exit"])
    out += _help_entry("--version", ["print the version and exit"])
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def options_markdown() -> str:
    """The generated part of docs/configuration.md (kept in sync by a test)."""
    out: list[str] = []
    for section, options in _sections().items():
        out += [f"### {section}", "", "| Flag | Environment | Default | Meaning |"]
        out.append("|---|---|---|---|")
        for option in options:
            env = ", ".join(f"`{name}`" for name in option.env) or "(none)"
            meaning = option.help
            if option.replaced_by is not None:
                meaning = f"**deprecated**: {meaning}"
            out.append(
                f"| `{option.flag}` | {env} | `{_cell(option.default)}` | {_cell(meaning)} |"
            )
        out.append("")
    out += [
        "### Recognised but not supported yet",
        "",
        "These AnyCable options are refused with an error (exit status 2) rather than ignored,",
        "unless they carry one of the accepted values.",
        "",
        "| Flag | Environment | Accepted values | Why |",
        "|---|---|---|---|",
    ]
    every = {option.name: option for option in (*OPTIONS, *refused_options())}
    for name, refusal in REFUSED.items():
        env = ", ".join(f"`{variable}`" for variable in every[name].env)
        out.append(f"| `--{name}` | {env} | {refusal.accepted} | {_cell(refusal.reason)} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def _run_server(config: Config) -> None:
    # Imported lazily: the transport (and trio) are only needed when the server really runs.
    import trio

    from .transport.server import serve

    trio.run(serve, config)


def main(argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None) -> int:
    """Run ``cableway``; returns the exit status (0 ok, 2 configuration error, 130 Ctrl-C).

    ``argv`` excludes the program name (default ``sys.argv[1:]``); ``env`` defaults to
    ``os.environ``.
    """
    args = _strip_serve(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        sys.stdout.write(help_text())
        return 0
    if "--version" in args:
        sys.stdout.write(f"cableway {__version__}\n")
        return 0
    try:
        config, warnings = load_config_with_warnings(args, os.environ if env is None else env)
    except ConfigError as exc:
        sys.stderr.write(f"cableway: error: {exc}\n")
        return 2

    configure_logging(config.log_level)
    log.info("Starting Cableway %s (pid: %d)", __version__, os.getpid())
    for warning in warnings:
        log.warning("%s", warning)
    log.debug("Configuration: %s", config)
    try:
        _run_server(config)
    except KeyboardInterrupt:
        return 130
    return 0
