"""``{% load cableway %}``: ``turbo_stream_from`` and ``cable_meta_tag``.

``{% turbo_stream_from room "messages" %}`` renders the ``<turbo-cable-stream-source>`` that
subscribes the page to the signed stream ``room:messages`` (``sse=True``: a
``<turbo-stream-source>`` over Server-Sent Events, with the visitor's token);
``{% cable_meta_tag %}`` renders ``<meta name="action-cable-url">`` with a token for
``request.user`` (``{% cable_meta_tag expires_in=600 %}``, or explicit identifiers:
``{% cable_meta_tag user_id=request.user.pk team=team.pk %}``). Every value is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping

from django import template
from django.utils.safestring import SafeString, mark_safe

from ...toolkit.integration import cable_meta_tag as _meta_tag
from ...toolkit.integration import token_for, turbo_stream_source
from ..conf import get_identifiers, get_settings

register = template.Library()


def _identifiers(context: template.Context) -> Mapping[str, object] | None:
    """The request's identifiers (a ``RequestContext``'s request, or ``request`` in the
    context), else ``None``: an anonymous connection."""
    request = getattr(context, "request", None) or context.get("request")
    if request is None:
        return None
    return get_identifiers(request)


@register.simple_tag(takes_context=True)
def turbo_stream_from(
    context: template.Context, *streamables: object, sse: bool = False, **attributes: str
) -> SafeString:
    """The page's subscription to the stream named by ``streamables`` (models are named
    ``gid://<app_label>/<Model>/<pk>``; strings and numbers as they are)."""
    settings = get_settings()
    token = token_for(settings, _identifiers(context)) if sse else None
    html = turbo_stream_source(settings, *streamables, sse=sse, token=token, **attributes)
    return mark_safe(html)  # noqa: S308  (every value in it is escaped)


@register.simple_tag(takes_context=True)
def cable_meta_tag(
    context: template.Context, expires_in: float | str | None = "default", **identifiers: object
) -> SafeString:
    """``<meta name="action-cable-url">`` with a token for the identifiers given, else for
    the request's user (``CABLEWAY["identifiers"]``); without a request in the context, no
    token. ``expires_in`` in seconds (default ``jwt_ttl``; ``None``: no expiry)."""
    found: Mapping[str, object] | None = identifiers or _identifiers(context)
    html = _meta_tag(get_settings(), found, expires_in=expires_in)
    return mark_safe(html)  # noqa: S308  (every value in it is escaped)
