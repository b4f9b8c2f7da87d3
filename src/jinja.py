"""Jinja2 templates (Flask, FastAPI/Starlette, plain Jinja): ``turbo_stream_from`` and
``cable_meta_tag`` as template globals::

    env = jinja2.Environment(extensions=["cableway.jinja.CablewayExtension"], autoescape=True)
    configure(env, settings, identifiers=lambda context: {"user_id": context["user"].id})

.. code-block:: html+jinja

    {{ cable_meta_tag() }}                      {# token for the context's identifiers #}
    {{ cable_meta_tag(user_id=user.id, expires_in=600) }}
    {{ turbo_stream_from(room, "messages") }}
    {{ turbo_stream_from(room, "messages", sse=True) }}

Both return :class:`markupsafe.Markup` whose every value is escaped. Settings: those given
to :func:`configure`, else the framework integration's (the Flask extension's), else
``ANYCABLE_*``. Supported: Jinja2 3.1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import Environment, pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context
from markupsafe import Markup

from .toolkit.integration import (
    IntegrationSettings,
    current_settings,
    token_for,
    turbo_stream_source,
)
from .toolkit.integration import cable_meta_tag as _meta_tag

__all__ = ["CablewayExtension", "IdentifiersFunction", "configure"]

#: Gives the identifiers of the page's visitor from the template context (``None``: anonymous).
IdentifiersFunction = Callable[[Context], Mapping[str, object] | None]


def _settings(context: Context) -> IntegrationSettings:
    settings = getattr(context.environment, "cableway_settings", None)
    return settings if isinstance(settings, IntegrationSettings) else current_settings()


def _identifiers(context: Context) -> Mapping[str, object] | None:
    function: IdentifiersFunction | None = getattr(
        context.environment, "cableway_identifiers", None
    )
    return function(context) if function is not None else None


@pass_context
def turbo_stream_from(
    context: Context, *streamables: object, sse: bool = False, **attributes: str
) -> Markup:
    """The page's subscription to the stream named by ``streamables`` (see
    :func:`cableway.integration.turbo_stream_source`); ``sse=True`` adds the visitor's token
    to the SSE URL."""
    settings = _settings(context)
    token = token_for(settings, _identifiers(context)) if sse else None
    html = turbo_stream_source(settings, *streamables, sse=sse, token=token, **attributes)
    return Markup(html)  # noqa: S704  (every value in it is escaped)


@pass_context
def cable_meta_tag(
    context: Context, expires_in: float | str | None = "default", **identifiers: object
) -> Markup:
    """``<meta name="action-cable-url">`` with a token for ``identifiers``, else for the
    identifiers :func:`configure` gives; with neither, no token (anonymous)."""
    found = identifiers or _identifiers(context)
    html = _meta_tag(_settings(context), found, expires_in=expires_in)
    return Markup(html)  # noqa: S704  (every value in it is escaped)


class CablewayExtension(Extension):
    """Adds ``turbo_stream_from`` and ``cable_meta_tag`` to the environment's globals."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.extend(cableway_settings=None, cableway_identifiers=None)
        environment.globals["turbo_stream_from"] = turbo_stream_from
        environment.globals["cable_meta_tag"] = cable_meta_tag


def configure(
    environment: Environment,
    settings: IntegrationSettings | None = None,
    *,
    identifiers: IdentifiersFunction | None = None,
) -> Environment:
    """Install :class:`CablewayExtension` (once) and set its settings and identifiers
    function; returns ``environment``."""
    if "cableway.jinja.CablewayExtension" not in environment.extensions:
        environment.add_extension(CablewayExtension)
    attrs: dict[str, Any] = {}
    if settings is not None:
        attrs["cableway_settings"] = settings
    if identifiers is not None:
        attrs["cableway_identifiers"] = identifiers
    for name, value in attrs.items():
        setattr(environment, name, value)
    return environment
