"""``cableway check WS_URL``: a conformance suite for any Action Cable server.

Connects to the server at ``WS_URL`` (Rails Action Cable, AnyCable-Go, Cableway...) as an
Action Cable client and checks the behaviours that apply to what it is told. The checks, the
profile each belongs to and the option each needs are in :data:`CHECKS` and in
``docs/conformance.md``.

- **Profiles.** ``actioncable`` (the default) holds the server to the Action Cable protocol as
  Rails implements it; ``--profile anycable`` adds AnyCable's extensions (``reject_subscription``
  for unknown channels, JWT identification, the extended protocol, signed ``$pubsub``, whisper,
  presence, Server-Sent Events).
- **Verdicts.** ``PASS``; ``FAIL`` with the evidence (what was sent, what came back); ``SKIP``
  with the option that enables the check; ``NOT RUN`` when a check it depends on did not pass.
- **Exit status.** 0 compliant, 1 non-compliant, 2 usage error, 3 the server is unreachable or
  unusable (nothing listens, it never answers the WebSocket handshake, or it refuses it).
- **Bounded.** Every check has its own time limit, covering its handshakes; checks run
  concurrently (four at a time) and the whole run has a limit of its own.

Modules: :mod:`.client` (the WebSocket client, its errors and evidence), :mod:`.model` (the
options and the verdicts), :mod:`.harness` (the connections and requests the checks open),
:mod:`.suite` (the registry of checks; the checks themselves live in a module per concern, listed
there), :mod:`.runner` (the :class:`Checker` that runs them); this one is the command line and the
reports.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urlsplit

import trio

from .client import CheckFailed, Unusable, compact
from .model import ACTIONCABLE, ANYCABLE, FAIL, NOT_RUN, PASS, PROFILES, SKIP, Options, Result
from .runner import Checker
from .suite import CHECKS, Check

__all__ = [
    "ACTIONCABLE",
    "ANYCABLE",
    "CHECKS",
    "FAIL",
    "NOT_RUN",
    "PASS",
    "SKIP",
    "Check",
    "CheckFailed",
    "Checker",
    "Options",
    "Result",
    "Unusable",
    "counts",
    "exit_status",
    "format_result",
    "junit_xml",
    "main",
    "parse_args",
]

#: Exit statuses
COMPLIANT, NON_COMPLIANT, USAGE, UNUSABLE = 0, 1, 2, 3
# -- reporting --------------------------------------------------------------------------------


def format_result(result: Result) -> str:
    """The human-readable lines of one result (evidence indented under a failure)."""
    head = f"{result.status:<7} {result.name:<30} [{result.profile}] {result.detail}"
    lines = [head.rstrip()]
    if result.status == FAIL:
        lines += [f"          sent: {text}" for text in result.sent]
        lines += [f"          received: {text}" for text in result.received]
    return "\n".join(lines)


def counts(results: Sequence[Result]) -> dict[str, int]:
    return {
        "passed": sum(r.status == PASS for r in results),
        "failed": sum(r.status == FAIL for r in results),
        "skipped": sum(r.status == SKIP for r in results),
        "not_run": sum(r.status == NOT_RUN for r in results),
    }


def exit_status(results: Sequence[Result]) -> int:
    """3 when the server could not be used at all, 1 when a check failed, else 0."""
    by_name = {r.name: r for r in results}
    handshake = by_name.get("handshake")
    if handshake is not None and handshake.status == FAIL and handshake.unusable:
        return UNUSABLE
    if any(r.status in (FAIL, NOT_RUN) for r in results):
        return NON_COMPLIANT
    return COMPLIANT


def junit_xml(results: Sequence[Result], url: str) -> str:
    """A JUnit XML report: one testcase per check (SKIP and NOT RUN as skipped)."""
    from xml.etree import ElementTree as ET

    total = counts(results)
    suite = ET.Element(
        "testsuite",
        name="cableway check",
        tests=str(len(results)),
        failures=str(total["failed"]),
        errors="0",
        skipped=str(total["skipped"] + total["not_run"]),
        time=f"{sum(r.duration for r in results):.3f}",
    )
    ET.SubElement(ET.SubElement(suite, "properties"), "property", name="url", value=url)
    for result in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"cableway.check.{result.profile}",
            name=result.name,
            time=f"{result.duration:.3f}",
        )
        if result.status == FAIL:
            failure = ET.SubElement(case, "failure", message=result.detail)
            failure.text = "\n".join(
                [*(f"sent: {t}" for t in result.sent), *(f"received: {t}" for t in result.received)]
            )
        elif result.status == SKIP:
            ET.SubElement(case, "skipped", message=result.detail)
        elif result.status == NOT_RUN:
            ET.SubElement(case, "skipped", message=f"not run: {result.detail}")
    ET.indent(suite)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )


# -- the command line -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Output:
    as_json: bool = False
    junit: str | None = None


def _params(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not valid JSON") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, e.g. {"room":"1"}')
    return value


#: The secrets' environment variables, as the server and the other helpers read them
SECRET_ENV = {
    "secret": "ANYCABLE_SECRET",
    "turbo_secret": "ANYCABLE_TURBO_STREAMS_SECRET",
    "streams_secret": "ANYCABLE_STREAMS_SECRET",
    "jwt_key": "ANYCABLE_JWT_SECRET",
    "broadcast_key": "ANYCABLE_BROADCAST_KEY",
}


def parse_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[Options, Output]:
    """The options and the output format; exits (status 2) on a usage error.

    Secrets not given as options come from ``env`` (default: ``os.environ``), as
    :data:`SECRET_ENV` says; empty or ``none`` counts as unset.
    """
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="cableway check",
        description=(
            "Check an Action Cable server (Rails, AnyCable-Go, Cableway) for conformance.\n\n"
            "Verdicts: PASS, FAIL (with what was sent and received), SKIP (with the option\n"
            "that enables the check), NOT RUN (a check it depends on did not pass).\n"
            "Exit status: 0 compliant, 1 non-compliant, 2 usage error, 3 the server is\n"
            "unreachable or unusable (no answer, or the WebSocket handshake is refused)."
        ),
        epilog=(
            "examples:\n"
            "  cableway check ws://localhost:3000/cable --turbo_streams_secret KEY \\\n"
            '      --channel ChatChannel --params \'{"room":"1"}\' --action speak\n'
            "  cableway check ws://localhost:8080/cable --profile anycable --secret S \\\n"
            "      --broadcast_url http://localhost:8080/_broadcast --fuzz --json\n\n"
            "environment: the secrets default to ANYCABLE_SECRET, ANYCABLE_TURBO_STREAMS_SECRET,\n"
            "ANYCABLE_STREAMS_SECRET, ANYCABLE_JWT_SECRET and ANYCABLE_BROADCAST_KEY."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("url", metavar="WS_URL", help="e.g. ws://localhost:8080/cable")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default=ACTIONCABLE,
        help="actioncable: the protocol as Rails does it (default); "
        "anycable: also AnyCable's extensions",
    )
    secrets_group = parser.add_argument_group("what the server is configured with")
    secrets_group.add_argument(
        "--secret",
        help="the application secret (default for every secret below and the broadcast key)",
    )
    secrets_group.add_argument(
        "--turbo_streams_secret",
        "--turbo-secret",
        dest="turbo_secret",
        help="Turbo Streams signing key (signed Turbo::StreamsChannel subscribes)",
    )
    secrets_group.add_argument(
        "--streams_secret", help="signed $pubsub streams key (anycable profile)"
    )
    secrets_group.add_argument(
        "--jwt_secret", "--jwt-key", dest="jwt_key", help="JWT identification key (anycable)"
    )
    secrets_group.add_argument(
        "--jwt_param",
        "--jwt-param",
        dest="jwt_param",
        default="jid",
        help="query parameter of the token (default jid)",
    )
    secrets_group.add_argument(
        "--broadcast_url",
        "--broadcast-url",
        dest="broadcast_url",
        help="HTTP broadcast endpoint, e.g. http://localhost:8080/_broadcast",
    )
    secrets_group.add_argument(
        "--broadcast_key",
        "--broadcast-key",
        dest="broadcast_key",
        help='bearer key of the broadcast endpoint (default: derived from --secret; "none")',
    )
    secrets_group.add_argument(
        "--streams_whisper",
        action="store_true",
        help="the server allows whisper on signed $pubsub streams (anycable)",
    )
    secrets_group.add_argument(
        "--sse_path", default="/events", help="Server-Sent Events path (default /events)"
    )
    secrets_group.add_argument(
        "--ping_interval",
        "--ping-interval",
        dest="ping_interval",
        type=float,
        default=3.0,
        help="the server's ping interval in seconds (default 3)",
    )
    app = parser.add_argument_group("application channels")
    app.add_argument("--channel", help="a channel the server confirms, e.g. ChatChannel")
    app.add_argument(
        "--params", type=_params, default={}, help='its identifier params as JSON: {"room":"1"}'
    )
    app.add_argument("--action", help="an action of --channel that transmits something back")
    run = parser.add_argument_group("running")
    run.add_argument("--fuzz", action="store_true", help="also send malformed commands/frames")
    run.add_argument(
        "--shutdown_command",
        metavar="COMMAND",
        help="a command that stops the server (e.g. 'kill -TERM PID'; split like a shell "
        "line, without a shell), run last "
        "(anycable: clients must get server_restart)",
    )
    run.add_argument(
        "--origin", help="Origin header to send (default: the URL's own, http(s)://host:port)"
    )
    run.add_argument("--timeout", type=float, default=5.0, help="seconds per wait (default 5)")
    run.add_argument("--insecure", action="store_true", help="wss: skip TLS verification")
    run.add_argument("--json", action="store_true", help="one JSON object per check as it ends")
    run.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report to FILE")
    args = parser.parse_args(list(argv))
    for name, variable in SECRET_ENV.items():
        value = env.get(variable, "")
        if getattr(args, name) is None and value and value.lower() != "none":
            setattr(args, name, value)
    if urlsplit(args.url).scheme not in ("ws", "wss") or not urlsplit(args.url).hostname:
        parser.error(f"WS_URL must start with ws:// or wss:// and name a host (got {args.url!r})")
    for name in ("ping_interval", "timeout"):
        value = getattr(args, name)
        if not 0 < value < float("inf"):
            parser.error(f"--{name} must be a positive number of seconds")
    if args.action and not args.channel:
        parser.error("--action needs --channel")
    if args.shutdown_command is not None:
        try:
            if not shlex.split(args.shutdown_command):
                parser.error("--shutdown_command is empty")
        except ValueError as exc:
            parser.error(f"--shutdown_command: {exc}")
    options = Options(
        url=args.url,
        profile=args.profile,
        secret=args.secret,
        turbo_secret=args.turbo_secret,
        streams_secret=args.streams_secret,
        jwt_key=args.jwt_key,
        jwt_param=args.jwt_param,
        broadcast_url=args.broadcast_url,
        broadcast_key=args.broadcast_key,
        channel=args.channel,
        action=args.action,
        params=args.params,
        sse_path=args.sse_path,
        streams_whisper=args.streams_whisper,
        shutdown_command=args.shutdown_command,
        fuzz=args.fuzz,
        origin=args.origin,
        ping_interval=args.ping_interval,
        timeout=args.timeout,
        insecure=args.insecure,
    )
    return options, Output(as_json=bool(args.json), junit=args.junit)


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """``cableway check WS_URL [options]``; returns the exit status."""
    stream = sys.stdout if out is None else out
    try:
        options, output = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else USAGE

    order = [check.name for check in CHECKS]
    finished: dict[str, Result] = {}

    def report(result: Result) -> None:
        if output.as_json:  # as each check ends
            stream.write(compact(result.as_dict()) + "\n")
        else:  # in the order of the table, as soon as the checks before it ended
            finished[result.name] = result
            while order and order[0] in finished:
                stream.write(format_result(finished[order.pop(0)]) + "\n")
        stream.flush()

    results = trio.run(Checker(options, report=report).run)
    status = exit_status(results)
    total = counts(results)
    if output.as_json:
        stream.write(compact({**total, "exit": status}) + "\n")
    else:
        stream.write(
            f"{total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped, "
            f"{total['not_run']} not run\n"
        )
        if status == UNUSABLE:
            handshake = next(r for r in results if r.name == "handshake")
            hint = ""
            if "handshake was refused" in handshake.detail:
                hint = " (check the path, --origin and the token options)"
            stream.write(f"the server is unreachable or unusable: {handshake.detail}{hint}\n")
    if output.junit:
        with open(output.junit, "w", encoding="utf-8") as file:
            file.write(junit_xml(results, options.url))
    return status
