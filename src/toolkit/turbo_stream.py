"""Turbo Stream HTML builders: the messages a page applies to its DOM.

    >>> from cableway import turbo_stream
    >>> turbo_stream.append("messages", "<p>Hi</p>")
    '<turbo-stream action="append" target="messages"><template><p>Hi</p></template></turbo-stream>'
    >>> turbo_stream.remove("message_5")
    '<turbo-stream action="remove" target="message_5"></turbo-stream>'

Attribute values (``target``, ``targets``, extra attributes) are HTML-escaped here. The
``html`` content is inserted **as is**: it is your markup, and any user-supplied text inside
it must be escaped by you (your template engine does it, or use :func:`escape`)::

    turbo_stream.append("messages", f"<p>{escape(message.text)}</p>")

Extra keyword attributes are written after ``action``/``target`` with underscores turned into
dashes (``request_id=`` → ``request-id``); ``True`` writes a bare attribute, ``False`` and
``None`` leave it out. For example ``replace("card", html, method="morph")`` uses Turbo 8
morphing.
"""

from __future__ import annotations

import html as _html
import re

__all__ = [
    "after",
    "append",
    "before",
    "escape",
    "prepend",
    "refresh",
    "remove",
    "replace",
    "turbo_stream",
    "update",
]

_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_:][-A-Za-z0-9_:.]*\Z")
_RESERVED = frozenset({"action", "target", "targets"})
#: Actions whose element carries no ``<template>`` (as in turbo-rails).
_NO_TEMPLATE = frozenset({"remove", "refresh"})

AttributeValue = str | int | float | bool | None


def escape(text: str) -> str:
    """Escape text for HTML content or a quoted attribute (``&``, ``<``, ``>``, ``"``, ``'``)."""
    return _html.escape(text, quote=True)


def _attributes(attributes: dict[str, AttributeValue]) -> str:
    out: list[str] = []
    for key, value in attributes.items():
        name = key.replace("_", "-")
        if not _ATTRIBUTE_NAME.match(name):
            raise ValueError(f"invalid attribute name {key!r}")
        if value is None or value is False:
            continue
        if value is True:
            out.append(f" {name}")
        else:
            out.append(f' {name}="{escape(str(value))}"')
    return "".join(out)


def _build(
    action: str,
    target: str | None,
    targets: str | None,
    html: str,
    attributes: dict[str, AttributeValue],
) -> str:
    if not action or not isinstance(action, str):
        raise ValueError("action must be a non-empty string")
    if target is not None and targets is not None:
        raise ValueError("give target or targets, not both")
    if not isinstance(html, str):
        raise TypeError("html must be a str")
    for name in attributes:
        if name.replace("_", "-") in _RESERVED:
            raise ValueError(f"{name!r} is set by its own argument")
    head: dict[str, AttributeValue] = {"action": action}
    if target is not None:
        head["target"] = target
    elif targets is not None:
        head["targets"] = targets
    opening = f"<turbo-stream{_attributes(head)}{_attributes(attributes)}>"
    body = "" if action in _NO_TEMPLATE else f"<template>{html}</template>"
    return f"{opening}{body}</turbo-stream>"


def turbo_stream(
    action: str,
    target: str | None = None,
    targets: str | None = None,
    html: str = "",
    **attributes: AttributeValue,
) -> str:
    """``<turbo-stream action="…" target="…"><template>html</template></turbo-stream>``.

    ``target`` is an element id; ``targets`` a CSS selector (give at most one). ``remove``
    and ``refresh`` have no template; every other action (including custom ones) does.
    """
    return _build(action, target, targets, html, attributes)


def _targeted(
    action: str,
    target: str | None,
    targets: str | None,
    html: str,
    attributes: dict[str, AttributeValue],
) -> str:
    if target is None and targets is None:
        raise ValueError(f"{action} needs a target (an element id) or targets (a CSS selector)")
    return _build(action, target, targets, html, attributes)


def append(
    target: str | None = None,
    html: str = "",
    *,
    targets: str | None = None,
    **attributes: AttributeValue,
) -> str:
    """Append ``html`` inside the target element(s), after existing children."""
    return _targeted("append", target, targets, html, attributes)


def prepend(
    target: str | None = None,
    html: str = "",
    *,
    targets: str | None = None,
    **attributes: AttributeValue,
) -> str:
    """Prepend ``html`` inside the target element(s), before existing children."""
    return _targeted("prepend", target, targets, html, attributes)


def replace(
    target: str | None = None,
    html: str = "",
    *,
    targets: str | None = None,
    **attributes: AttributeValue,
) -> str:
    """Replace the target element(s) with ``html`` (``method="morph"`` to morph)."""
    return _targeted("replace", target, targets, html, attributes)


def update(
    target: str | None = None,
    html: str = "",
    *,
    targets: str | None = None,
    **attributes: AttributeValue,
) -> str:
    """Replace the content of the target element(s) with ``html``."""
    return _targeted("update", target, targets, html, attributes)


def before(
    target: str | None = None,
    html: str = "",
    *,
    targets: str | None = None,
    **attributes: AttributeValue,
) -> str:
    """Insert ``html`` before the target element(s)."""
    return _targeted("before", target, targets, html, attributes)


def after(
    target: str | None = None,
    html: str = "",
    *,
    targets: str | None = None,
    **attributes: AttributeValue,
) -> str:
    """Insert ``html`` after the target element(s)."""
    return _targeted("after", target, targets, html, attributes)


def remove(
    target: str | None = None, *, targets: str | None = None, **attributes: AttributeValue
) -> str:
    """Remove the target element(s)."""
    return _targeted("remove", target, targets, "", attributes)


def refresh(request_id: str | None = None, **attributes: AttributeValue) -> str:
    """Ask the page to reload itself (Turbo 8 page refresh, morphing if the page opts in).

    A page ignores a refresh carrying the ``request-id`` of a request it made itself, so
    pass the ``X-Turbo-Request-Id`` header of the request that caused the change.
    """
    return _build("refresh", None, None, "", {"request_id": request_id, **attributes})
