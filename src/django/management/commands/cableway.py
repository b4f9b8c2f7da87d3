"""``python manage.py cableway [-- SERVER OPTIONS]``: run the Cableway server with the secrets
and URLs of this project's settings."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from ....toolkit.integration import IntegrationSettings
from ...conf import get_settings

#: Settings passed to the server under the same name (``ANYCABLE_<NAME>``).
_SHARED = ("secret", "jwt_secret", "streams_secret", "turbo_streams_secret", "broadcast_key")


def server_environment(
    settings: IntegrationSettings, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``env`` (default ``os.environ``) with the server options these settings imply:
    the secrets, the port and path of ``websocket_url``, ``sse_path``, ``jwt_param``, and
    Turbo Streams and SSE on (unless the environment says otherwise). Command-line options
    still win over all of them."""
    result = dict(os.environ if env is None else env)
    for name in _SHARED:
        value = getattr(settings, name)
        if value:
            result["ANYCABLE_" + name.upper()] = value
    cable = urlsplit(settings.websocket_url)
    if cable.port is not None:
        result["ANYCABLE_PORT"] = str(cable.port)
    if cable.path and cable.path != "/":
        result["ANYCABLE_PATH"] = cable.path
    result["ANYCABLE_SSE_PATH"] = settings.sse_path
    result["ANYCABLE_JWT_PARAM"] = settings.jwt_param
    broadcast = urlsplit(settings.broadcast_url)
    if broadcast.path:
        result["ANYCABLE_HTTP_BROADCAST_PATH"] = broadcast.path
    if broadcast.port is not None and broadcast.port != cable.port:
        result["ANYCABLE_HTTP_BROADCAST_PORT"] = str(broadcast.port)
    result.setdefault("ANYCABLE_TURBO_STREAMS", "true")
    result.setdefault("ANYCABLE_SSE", "true")
    return result


class Command(BaseCommand):
    """``manage.py cableway``: :func:`cableway.cli.main` with :func:`server_environment`."""

    help = (
        "Run the Cableway server with the secrets and URLs of settings.CABLEWAY "
        "(other options go to the server, e.g. --host 0.0.0.0, --print-config)."
    )
    requires_system_checks: ClassVar[list[str]] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        """Options Django does not know go to the server (``--host 0.0.0.0``)."""
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parse_known = parser.parse_known_args

        def parse_args(args: Any = None, namespace: Any = None) -> argparse.Namespace:
            options, rest = parse_known(args, namespace)
            options.server_options = [arg for arg in rest if arg != "--"]
            return options  # type: ignore[no-any-return]

        parser.parse_args = parse_args
        return parser

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the server until it stops (Ctrl-C); a configuration error is a CommandError."""
        from ....cli import main

        argv = list(options.get("server_options") or [])
        status = main(["serve", *argv], env=server_environment(get_settings()))
        if status not in (0, 130):
            raise CommandError(f"cableway exited with status {status}", returncode=status)
