"""Cableway for Flask: an extension reading ``app.config`` and the Jinja helpers::

    from flask import Flask
    from cableway.flask import Cableway

    app = Flask(__name__)
    app.config["CABLEWAY_SECRET"] = "change-me"     # or ANYCABLE_SECRET in the environment
    cable = Cableway(app, identifiers=lambda: {"user_id": current_user.id})

    cable.broadcast(("room", 1, "messages"), turbo_stream.append("messages", html))

Settings are the ``CABLEWAY_<NAME>`` keys of ``app.config`` (``CABLEWAY_SECRET``,
``CABLEWAY_WEBSOCKET_URL``, ``CABLEWAY_HTTP_BROADCAST_URL``...: the names of
:class:`cableway.integration.IntegrationSettings`), each missing one from
``ANYCABLE_<NAME>``. Templates get ``turbo_stream_from`` and ``cable_meta_tag``
(:mod:`cableway.jinja`). Supported: Flask 3.0 and later (tested with 3.1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, current_app, has_app_context, render_template

from .jinja import configure
from .toolkit import turbo_stream
from .toolkit.integration import (
    TURBO_STREAM_MEDIA_TYPE,
    IntegrationSettings,
    Publisher,
    set_settings_provider,
    stream_name,
)
from .toolkit.turbo_stream import AttributeValue

__all__ = ["Cableway", "turbo_stream_response"]

IdentifiersLoader = Callable[[], Mapping[str, object] | None]


def turbo_stream_response(*streams: str, status: int = 200) -> Response:
    """A response of Turbo Stream HTML (``text/vnd.turbo-stream.html``), the ``streams``
    concatenated."""
    return Response("".join(streams), status=status, mimetype=TURBO_STREAM_MEDIA_TYPE)


class Cableway:
    """The Flask extension (``Cableway(app)`` or ``cable.init_app(app)``).

    Args:
        identifiers: gives the current visitor's identifiers for ``cable_meta_tag()``
            (called during the request; ``None``: anonymous).
    """

    def __init__(self, app: Flask | None = None, *, identifiers: IdentifiersLoader | None = None):
        self.identifiers = identifiers
        self._app: Flask | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the settings from ``app.config`` (raises :class:`ValueError` for an unknown
        ``CABLEWAY_*`` key) and install the Jinja helpers."""
        settings = IntegrationSettings.from_mapping(app.config.get_namespace("CABLEWAY_"))
        app.extensions["cableway"] = settings
        self._app = app
        loader = self.identifiers

        def identifiers(context: Any) -> Mapping[str, object] | None:
            return loader() if loader is not None else None

        configure(app.jinja_env, settings, identifiers=identifiers)
        set_settings_provider(self._current_settings)

    def _current_settings(self) -> IntegrationSettings:
        app = current_app if has_app_context() else self._app
        if app is None or "cableway" not in app.extensions:
            raise RuntimeError("Cableway is not initialised: call init_app(app) first")
        settings: IntegrationSettings = app.extensions["cableway"]
        return settings

    @property
    def settings(self) -> IntegrationSettings:
        """The settings of the current application (else of the one given to init_app)."""
        return self._current_settings()

    def broadcast(self, stream: object, data: object) -> bool:
        """Send ``data`` to ``stream`` (an unsigned name, or a tuple of parts named as
        ``turbo_stream_from`` names them). A failure is logged and ``False`` returned, unless
        ``CABLEWAY_RAISE_BROADCAST_ERRORS``; captured in tests (:mod:`cableway.testing`)."""
        if isinstance(stream, str):
            name = stream
        elif isinstance(stream, tuple | list):
            name = stream_name(*stream)
        else:
            name = stream_name(stream)
        return Publisher(self.settings).broadcast(name, data)

    def render_turbo_stream(
        self,
        action: str,
        target: str | None = None,
        template_name: str | None = None,
        *,
        targets: str | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
        **context: Any,
    ) -> str:
        """One ``<turbo-stream>`` whose content is ``template_name`` rendered with
        ``context`` (Jinja escapes it); ``remove`` and ``refresh`` need no template."""
        html = render_template(template_name, **context) if template_name else ""
        return turbo_stream.turbo_stream(action, target, targets, html, **(attributes or {}))
