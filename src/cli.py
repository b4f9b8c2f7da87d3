"""The ``cableway`` command: ``cableway [serve] [options]`` and the backend helpers.

``cableway`` / ``cableway serve`` parse the configuration (:mod:`cableway.config`), set up
logging and run the server. Errors in the configuration are reported as one
``cableway: error: ...`` line with exit status 2.

The same binary carries helpers for application backends (:mod:`cableway.streams`,
:mod:`cableway.tokens`, :mod:`cableway.broadcaster`): ``cableway sign``, ``cableway token``
and ``cableway broadcast``; ``cableway check`` is dispatched to :mod:`cableway.tools.check`. A first
argument starting with ``-`` always means ``serve``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from . import __version__
from .config import (
    DEFAULT_CONFIG_PATHS,
    Config,
    ConfigError,
    StartupError,
    config_toml,
    file_options,
    load_config,
    load_config_with_warnings,
    read_config_file,
)
from .config.options import BY_NAME, OPEN_BROADCAST_PORT
from .config.render import help_entry, options_help, options_markdown
from .ops.logs import configure_logging

__all__ = ["help_text", "load_effective_config", "main", "options_markdown", "parse_args"]

log = logging.getLogger("cableway")

USAGE = """\
usage: cableway [serve] [options]
       cableway {sign,token,broadcast,check} ...  (see cableway COMMAND --help)"""
INTRO = f"""\
Cableway: an AnyCable-compatible real-time server (Action Cable protocol and Hotwire Turbo
Streams) on trio. `cableway` and `cableway serve` are the same command.

Every option can also be set with the environment variable shown, or in a TOML configuration
file ({", ".join(DEFAULT_CONFIG_PATHS)} or --config-path): AnyCable-Go 1.6's layout
([server] port = 8080; see docs/configuration.md), or flat keys named like the options
(port = 8080). Flags win over the environment, which wins over the file; an empty
variable counts as unset. Boolean flags take no value (--noauth) or an explicit one
(--noauth=false). Secret options accept "none" to mean unset."""


def _strip_serve(argv: Sequence[str]) -> list[str]:
    args = list(argv)
    if args and args[0] == "serve":
        del args[0]
    return args


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> Config:
    """The configuration for ``cableway [serve] <argv>`` (program name excluded) and ``env``.

    Reads no configuration file (see :func:`load_effective_config`).
    """
    return load_config(_strip_serve(argv), env)


def load_effective_config(
    argv: Sequence[str],
    env: Mapping[str, str],
    exists: Callable[[str], bool] = os.path.isfile,
) -> tuple[Config, tuple[str, ...], str | None]:
    """(config, warnings, file read) for ``cableway [serve] <argv>``: file < env < flags.

    The file is ``--config-path`` / ``ANYCABLE_CONFIG_PATH``, else the first default path that
    ``exists``; ``--ignore-config-path`` reads none. Raises :class:`ConfigError`.
    """
    args = _strip_serve(argv)
    path = file_options(args, env).path(exists)
    values = None if path is None else read_config_file(path)
    config, warnings = load_config_with_warnings(
        args, env, file_values=values, file_name=path or "the configuration file"
    )
    return config, warnings, path


# ---------------------------------------------------------------------------------------------
# --help, from the option declarations (cableway.config.render)
# ---------------------------------------------------------------------------------------------


def help_text() -> str:
    """The text of ``cableway --help``: every option, its environment variable and default."""
    out = [USAGE, "", INTRO, *options_help()]
    out += ["", "Commands for application backends (each has --help):"]
    for name, summary in _COMMAND_SUMMARIES.items():
        out += help_entry(name, [summary])
    out += ["", "Other:"]
    out += help_entry("-h, --help", ["show this help and exit"])
    out += help_entry("--version", ["print the version and exit"])
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Backend helpers: cableway sign | token | broadcast | check
# ---------------------------------------------------------------------------------------------

_COMMAND_SUMMARIES = {
    "sign": "print the signed stream name of STREAM... (as turbo-rails signs it)",
    "token": "print an identification token (JWT) for key=value identifiers",
    "broadcast": "publish DATA to STREAM through the server's /_broadcast endpoint",
    "check": "check an Action Cable server (Rails, AnyCable, Cableway) for conformance",
}

TURBO_SECRET_ENV = ("ANYCABLE_TURBO_STREAMS_SECRET", "ANYCABLE_STREAMS_SECRET", "ANYCABLE_SECRET")
JWT_SECRET_ENV = ("ANYCABLE_JWT_SECRET", "ANYCABLE_SECRET")
BROADCAST_URL_ENV = "ANYCABLE_HTTP_BROADCAST_URL"
#: Where the server accepts broadcasts by default: its main port when it has a broadcast key
#: (or a secret to derive one), else the separate port 8090.
_BROADCAST_PATH = BY_NAME["http_broadcast_path"].value
SECURED_BROADCAST_URL = f"http://localhost:{BY_NAME['port'].value}{_BROADCAST_PATH}"
OPEN_BROADCAST_URL = f"http://localhost:{OPEN_BROADCAST_PORT}{_BROADCAST_PATH}"


class _UsageError(Exception):
    """A bad command line: reported on one line, exit status 2."""


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as exceptions instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


def _parser(command: str, usage_line: str, description: str, epilog: str) -> _Parser:
    return _Parser(
        prog=f"cableway {command}",
        description=f"{_COMMAND_SUMMARIES[command][0].upper()}"
        f"{_COMMAND_SUMMARIES[command][1:]}.\n\n{description}",
        epilog=epilog,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage=usage_line,
    )


def _env_value(env: Mapping[str, str], names: Sequence[str]) -> str | None:
    """The first set variable among ``names``; empty counts as unset, "none" means unset."""
    for name in names:
        value = env.get(name, "")
        if value and value.lower() != "none":
            return value
    return None


def _secret(given: str | None, env: Mapping[str, str], names: Sequence[str]) -> str:
    secret = given if given is not None else _env_value(env, names)
    if not secret or secret.lower() == "none":
        raise _UsageError(f"no secret: pass --secret or set {' / '.join(names)}")
    return secret


def _sign(argv: Sequence[str], env: Mapping[str, str]) -> int:
    from .toolkit.streams import signed_stream_name

    parser = _parser(
        "sign",
        "cableway sign [--secret SECRET] STREAM [STREAM ...]",
        "Several STREAM parts are joined with ':' (turbo_stream_from @room, :messages is\n"
        "`cableway sign <room gid param> messages`). Put the printed value in the page's\n"
        "signed-stream-name attribute (or ?turbo_signed_stream_name= for SSE); broadcast to the\n"
        "unsigned name.",
        "environment: the secret defaults to ANYCABLE_TURBO_STREAMS_SECRET, else\n"
        "ANYCABLE_STREAMS_SECRET, else ANYCABLE_SECRET (as the server resolves it).\n"
        "example: cableway sign --secret s3Krit chat/2023",
    )
    parser.add_argument("streams", nargs="+", metavar="STREAM", help="stream name part(s)")
    parser.add_argument("--secret", help="the server's Turbo Streams / streams secret")
    args = parser.parse_args(argv)
    secret = _secret(args.secret, env, TURBO_SECRET_ENV)
    try:
        signed = signed_stream_name(*args.streams, secret=secret)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    sys.stdout.write(signed + "\n")
    return 0


def _identifiers(pairs: Sequence[str], raw: str | None) -> dict[str, object]:
    if raw is not None:
        if pairs:
            raise _UsageError("give key=value identifiers or --identifiers, not both")
        try:
            value = json.loads(raw)
        except ValueError:
            raise _UsageError("--identifiers is not valid JSON") from None
        if not isinstance(value, dict) or not value:
            raise _UsageError("--identifiers must be a non-empty JSON object")
        return value
    identifiers: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _UsageError(f"identifier {pair!r} is not key=value")
        if key in identifiers:
            raise _UsageError(f"identifier {key!r} given twice")
        identifiers[key] = value
    if not identifiers:
        raise _UsageError("no identifiers: give key=value ... or --identifiers JSON")
    return identifiers


def _token(argv: Sequence[str], env: Mapping[str, str]) -> int:
    from .toolkit.tokens import identification_token

    parser = _parser(
        "token",
        "cableway token [--secret SECRET] [--ttl SECONDS] (key=value ... | --identifiers JSON)",
        "The token carries the identifiers as its `ext` claim (compact JSON) and expires after\n"
        "--ttl seconds. key=value values are strings; use --identifiers for other JSON\n"
        "values. Pass it to the server as ?jid=TOKEN on the cable URL (or an X-JID header).",
        "environment: the secret defaults to "
        + ", else ".join(JWT_SECRET_ENV)
        + ".\nexample: cableway token --secret my-secret user_id=42",
    )
    parser.add_argument("pairs", nargs="*", metavar="key=value", help="one identifier")
    parser.add_argument("--secret", help="the server's JWT secret")
    parser.add_argument(
        "--identifiers", metavar="JSON", help='all identifiers as a JSON object: {"user_id":42}'
    )
    parser.add_argument(
        "--ttl",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="lifetime in seconds (default 3600; 0 = never expires)",
    )
    args = parser.parse_args(argv)
    identifiers = _identifiers(args.pairs, args.identifiers)
    if not args.ttl >= 0 or args.ttl == float("inf"):
        raise _UsageError("--ttl must be a finite number of seconds, 0 or more")
    secret = _secret(args.secret, env, JWT_SECRET_ENV)
    try:
        token = identification_token(
            identifiers, secret, expires_in=args.ttl if args.ttl > 0 else None
        )
    except (TypeError, ValueError) as exc:
        raise _UsageError(str(exc)) from None
    sys.stdout.write(token + "\n")
    return 0


def _broadcast_key(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str | None, bool]:
    """(key, secured) from --key, --secret, ANYCABLE_BROADCAST_KEY, ANYCABLE_SECRET in order.

    ``secured`` is False only when no key is configured at all; "none" is an explicit
    "no authorization" (as on the server) and also stops the search.
    """
    from .auth.keys import derive_broadcast_key

    if args.key is not None:
        return (None, True) if args.key.lower() == "none" else (args.key, True)
    if args.secret is not None:
        if not args.secret or args.secret.lower() == "none":
            raise _UsageError("--secret is empty")
        return derive_broadcast_key(args.secret), True
    key = env.get("ANYCABLE_BROADCAST_KEY", "")
    if key:
        return (None, True) if key.lower() == "none" else (key, True)
    secret = _env_value(env, ["ANYCABLE_SECRET"])
    if secret:
        return derive_broadcast_key(secret), True
    return None, False


def _broadcast(argv: Sequence[str], env: Mapping[str, str]) -> int:
    from .toolkit.broadcaster import Broadcaster, BroadcastError

    parser = _parser(
        "broadcast",
        "cableway broadcast STREAM DATA [--url URL] [--key KEY | --secret SECRET] [--raw]",
        "DATA is delivered to subscribers as that exact string (it is JSON-encoded for the\n"
        "wire), which is what Turbo expects for <turbo-stream> HTML. With --raw, DATA is the\n"
        "publication's `data` field as is: JSON text reaches clients parsed. DATA '-' reads\n"
        "standard input. Exit status: 0 when the server accepted it (201), 1 when it did not.",
        "environment: the key defaults to ANYCABLE_BROADCAST_KEY, else one derived from\n"
        f"ANYCABLE_SECRET; the URL to {BROADCAST_URL_ENV}, else {SECURED_BROADCAST_URL}\n"
        f"with a key (the server's main port) or {OPEN_BROADCAST_URL} without one.\n"
        "example: cableway broadcast --secret my-secret chat/42 \\\n"
        '           \'<turbo-stream action="append" target="messages">'
        "<template>Hi</template></turbo-stream>'",
    )
    parser.add_argument("stream", metavar="STREAM", help="the (unsigned) stream name")
    parser.add_argument("data", metavar="DATA", help="the message ('-' = standard input)")
    parser.add_argument("--url", help="the broadcast endpoint URL")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--key", help='the broadcast key ("none": send no key)')
    auth.add_argument("--secret", help="the application secret to derive the key from")
    parser.add_argument("--raw", action="store_true", help="send DATA as the wire field as is")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="default 5")
    args = parser.parse_args(argv)
    if not args.stream:
        raise _UsageError("STREAM must not be empty")
    data: str = sys.stdin.read() if args.data == "-" else args.data
    key, secured = _broadcast_key(args, env)
    url = (
        args.url
        or env.get(BROADCAST_URL_ENV)
        or (SECURED_BROADCAST_URL if secured else OPEN_BROADCAST_URL)
    )
    if not args.timeout > 0 or args.timeout == float("inf"):
        raise _UsageError("--timeout must be a positive number of seconds")
    try:
        broadcaster = Broadcaster(url, key=key, timeout=args.timeout)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    try:
        if args.raw:
            broadcaster.broadcast_raw(args.stream, data)
        else:
            broadcaster.broadcast(args.stream, data)
    except BroadcastError as exc:
        sys.stderr.write(f"cableway: error: {exc}\n")
        return 1
    return 0


def _check(argv: Sequence[str], env: Mapping[str, str]) -> int:
    name = f"{__package__}.tools.check"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise _UsageError("cableway check is not available") from None
    run: Callable[[Sequence[str]], int] = module.main
    return run(list(argv))


_COMMANDS: dict[str, Callable[[Sequence[str], Mapping[str, str]], int]] = {
    "sign": _sign,
    "token": _token,
    "broadcast": _broadcast,
    "check": _check,
}


def _run_command(name: str, argv: Sequence[str], env: Mapping[str, str]) -> int:
    try:
        return _COMMANDS[name](argv, env)
    except _UsageError as exc:
        sys.stderr.write(f"cableway: error: {' '.join(str(exc).split())}\n")
        return 2
    except _Exit as exc:
        return exc.status


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def _run_server(
    config: Config, argv: Sequence[str], env: Mapping[str, str], demo_secret: str | None
) -> int:
    """Run the server (one process, a worker, or the supervisor of ``--workers``); the
    exit status."""
    # Imported lazily: the transport (and trio) are only needed when the server really runs.
    import trio

    from .transport.server import serve
    from .transport.worklink import WorkerRole, remove_orphaned_hub

    try:
        role = WorkerRole.from_env(env)
    except ValueError as exc:
        raise StartupError(str(exc)) from exc
    if role is None and config.workers > 1:
        from .transport.supervisor import Supervisor

        # --demo's generated secret: every worker must use the same one
        extra = {} if demo_secret is None else {"ANYCABLE_SECRET": demo_secret}

        async def supervise() -> int:
            failure = await Supervisor(config, argv, {**env, **extra}).run()
            return 0 if failure is None else failure.status

        return trio.run(supervise)
    trio.run(functools.partial(serve, config, worker=role))
    if role is not None:
        # a killed supervisor leaves its hub's directory: its last worker removes it
        remove_orphaned_hub(role.hub_path)
    return 0


def main(argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None) -> int:
    """Run ``cableway``; returns the exit status (0 ok, 1 the server could not start listening,
    2 configuration error, 130 Ctrl-C).

    ``argv`` excludes the program name (default ``sys.argv[1:]``); ``env`` defaults to
    ``os.environ``. ``cableway sign|token|broadcast|check ...`` run the backend helpers
    (status 0 ok, 1 broadcast failed, 2 bad command line).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _COMMANDS:
        return _run_command(argv[0], argv[1:], os.environ if env is None else env)
    args = _strip_serve(argv)
    if "-h" in args or "--help" in args:
        sys.stdout.write(help_text())
        return 0
    if "--version" in args:
        sys.stdout.write(f"cableway {__version__}\n")
        return 0
    environment = os.environ if env is None else env
    try:
        config, warnings, path = load_effective_config(args, environment)
        print_config = file_options(args, environment).print_config
    except ConfigError as exc:
        message = str(exc).replace("\r", " ").replace("\n", " ")
        sys.stderr.write(f"cableway: error: {message}\n")
        return 2
    if print_config:
        for warning in warnings:
            sys.stderr.write(f"cableway: warning: {warning}\n")
        sys.stdout.write(config_toml(config))
        return 0

    demo_secret: str | None = None
    if config.demo:
        from .tools.demo import demo_config

        config, demo_secret = demo_config(config)  # before logging: it redacts these secrets
    configure_logging(config)
    log.info("Starting Cableway %s (pid: %d)", __version__, os.getpid())
    if path is not None:
        log.info("Using configuration file %s", path)
    for warning in warnings:
        log.warning("%s", warning)
    if config.demo:
        from .tools.demo import startup_banner

        # straight to stderr, not through logging: the one place secrets are printed
        sys.stderr.write(startup_banner(config, demo_secret))
        sys.stderr.flush()
    log.debug("Configuration: %s", config)
    try:
        return _run_server(config, argv, environment, demo_secret)
    except KeyboardInterrupt:
        return 130
    except StartupError as exc:
        # one line for the person starting the server; the traceback only with --debug
        log.debug("the server could not start", exc_info=True)
        sys.stderr.write(f"cableway: error: {' '.join(exc.message.split())}\n")
        return 1
