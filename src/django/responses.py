"""Answers with Turbo Stream actions (``text/vnd.turbo-stream.html``) for form submissions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse

from ..toolkit import turbo_stream
from ..toolkit.integration import TURBO_STREAM_MEDIA_TYPE
from ..toolkit.integration import accepts_turbo_stream as _accepts
from ..toolkit.turbo_stream import AttributeValue

__all__ = [
    "TURBO_STREAM_MEDIA_TYPE",
    "TurboStreamResponse",
    "TurboStreamTemplateResponse",
    "accepts_turbo_stream",
    "render_turbo_stream",
]

_CONTENT_TYPE = f"{TURBO_STREAM_MEDIA_TYPE}; charset=utf-8"


class TurboStreamResponse(HttpResponse):
    """An ``HttpResponse`` of Turbo Stream HTML (content type ``text/vnd.turbo-stream.html``)::

    return TurboStreamResponse(turbo_stream.append("messages", html))
    """

    def __init__(self, content: str | bytes = b"", *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("content_type", _CONTENT_TYPE)
        super().__init__(content, *args, **kwargs)


class TurboStreamTemplateResponse(TemplateResponse):
    """A ``TemplateResponse`` whose template writes ``<turbo-stream>`` elements
    (``messages/create.turbo_stream.html``), with the Turbo Stream content type."""

    def __init__(self, request: HttpRequest, template: str | list[str], *args: Any, **kwargs: Any):
        kwargs.setdefault("content_type", _CONTENT_TYPE)
        super().__init__(request, template, *args, **kwargs)


def render_turbo_stream(
    action: str,
    target: str | None = None,
    template_name: str | None = None,
    context: Mapping[str, Any] | None = None,
    request: HttpRequest | None = None,
    *,
    targets: str | None = None,
    **attributes: AttributeValue,
) -> str:
    """One ``<turbo-stream>`` whose content is ``template_name`` rendered with ``context``
    (Django escapes it): ``render_turbo_stream("append", "messages", "chat/_message.html",
    {"message": m})``. ``remove`` and ``refresh`` need no template."""
    html = render_to_string(template_name, dict(context or {}), request) if template_name else ""
    return turbo_stream.turbo_stream(action, target, targets, html, **attributes)


def accepts_turbo_stream(request: HttpRequest) -> bool:
    """Whether the request's ``Accept`` header lists ``text/vnd.turbo-stream.html`` (Turbo
    adds it to form submissions)."""
    return _accepts(request.headers.get("Accept"))
