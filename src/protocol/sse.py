"""Server-Sent Events: event framing, request mapping and ``Last-Event-ID`` (spec §10).

Pure functions, no I/O. The transport maps a request with :func:`sse_open` (GET: subscribe
commands from :func:`identifier_from_query`/:func:`history_from_request`; POST: from
:func:`parse_post_body`; then authentication), opens the session with
:func:`sse_connection`, answers a :class:`Refusal` as it says or writes
:data:`SSE_HEADERS` (and :func:`cors_headers`), and turns every protocol message the
session emits into bytes with :func:`message_to_event`.

Framing is injection-proof (security O7/O8): a payload is split on CR, LF and CRLF into
several ``data:`` lines, so a WHATWG parser rejoins it with ``"\\n"`` into exactly one
event, and ``event``/``id`` values that could end a field are refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..auth.origin import origin_allowed
from .connection import CableConnection, SessionSettings
from .handshake import (
    Accepted,
    AuthPolicy,
    authenticate,
    find_token,
    parse_query,
    ping_settings,
    request_sid,
)
from .messages import dumps

__all__ = [
    "DISCONNECT_RETRY_MS",
    "MAX_LAST_EVENT_ID",
    "SSE_HEADERS",
    "Refusal",
    "SseOpen",
    "cors_headers",
    "encode_event",
    "history_from_request",
    "identifier_from_query",
    "message_to_event",
    "parse_last_event_id",
    "parse_post_body",
    "sse_connection",
    "sse_open",
]

SSE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"private, no-cache, no-store, must-revalidate, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-accel-buffering", b"no"),
]
"""Response headers of an event stream (spec §10.1 step 3, security O6)."""

DISCONNECT_RETRY_MS = 31_536_000_000
"""``retry:`` sent with a ``disconnect`` that forbids reconnecting (one year)."""

MAX_LAST_EVENT_ID = 4096
"""Longer ``Last-Event-ID`` values are ignored."""

_MAX_OFFSET = 2**64 - 1  # Go parses the offset as uint64
_MAX_SINCE = 2**63 - 1  # and history_since as int64

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# What an ``event:``/``id:`` value may not hold: C0 controls (CR, LF and NUL among them),
# DEL, C1 controls, and lone surrogates (not encodable as UTF-8). Security O8.
_FORBIDDEN_IN_FIELD = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _check_field(name: str, value: str) -> None:
    if _FORBIDDEN_IN_FIELD.search(value):
        raise ValueError(f"SSE {name} contains a control character or a lone surrogate")


def _frame(data: str, event: str | None, id: str | None, retry: int | None) -> bytes:
    """The event bytes; ``event`` and ``id`` must already be checked."""
    parts: list[str] = []
    if event:
        parts.append("event: " + event + "\n")
    if "\n" in data or "\r" in data:
        for line in _LINE_BREAK.split(data):
            parts.append("data: " + line + "\n")
    else:
        parts.append("data: " + data + "\n")
    if id is not None:
        parts.append("id: " + id + "\n")
    if retry is not None:
        parts.append("retry: " + str(retry) + "\n")
    parts.append("\n")
    out = "".join(parts)
    try:
        return out.encode("utf-8")
    except UnicodeEncodeError:
        # a lone surrogate in the payload (e.g. from a JSON "\ud800" escape): send U+FFFD
        return _SURROGATE.sub("\ufffd", out).encode("utf-8")


def encode_event(
    data: str, *, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """One SSE event: ``event:``, ``data:`` line(s), ``id:``, ``retry:``, blank line.

    ``data`` is split on CR, LF and CRLF into several ``data:`` lines (one empty line
    for an empty payload), so an EventSource receives it with line breaks normalised to
    ``"\\n"``. Lone surrogates in ``data`` are sent as U+FFFD. An empty ``event`` is
    omitted (the type is ``message`` either way); an empty ``id`` is written (it resets
    the client's last event id).

    Raises:
        ValueError: ``event`` or ``id`` holds a control character (CR, LF, NUL, any
            other C0, DEL, C1) or a lone surrogate; ``retry`` is not a non-negative int.
    """
    if event is not None:
        _check_field("event", event)
    if id is not None:
        _check_field("id", id)
    if retry is not None and (isinstance(retry, bool) or not isinstance(retry, int) or retry < 0):
        raise ValueError("SSE retry must be a non-negative integer")
    return _frame(data, event, id, retry)


def _event_id(message: dict[str, object]) -> str | None:
    """``<offset>/<epoch>/<stream_id>`` for a message carrying a stream position."""
    stream_id, epoch, offset = message.get("stream_id"), message.get("epoch"), message.get("offset")
    if (
        isinstance(stream_id, str)
        and stream_id
        and isinstance(epoch, str)
        and epoch
        and isinstance(offset, int)
        and not isinstance(offset, bool)
        and offset >= 0
    ):
        value = f"{offset}/{epoch}/{stream_id}"
        if not _FORBIDDEN_IN_FIELD.search(value):
            return value
    return None


def message_to_event(text: str, *, unwrap: bool, raw: bool) -> bytes | None:
    """The SSE event for one server protocol message (spec §10.2).

    Args:
        text: the JSON text the WebSocket client would get (from
            :mod:`cableway.protocol.messages`).
        unwrap: GET requests: a data message's ``data:`` is only its ``message`` (the
            string itself when it is a JSON string, else its compact JSON). POST
            requests (``False``) get the full JSON.
        raw: ``?raw=1``: typed messages are dropped.

    Returns:
        The event bytes, or ``None`` when the message is dropped: a typed message in
        raw mode, a ``type`` that is not a valid event name (not a non-empty string, or
        holding control characters), or a message too deeply nested / holding a number
        too large to re-encode. A stream position whose id would hold control characters
        is left out rather than dropping the message.

    Raises:
        ValueError: ``text`` is not a JSON object (a caller bug).
    """
    try:
        message = json.loads(text)
    except RecursionError:
        return None
    if not isinstance(message, dict):
        raise ValueError("a protocol message is a JSON object")
    kind = message.get("type")
    if kind is not None:
        if raw or not isinstance(kind, str) or not kind or _FORBIDDEN_IN_FIELD.search(kind):
            return None
        retry = None
        if kind == "disconnect" and message.get("reconnect") is False:
            retry = DISCONNECT_RETRY_MS
        return _frame(text, kind, _event_id(message), retry)
    data = text
    if unwrap:
        if "message" not in message:
            raise ValueError("a data message has a message field")
        value = message["message"]
        if isinstance(value, str):
            data = value
        else:
            try:
                data = dumps(value)
            except (ValueError, RecursionError):
                return None  # e.g. 1e999 parsed as inf
    return _frame(data, None, _event_id(message), None)


def _ascii_int(value: str, *, name: str, maximum: int) -> int:
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"{name} is not a non-negative integer")
    number = int(value)
    if number > maximum:
        raise ValueError(f"{name} is out of range")
    return number


def parse_last_event_id(value: str) -> tuple[int, str, str] | None:
    """``<offset>/<epoch>/<stream>`` -> ``(offset, epoch, stream)``.

    Split on the first two ``/`` (the stream may contain ``/``).

    Returns:
        The position, or ``None`` (the header is ignored) when the value is longer than
        :data:`MAX_LAST_EVENT_ID`, has fewer than three parts, or a part is empty.

    Raises:
        ValueError: the offset is not ASCII digits (negative, signed, spaced, non-ASCII
            digits, underscores) or does not fit in 64 bits; the server answers 400.
    """
    if len(value) > MAX_LAST_EVENT_ID:
        return None
    parts = value.split("/", 2)
    if len(parts) < 3 or not all(parts):
        return None
    offset, epoch, stream = parts
    return _ascii_int(offset, name="Last-Event-ID offset", maximum=_MAX_OFFSET), epoch, stream


def _compact_sorted(obj: dict[str, str]) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


_QUERY_CHANNELS: tuple[tuple[str, str, str], ...] = (
    # (query parameter, channel, identifier key for the value)
    ("stream", "$pubsub", "stream_name"),
    ("signed_stream", "$pubsub", "signed_stream_name"),
    ("turbo_signed_stream_name", "Turbo::StreamsChannel", "signed_stream_name"),
    # Cableway: the server resolves an unsigned name only in cleartext mode
    ("turbo_stream_name", "Turbo::StreamsChannel", "signed_stream_name"),
)


def identifier_from_query(query: Mapping[str, str]) -> str | None:
    """The subscription identifier of a GET request (spec §10.1 step 4).

    The first non-empty of ``identifier`` (verbatim), ``channel``, ``stream``,
    ``signed_stream``, ``turbo_signed_stream_name``, ``turbo_stream_name``; generated
    identifiers are compact JSON with sorted keys. ``None`` when none is present (400).
    """
    identifier = query.get("identifier")
    if identifier:
        return identifier
    channel = query.get("channel")
    if channel:
        return _compact_sorted({"channel": channel})
    for param, channel_name, key in _QUERY_CHANNELS:
        value = query.get(param)
        if value:
            return _compact_sorted({"channel": channel_name, key: value})
    return None


def history_from_request(
    query: Mapping[str, str], last_event_id: str | None
) -> dict[str, object] | None:
    """The ``history`` request of a GET subscription, or ``None`` when there is none.

    ``{"streams": {stream: {"epoch": …, "offset": …}}}`` from ``Last-Event-ID`` (see
    :func:`parse_last_event_id`) and/or ``{"since": …}`` from ``?history_since=``
    (an empty value counts as absent).

    Raises:
        ValueError: a bad ``Last-Event-ID`` offset, or ``history_since`` not an
            ASCII-digit integer that fits in int64; the server answers 400.
    """
    history: dict[str, object] = {}
    if last_event_id is not None:
        position = parse_last_event_id(last_event_id)
        if position is not None:
            offset, epoch, stream = position
            history["streams"] = {stream: {"epoch": epoch, "offset": offset}}
    since = query.get("history_since")
    if since:
        history["since"] = _ascii_int(since, name="history_since", maximum=_MAX_SINCE)
    return history or None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_post_body(body: bytes, *, max_size: int = 65536) -> list[dict[str, object]]:
    """The subscribe commands of a POST request: JSON Lines, one object per line.

    Blank lines are skipped; every other line must be a JSON object with a string
    ``identifier`` (its ``command`` is not checked) and a ``history`` that is an object
    or null when present. An empty body gives no commands.

    Raises:
        ValueError: the body is larger than ``max_size`` bytes, is not UTF-8, or a line
            is not such an object (or is nested too deeply); the server answers 400.
    """
    if len(body) > max_size:
        raise ValueError("SSE request body too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("SSE request body is not UTF-8") from None
    commands: list[dict[str, object]] = []
    for line in text.split("\n"):
        if not line.strip(" \t\r"):
            continue
        try:
            value = json.loads(line, parse_constant=_reject_constant)
        except RecursionError:
            raise ValueError("SSE command nested too deeply") from None
        except ValueError:
            raise ValueError("SSE command is not valid JSON") from None
        if not isinstance(value, dict):
            raise ValueError("SSE command is not a JSON object")
        if not isinstance(value.get("identifier"), str):
            raise ValueError("SSE command identifier is missing or not a string")
        history = value.get("history")
        if history is not None and not isinstance(history, dict):
            raise ValueError("SSE command history is not an object")
        commands.append(value)
    return commands


_RAW_VALUES = frozenset({"1", "true", "t", "y"})
_CORS_HEADERS = [
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (
        b"access-control-allow-headers",
        b"Origin, X-Requested-With, X-Request-ID, Content-Type, Accept, X-CSRF-Token, "
        b"Authorization, Last-Event-ID",
    ),
]


def cors_headers(origin: str | None, allowed: tuple[str, ...]) -> list[tuple[bytes, bytes]]:
    """CORS answer headers (spec §10.5, but never ``*`` together with credentials).

    Without an allow-list any origin may read the stream, without credentials. With
    one, an allowed ``Origin`` is echoed back with ``Allow-Credentials`` (so cookies
    and ``withCredentials`` event sources work); other origins get no
    ``Access-Control-Allow-Origin`` and the browser hides the response.

    Args:
        origin: the request's ``Origin`` header (several joined with ``", "``), if any.
    """
    out = [*_CORS_HEADERS, (b"vary", b"Origin")]
    if not allowed or "*" in allowed:
        out.append((b"access-control-allow-origin", b"*"))
        return out
    if origin is not None and "," not in origin and origin_allowed(origin, allowed):
        out.append((b"access-control-allow-origin", origin.encode("latin-1")))
        out.append((b"access-control-allow-credentials", b"true"))
    return out


@dataclass(frozen=True, slots=True)
class Refusal:
    """Answer the request with this status and ``text/plain`` body; no stream."""

    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class SseOpen:
    """An authenticated event-stream request, ready for :func:`sse_connection`.

    Attributes:
        sid: the session id.
        identifiers: the JSON identifiers string of the client.
        commands: the subscribe commands to run, in order.
        unwrap: GET: data events carry only the message (see :func:`message_to_event`).
        raw: ``?raw=1``: typed messages are dropped.
        ping_interval: seconds between pings (``?pi=`` over the server default).
        ping_precision: ``s``, ``ms`` or ``ns`` (``?ptp=`` over the server default).
        token: the JWT the request carried, if any (with an RPC application, a request
            without one is identified by a Connect call instead).
    """

    sid: str
    identifiers: str
    commands: tuple[dict[str, object], ...]
    unwrap: bool
    raw: bool
    ping_interval: float
    ping_precision: str
    token: str | None = None


def sse_open(
    method: str,
    *,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    fresh_sid: str,
    policy: AuthPolicy,
    jwt_param: str,
    ping_interval: float,
    ping_precision: str,
    max_size: int,
    unix_time: float,
) -> SseOpen | Refusal:
    """Map a ``GET`` or ``POST`` event-stream request (spec §10.1) and authenticate it.

    The driver answers ``OPTIONS``, other methods (``405``) and an oversized POST body
    (``413``) itself, since they decide how much of the body to read.

    Args:
        method: ``GET`` or ``POST``.
        query: the raw query string (without ``?``).
        headers: request headers with lower-cased names.
        body: the POST body (ignored for GET).
        fresh_sid: a new random session id, used unless ``X-Request-ID`` is sane.
        max_size: the largest POST body accepted.
        unix_time: the current Unix time (for the token's ``exp`` and ``nbf``).

    Returns:
        The request, or a ``400`` (no channel, a bad ``Last-Event-ID`` or
        ``history_since``, a bad body) or ``401`` (authentication failed) refusal.
    """
    params = parse_query(query)
    commands: list[dict[str, object]] = []
    unwrap, raw = True, False
    try:
        if method == "GET":
            identifier = identifier_from_query(params)
            if identifier is None:
                return Refusal(400, b"Bad Request: no channel")
            command: dict[str, object] = {"command": "subscribe", "identifier": identifier}
            history = history_from_request(params, headers.get("last-event-id"))
            if history is not None:
                command["history"] = history
            commands.append(command)
            raw = params.get("raw", "").lower() in _RAW_VALUES
        else:
            for line in parse_post_body(body, max_size=max_size):
                command = {"command": "subscribe", "identifier": line["identifier"]}
                if line.get("history") is not None:
                    command["history"] = line["history"]
                commands.append(command)
            unwrap = False
    except ValueError as exc:
        return Refusal(400, f"Bad Request: {exc}".encode())
    sid = request_sid(headers.get("x-request-id"), fresh_sid)
    token = find_token(headers=headers, query=params, subprotocols=[], param=jwt_param)
    outcome = authenticate(token, sid=sid, policy=policy, now=unix_time)
    if not isinstance(outcome, Accepted):
        return Refusal(401, b"Unauthorized")
    interval, precision = ping_settings(params, interval=ping_interval, precision=ping_precision)
    return SseOpen(
        sid=sid,
        identifiers=outcome.identifiers,
        commands=tuple(commands),
        unwrap=unwrap,
        raw=raw,
        ping_interval=interval,
        ping_precision=precision,
        token=token,
    )


def sse_connection(
    request: SseOpen, *, settings: SessionSettings, now: float, ping_jitter: float
) -> CableConnection | Refusal:
    """The accepted session with every subscription of ``request`` made, or a ``400``
    refusal when one is rejected (then drop the core: nothing was carried out yet).

    Args:
        settings: the session settings for ``request.ping_interval`` and
            ``request.ping_precision`` (not extended).
        now: the driver's monotonic clock.
        ping_jitter: a number in ``[0, 1)`` (see :class:`CableConnection`).
    """
    core = CableConnection(sid=request.sid, settings=settings, now=now, ping_jitter=ping_jitter)
    core.accept(request.identifiers)
    for command in request.commands:
        core.receive_message(json.dumps(command), now=now)
        if command["identifier"] not in core.subscriptions:
            return Refusal(400, b"Bad Request: subscription rejected")
    return core
