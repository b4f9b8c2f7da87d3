"""Endpoint paths as AnyCable-Go routes them: literal paths, ``{placeholders}`` and a ``*`` tail.

AnyCable-Go (1.4+) registers every endpoint path (``--path``, ``--sse_path``,
``--health-path``, ``--http_broadcast_path``, ``--metrics_http``) on a go-chi v5 router, so
each one may be a chi routing pattern (go-chi/chi v5.3.1 ``tree.go``, which AnyCable-Go 1.6.16
pins):

* literal text matches itself (``/cable``; no trailing-slash or case folding);
* ``{name}`` matches the characters up to the first occurrence of the character that
  follows the ``}`` in the pattern (``/`` when the placeholder ends the pattern), never a
  ``/``: ``/accounts/{tenant}/cable`` matches ``/accounts/acme/cable``. As in chi, the value
  may be empty inside the path (``/accounts//cable``) but not at its end (``/accounts/``
  does not match ``/accounts/{tenant}``);
* ``{name:regexp}`` is the same, except that the value must be non-empty and match the
  regular expression (anchored, ``^regexp$``) and, as in chi, is not checked for ``/``;
* ``*`` as the very last character matches the rest of the path, ``/`` included, possibly
  empty: ``/admin/cable/*`` matches ``/admin/cable/`` and ``/admin/cable/a/b``, not
  ``/admin/cable``.

What chi refuses (it panics at start-up, so AnyCable-Go does not start) is refused here too:
a ``*`` anywhere but at the very end, a ``{`` without its ``}``, a name used twice, an invalid
regular expression, and a pattern with a space or tab (chi takes the text before it as an HTTP
method). When several endpoints match one request path, the one chi's radix tree tries first
wins: at the first place the patterns differ, literal text beats a placeholder, which beats a
regular-expression placeholder, which beats ``*``; equal patterns go to the first registered.

Pure: no I/O. Regular expressions are Python's (the syntax RE2 and Python share behaves
alike).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

__all__ = [
    "PathPattern",
    "RouteConfig",
    "Router",
    "endpoint_router",
    "endpoint_routes",
    "parse_path_pattern",
]

_T = TypeVar("_T")

# token kinds, in chi's order of preference
_STATIC, _PARAM, _REGEXP, _CATCH_ALL = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class _Token:
    kind: int
    text: str = ""  # _STATIC: the literal text
    tail: str = "/"  # _PARAM/_REGEXP: the character that ends the value
    regexp: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class PathPattern:
    """One endpoint path, parsed (see :func:`parse_path_pattern`)."""

    text: str
    tokens: tuple[_Token, ...]

    @property
    def literal(self) -> bool:
        """True when the pattern has no placeholder and no ``*``: it matches only itself."""
        return all(token.kind == _STATIC for token in self.tokens)

    def matches(self, path: str) -> bool:
        """Whether the request ``path`` (without its query string) is routed here."""
        return _match(self.tokens, 0, path, 0)

    def priority(self) -> tuple[tuple[int, str], ...]:
        """Sort key: of two patterns matching the same path, the smaller is chi's choice."""
        key: list[tuple[int, str]] = []
        for token in self.tokens:
            if token.kind == _STATIC:
                key.extend((_STATIC, char) for char in token.text)
            else:
                key.append((token.kind, ""))
        return tuple(key)


def _match(tokens: Sequence[_Token], index: int, path: str, at: int) -> bool:
    while index < len(tokens):
        token = tokens[index]
        if token.kind == _STATIC:
            if not path.startswith(token.text, at):
                return False
            at += len(token.text)
        elif token.kind == _CATCH_ALL:
            return True
        else:
            if at == len(path):
                return False  # chi: no placeholder at the very end of the path is empty
            end = path.find(token.tail, at)
            if end < 0:
                if token.tail != "/":
                    return False
                end = len(path)
            value = path[at:end]
            if token.regexp is not None:
                if not value or token.regexp.search(value) is None:
                    return False
            elif "/" in value:
                return False
            at = end
        index += 1
    return at == len(path)


def parse_path_pattern(text: str) -> PathPattern:
    """Parse an endpoint path; raises ValueError (saying why) where chi would refuse it."""
    if not text.startswith("/"):
        raise ValueError("must start with /")
    if " " in text or "\t" in text:
        raise ValueError("must not contain a space or tab")
    tokens: list[_Token] = []
    names: set[str] = set()
    rest = text
    while rest:
        brace, star = rest.find("{"), rest.find("*")
        if brace < 0 and star < 0:
            tokens.append(_Token(_STATIC, rest))
            break
        if brace >= 0 and 0 <= star < brace:
            raise ValueError("a * is only allowed as the last character (use a {placeholder})")
        if brace >= 0:
            end = _closing_brace(rest, brace)
            if brace:
                tokens.append(_Token(_STATIC, rest[:brace]))
            name, colon, expression = rest[brace + 1 : end].partition(":")
            if name in names:
                raise ValueError(f"the placeholder {{{name}}} is used twice")
            names.add(name)
            tail = rest[end + 1] if end + 1 < len(rest) else "/"
            regexp = None
            if colon:
                regexp = _regexp(expression, name)
            kind = _REGEXP if colon else _PARAM
            tokens.append(_Token(kind, tail=tail, regexp=regexp))
            rest = rest[end + 1 :]
            continue
        if star != len(rest) - 1:
            raise ValueError("a * is only allowed as the last character (use a {placeholder})")
        if star:
            tokens.append(_Token(_STATIC, rest[:star]))
        tokens.append(_Token(_CATCH_ALL))
        break
    return PathPattern(text, tuple(tokens))


def _closing_brace(text: str, start: int) -> int:
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError("a { has no closing }")


def _regexp(expression: str, name: str) -> re.Pattern[str] | None:
    if not expression:
        return re.compile("")  # "{name:}": any non-empty value, as in chi
    # chi anchors the expression itself: "^" + expression + "$" (unless already anchored)
    if not expression.startswith("^"):
        expression = "^" + expression
    if not expression.endswith("$"):
        expression += "$"
    try:
        return re.compile(expression)
    except re.error as exc:
        raise ValueError(f"invalid regular expression in {{{name}:...}}: {exc}") from None


class Router(Generic[_T]):
    """Endpoint paths and what each one serves; :meth:`lookup` routes a request path."""

    __slots__ = ("_exact", "_patterns")

    def __init__(self, routes: Iterable[tuple[str, _T]]) -> None:
        exact: dict[str, _T] = {}
        patterns: list[tuple[tuple[tuple[int, str], ...], int, PathPattern, _T]] = []
        for order, (text, target) in enumerate(routes):
            pattern = parse_path_pattern(text)
            if pattern.literal:
                exact.setdefault(text, target)
            else:
                patterns.append((pattern.priority(), order, pattern, target))
        patterns.sort(key=lambda entry: entry[:2])
        self._exact = exact
        self._patterns = tuple((pattern, target) for _, _, pattern, target in patterns)

    def lookup(self, path: str) -> _T | None:
        """What ``path`` is routed to, or None (404)."""
        # a literal path that matches beats every pattern (literal text comes first in chi)
        target = self._exact.get(path)
        if target is not None:
            return target
        for pattern, target in self._patterns:  # in chi's order of preference
            if pattern.matches(path):
                return target
        return None


@functools.lru_cache(maxsize=64)
def endpoint_router(routes: tuple[tuple[str, str], ...]) -> Router[str]:
    """The (cached) router of ``routes``: (endpoint path, endpoint name), first one first on
    equal patterns. Raises ValueError for a path chi would refuse."""
    return Router(routes)


class RouteConfig(Protocol):
    """What :func:`endpoint_routes` reads from the configuration (``cableway.config.Config``)."""

    @property
    def path(self) -> Sequence[str]: ...
    @property
    def http_broadcast_path(self) -> str: ...
    @property
    def sse(self) -> bool: ...
    @property
    def sse_path(self) -> str: ...
    @property
    def metrics_http(self) -> str | None: ...
    @property
    def health_path(self) -> str: ...
    @property
    def api_path(self) -> str: ...


def endpoint_routes(
    config: RouteConfig, serves: Callable[[str], bool], *, main: bool
) -> tuple[tuple[str, str], ...]:
    """The route table of one listener, the same for both drivers: (endpoint path, endpoint
    kind) in registration order (on equal paths the first one wins).

    ``main``: the listener of the WebSocket paths, SSE and the health check. ``serves(what)``:
    whether this listener serves ``broadcast`` (``POST --http_broadcast_path``), ``metrics``
    (``--metrics_http``, when set) and ``api`` (``--api_path``'s publish and presence
    endpoints, as AnyCable-Go registers them); each may have a port of its own."""
    routes = [(path, "ws") for path in config.path] if main else []
    if serves("broadcast"):
        routes.append((config.http_broadcast_path, "broadcast"))
    if main and config.sse:
        routes.append((config.sse_path, "sse"))
    if config.metrics_http and serves("metrics"):
        routes.append((config.metrics_http, "metrics"))
    if main:
        routes.append((config.health_path, "health"))
    if serves("api"):
        base = config.api_path
        routes += [(f"{base}/publish", "api_publish"), (f"{base}/presence/*", "api_presence")]
    return tuple(routes)
