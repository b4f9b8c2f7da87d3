"""Server -> client messages, encoded exactly as AnyCable-Go does (spec §4.1).

Compact JSON, keys in AnyCable's order, empty fields omitted, so byte-level test vectors
hold. Broadcast payloads are built by string concatenation from pieces that are encoded
once per broadcast (:func:`message_json`) and once per identifier, never per subscriber.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

__all__ = [
    "confirm_subscription",
    "data_message",
    "disconnect",
    "dumps",
    "json_value",
    "message_json",
    "ping",
    "pong",
    "presence_info",
    "reject_subscription",
    "strict_json",
    "to_wire",
    "welcome",
]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


_SURROGATE = re.compile("[\ud800-\udfff]")


def to_wire(text: str) -> bytes:
    """UTF-8 bytes of a protocol message.

    A lone surrogate (which JSON escapes such as ``"\\ud800"`` can smuggle into a
    Python string) has no UTF-8 form; it is sent as U+FFFD, as AnyCable-Go does.
    """
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text).encode()


_ascii_encoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def dumps(value: object) -> str:
    """Compact JSON text for ``value``, non-ASCII kept as is.

    Strings holding lone surrogates (from ``"\\ud800"``-style escapes) are written
    with escapes instead, so the text stays encodable and a client parses back
    exactly the string it sent.
    """
    out = _encoder.encode(value)
    if not out.isascii() and _SURROGATE.search(out):  # no ASCII text holds a surrogate
        return _ascii_encoder.encode(value)
    return out


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


#: one decoder for every strict parse (``json.loads`` with an argument builds one per call)
_strict_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def strict_json(text: str | bytes) -> Any:
    """Parse JSON text as ``json.loads`` does (bytes in UTF-8/16/32, a leading BOM
    refused in a str), refusing ``NaN``/``Infinity`` (not JSON).

    Raises:
        ValueError: not JSON (``RecursionError`` when nested too deeply).
    """
    if isinstance(text, str):
        if text.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    elif text[:1] in _UTF8_OPENERS and text[1:2] != b"\x00":
        # what json.detect_encoding answers for an object or array (the usual body)
        text = text.decode("utf-8", "surrogatepass")
    else:
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    return _strict_decoder.decode(text)


_UTF8_OPENERS = (b"{", b"[")
#: the characters a JSON text can start with (whitespace included); anything else is
#: not JSON, which :func:`message_json` tells without the parser's exception
_JSON_START = frozenset('{["-0123456789tfn \t\r\n')


#: :func:`message_json` and :func:`json_value` trust orjson only for texts with fewer
#: brackets than this, or shorter than :data:`_SHORT` (so nested less deep): the
#: stdlib parser refuses a text nested
#: about as deep as the interpreter's recursion limit (1 000), orjson one over 1 024
_SHALLOW = 256
#: a text shorter than this is nested less than :data:`_SHALLOW` deep (each level takes
#: two characters) without counting its brackets (0.3 µs for 300 characters)
_SHORT = 2 * _SHALLOW
_NOT_PARSED = object()


def json_value(body: bytes) -> Any:
    """:func:`strict_json` of a body (a broadcast's), orjson first (0.4 against 1.4 µs
    for the usual publication): the same value for what orjson accepts nested less than
    :data:`_SHALLOW` deep, except that an integer beyond 64 bits comes back as the
    nearest float (a broadcast's reader never reads numbers); anything orjson refuses
    (not UTF-8, a BOM, a lone surrogate escape, a number beyond a double, ...) gets
    :func:`strict_json`'s value or its exception (``fuzz/fuzz_broadcast_body.py``
    holds the two to that).

    Raises:
        ValueError: not JSON (``RecursionError`` when nested too deeply).
    """
    if len(body) < _SHORT or body.count(b"[") + body.count(b"{") < _SHALLOW:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return strict_json(body)


def message_json(data: str) -> str:
    """The JSON text of the ``message`` field for a publication's ``data`` string.

    AnyCable's rule (spec §4.4): when ``data`` parses as JSON (other than ``null``) the
    parsed value is the message; otherwise the raw string is. Valid JSON is embedded as
    sent (it is already a JSON text), so no re-encoding is done per broadcast.

    "Parses as JSON" is :func:`strict_json`'s answer. orjson answers first (0.18 against
    0.9 µs for a small array): what it accepts (nested less than :data:`_SHALLOW` deep)
    the stdlib parser accepts too, with a value equally ``None`` or not; what it refuses
    (a lone surrogate escape, a number too large for a double, ...) is asked of
    :func:`strict_json` (``fuzz/fuzz_message_json.py`` holds both to the same answer).
    """
    if data[:1] not in _JSON_START:  # e.g. a Turbo Stream's HTML, or empty
        return dumps(data)
    value: Any = _NOT_PARSED
    if len(data) < _SHORT or data.count("[") + data.count("{") < _SHALLOW:
        try:  # noqa: SIM105 (contextlib.suppress costs more than the parse)
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    if value is _NOT_PARSED:
        try:
            value = strict_json(data)
        except (ValueError, RecursionError):
            return dumps(data)
    if value is None:
        return dumps(data)
    if not data.isascii() and _SURROGATE.search(data):  # ASCII: no surrogate, no scan
        return dumps(value)
    return data.strip(" \t\r\n")


def _typed(kind: str, identifier: str) -> str:
    return '{"type":"' + kind + '","identifier":' + dumps(identifier) + "}"


def welcome(sid: str | None, *, restored_ids: list[str] | None = None) -> str:
    """``{"type":"welcome","sid":…}``; ``restored``/``restored_ids`` on a restore."""
    out: dict[str, object] = {"type": "welcome"}
    if sid:
        out["sid"] = sid
    if restored_ids is not None:
        out["restored"] = True
        if restored_ids:
            out["restored_ids"] = restored_ids
    return dumps(out)


def ping(timestamp: int) -> str:
    """``{"type":"ping","message":<unix timestamp>}``."""
    return '{"type":"ping","message":' + str(int(timestamp)) + "}"


def pong() -> str:
    """The reply to a client ``ping`` command."""
    return '{"type":"pong"}'


def disconnect(reason: str, *, reconnect: bool) -> str:
    """``{"type":"disconnect","reason":…,"reconnect":…}`` (always all three keys)."""
    return (
        '{"type":"disconnect","reason":'
        + dumps(reason)
        + ',"reconnect":'
        + ("true" if reconnect else "false")
        + "}"
    )


def confirm_subscription(identifier: str) -> str:
    """Confirmation echoing the client's identifier byte for byte."""
    return _typed("confirm_subscription", identifier)


def reject_subscription(identifier: str) -> str:
    """Rejection echoing the client's identifier byte for byte."""
    return _typed("reject_subscription", identifier)


def data_message(
    identifier_json: str,
    message: str,
    *,
    kind: str | None = None,
    stream_id: str | None = None,
    epoch: str | None = None,
    offset: int | None = None,
) -> str:
    """A broadcast or transmission: ``{"identifier":…,"message":…}``.

    Args:
        identifier_json: the identifier already encoded as a JSON string literal
            (``dumps(identifier)``), so one encoding serves every recipient.
        message: the ``message`` value as JSON text (see :func:`message_json`).
        kind: the optional ``type`` (publication ``meta.broadcast_type``).
        stream_id, epoch, offset: the stream position when a broker assigned one.
    """
    head = '{"type":' + dumps(kind) + ',"identifier":' if kind else '{"identifier":'
    out = head + identifier_json + ',"message":' + message
    if stream_id is not None and offset is not None:
        out += ',"stream_id":' + dumps(stream_id) + ',"epoch":' + dumps(epoch or "")
        out += ',"offset":' + str(int(offset))
    return out + "}"


def presence_info(records: list[tuple[str, object]] | None) -> dict[str, object]:
    """AnyCable-Go's ``PresenceInfo`` of a stream from its ``(id, info)`` records: the
    ``presence`` command's answer and the REST API's body (``None``: the broker failed).

    ``records`` is left out when there are none (``omitempty``), as AnyCable-Go does.
    """
    if records is None:
        return {"type": "error", "total": 0}
    message: dict[str, object] = {"type": "info", "total": len(records)}
    if records:
        message["records"] = [{"info": info, "id": pid} for pid, info in records]
    return message
