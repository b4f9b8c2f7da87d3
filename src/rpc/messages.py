"""The RPC messages (Connect, Command, Disconnect) and their JSON form (rpc.md §2).

Both ends use this module: the Python SDK (:mod:`cableway.channels`) decodes requests and
encodes responses; Cableway's RPC client will encode requests and decode responses.

Encoding follows AnyCable-Go's ``encoding/json`` of the protobuf structs (rpc.md §2.6):
snake_case proto field names in proto order, map keys sorted, zero values omitted (empty
strings, ``false``, empty lists and maps), enums as integers. Two deliberate exceptions:
``status`` is always written (an ERROR answer reads ``{"status":0,…}`` rather than
``{}``), and a request always carries ``env`` (Go always sets it). Output is ASCII-only
JSON (``\\u`` escapes), so any string, even one with a lone surrogate, encodes.

Decoding accepts exactly what Go accepts (rpc.md §2.6): keys matched case-insensitively
(``Status``, ``ERROR_MSG``), unknown keys and camelCase spellings ignored, ``null`` read as
the zero value (``"k": null`` in a state map is ``""``, i.e. delete), the last of duplicate
keys wins, and strict types: ``status`` a JSON integer in the int32 range, booleans JSON
booleans, identifiers, transmissions and every state value strings. Anything else raises
:class:`DecodeError`. Invalid UTF-8 and lone surrogates become U+FFFD, as in Go.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar

__all__ = [
    "PRESENCE_STATE",
    "WHISPER_STATE",
    "CommandMessage",
    "CommandResponse",
    "ConnectionRequest",
    "ConnectionResponse",
    "DecodeError",
    "DisconnectRequest",
    "DisconnectResponse",
    "Env",
    "EnvResponse",
    "PresenceResponse",
    "Status",
    "decode_disconnect_istate",
    "encode_disconnect_istate",
    "merge_state",
    "state_changes",
]

_T = TypeVar("_T")

#: istate keys the application sets and the server reads (rpc.md §2.2): the stream a
#: channel's client whispers to, and the stream its presence set lives on.
WHISPER_STATE = "$w"
PRESENCE_STATE = "$p"


class Status(IntEnum):
    """The wire status (rpc.md §2.1). Unknown numbers decode as :attr:`ERROR`, as Go treats
    them."""

    ERROR = 0
    SUCCESS = 1
    FAILURE = 2


class DecodeError(ValueError):
    """The body is not JSON, or not what Go's decoder accepts for this message."""


# -- decoding helpers ---------------------------------------------------------------------


class _Object(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs in document order (duplicates kept)."""


_SURROGATE = re.compile("[\ud800-\udfff]")
_INT32 = (-(2**31), 2**31 - 1)


def _clean(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def _reject_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not JSON")


def _parse(body: bytes | str) -> Any:
    if isinstance(body, bytes | bytearray | memoryview):
        text = bytes(body).decode("utf-8", "replace")
    else:
        text = body
    try:
        return json.loads(text, object_pairs_hook=_Object, parse_constant=_reject_constant)
    except DecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None


def _fields(value: Any, what: str, names: tuple[str, ...]) -> dict[str, Any]:
    """The known fields of a JSON object, matched case-insensitively; last duplicate wins."""
    if not isinstance(value, _Object):
        raise DecodeError(f"{what} must be a JSON object")
    wanted = {name.lower(): name for name in names}
    out: dict[str, Any] = {}
    for key, item in value:
        name = wanted.get(key.lower())
        if name is not None:
            out[name] = item
    return out


def _str(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DecodeError(f"{what} must be a string")
    return _clean(value)


def _bool(value: Any, what: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise DecodeError(f"{what} must be a boolean")
    return value


def _int32(value: Any, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{what} must be an integer")
    if not _INT32[0] <= value <= _INT32[1]:
        raise DecodeError(f"{what} is out of range")
    return value


def _status(value: Any) -> Status:
    number = _int32(value, "status")
    return Status(number) if number in (0, 1, 2) else Status.ERROR


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or isinstance(value, _Object):
        raise DecodeError(f"{what} must be a list of strings")
    return [_str(item, what) for item in value]


def _map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, _Object):
        raise DecodeError(f"{what} must be an object of strings")
    return {_clean(key): _str(item, what) for key, item in value}


def _decode(body: bytes | str, build: Callable[[Any], _T]) -> _T:
    return build(_parse(body))


# -- encoding helpers ---------------------------------------------------------------------

_encoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _sorted(mapping: Mapping[str, str]) -> dict[str, str]:
    """A map as Go writes it: keys in sorted order."""
    return dict(sorted(mapping.items()))


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    """Go's ``omitempty``: skip ``""``, ``False``, ``0``, empty lists and maps, ``None``."""
    if value:
        out[key] = value


# -- messages -----------------------------------------------------------------------------


@dataclass
class Env:
    """The request environment (rpc.md §2.2).

    ``headers`` holds the server's configured headers under lower-case names plus
    ``REMOTE_ADDR``. ``istate`` is flat (this identifier's state) in a Command and nested
    (identifier → JSON text of that channel's state) in a Disconnect; see
    :func:`decode_disconnect_istate`.
    """

    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    cstate: dict[str, str] = field(default_factory=dict)
    istate: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        _put(out, "url", self.url)
        _put(out, "headers", _sorted(self.headers))
        _put(out, "cstate", _sorted(self.cstate))
        _put(out, "istate", _sorted(self.istate))
        return out

    @classmethod
    def from_value(cls, value: Any) -> Env:
        if value is None:
            return cls()
        got = _fields(value, "env", ("url", "headers", "cstate", "istate"))
        return cls(
            url=_str(got.get("url"), "env.url"),
            headers=_map(got.get("headers"), "env.headers"),
            cstate=_map(got.get("cstate"), "env.cstate"),
            istate=_map(got.get("istate"), "env.istate"),
        )


@dataclass
class EnvResponse:
    """State changes in a response: keys to set, ``""`` to delete (rpc.md §2.2)."""

    cstate: dict[str, str] = field(default_factory=dict)
    istate: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        _put(out, "cstate", _sorted(self.cstate))
        _put(out, "istate", _sorted(self.istate))
        return out

    @classmethod
    def from_value(cls, value: Any) -> EnvResponse:
        if value is None:
            return cls()
        got = _fields(value, "env", ("cstate", "istate"))
        return cls(
            cstate=_map(got.get("cstate"), "env.cstate"),
            istate=_map(got.get("istate"), "env.istate"),
        )


class _Message:
    """``to_json``/``from_json`` on top of ``to_dict``/``from_value``."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> str:
        """Compact, ASCII-only JSON text (see the module docstring for what is omitted)."""
        return _encoder.encode(self.to_dict())

    def to_bytes(self) -> bytes:
        """:meth:`to_json` as bytes, ready to be an HTTP body."""
        return self.to_json().encode("ascii")

    @classmethod
    def from_value(cls: type[_T], value: Any) -> _T:
        raise NotImplementedError

    @classmethod
    def from_json(cls: type[_T], body: bytes | str) -> _T:
        """Decode ``body`` as Go would; :class:`DecodeError` when Go would fail."""
        return _decode(body, cls.from_value)  # type: ignore[attr-defined,no-any-return]


@dataclass
class ConnectionRequest(_Message):
    """``POST …/connect`` body: ``{"env": …}``."""

    env: Env = field(default_factory=Env)

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env.to_dict()}

    @classmethod
    def from_value(cls, value: Any) -> ConnectionRequest:
        got = _fields(value, "request", ("env",))
        return cls(env=Env.from_value(got.get("env")))


@dataclass
class ConnectionResponse(_Message):
    """Connect answer: ``identifiers`` is opaque text (conventionally compact JSON)."""

    status: Status = Status.ERROR
    identifiers: str = ""
    transmissions: list[str] = field(default_factory=list)
    error_msg: str = ""
    env: EnvResponse = field(default_factory=EnvResponse)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": int(self.status)}
        _put(out, "identifiers", self.identifiers)
        _put(out, "transmissions", list(self.transmissions))
        _put(out, "error_msg", self.error_msg)
        _put(out, "env", self.env.to_dict())
        return out

    @classmethod
    def from_value(cls, value: Any) -> ConnectionResponse:
        names = ("status", "identifiers", "transmissions", "error_msg", "env")
        got = _fields(value, "response", names)
        return cls(
            status=_status(got.get("status")),
            identifiers=_str(got.get("identifiers"), "identifiers"),
            transmissions=_strings(got.get("transmissions"), "transmissions"),
            error_msg=_str(got.get("error_msg"), "error_msg"),
            env=EnvResponse.from_value(got.get("env")),
        )


@dataclass
class CommandMessage(_Message):
    """``POST …/command`` body. ``command`` is ``subscribe``, ``unsubscribe`` or
    ``message``; ``identifier`` is the client's identifier text, byte for byte; ``data``
    (``message`` only) is the client's data text."""

    command: str = ""
    identifier: str = ""
    connection_identifiers: str = ""
    data: str = ""
    env: Env = field(default_factory=Env)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        _put(out, "command", self.command)
        _put(out, "identifier", self.identifier)
        _put(out, "connection_identifiers", self.connection_identifiers)
        _put(out, "data", self.data)
        out["env"] = self.env.to_dict()
        return out

    @classmethod
    def from_value(cls, value: Any) -> CommandMessage:
        names = ("command", "identifier", "connection_identifiers", "data", "env")
        got = _fields(value, "request", names)
        return cls(
            command=_str(got.get("command"), "command"),
            identifier=_str(got.get("identifier"), "identifier"),
            connection_identifiers=_str(
                got.get("connection_identifiers"), "connection_identifiers"
            ),
            data=_str(got.get("data"), "data"),
            env=Env.from_value(got.get("env")),
        )


@dataclass
class PresenceResponse:
    """A presence ``join``/``leave`` (rpc.md §2.4); ``info`` is JSON text."""

    type: str = ""
    id: str = ""
    info: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        _put(out, "type", self.type)
        _put(out, "id", self.id)
        _put(out, "info", self.info)
        return out

    @classmethod
    def from_value(cls, value: Any) -> PresenceResponse | None:
        if value is None:
            return None
        got = _fields(value, "presence", ("type", "id", "info"))
        return cls(
            type=_str(got.get("type"), "presence.type"),
            id=_str(got.get("id"), "presence.id"),
            info=_str(got.get("info"), "presence.info"),
        )


@dataclass
class CommandResponse(_Message):
    """Command answer; the server applies it in the order of rpc.md §4.6."""

    status: Status = Status.ERROR
    disconnect: bool = False
    stop_streams: bool = False
    streams: list[str] = field(default_factory=list)
    transmissions: list[str] = field(default_factory=list)
    error_msg: str = ""
    env: EnvResponse = field(default_factory=EnvResponse)
    stopped_streams: list[str] = field(default_factory=list)
    presence: PresenceResponse | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": int(self.status)}
        _put(out, "disconnect", self.disconnect)
        _put(out, "stop_streams", self.stop_streams)
        _put(out, "streams", list(self.streams))
        _put(out, "transmissions", list(self.transmissions))
        _put(out, "error_msg", self.error_msg)
        _put(out, "env", self.env.to_dict())
        _put(out, "stopped_streams", list(self.stopped_streams))
        if self.presence is not None:
            out["presence"] = self.presence.to_dict()
        return out

    @classmethod
    def from_value(cls, value: Any) -> CommandResponse:
        names = (
            "status",
            "disconnect",
            "stop_streams",
            "streams",
            "transmissions",
            "error_msg",
            "env",
            "stopped_streams",
            "presence",
        )
        got = _fields(value, "response", names)
        return cls(
            status=_status(got.get("status")),
            disconnect=_bool(got.get("disconnect"), "disconnect"),
            stop_streams=_bool(got.get("stop_streams"), "stop_streams"),
            streams=_strings(got.get("streams"), "streams"),
            transmissions=_strings(got.get("transmissions"), "transmissions"),
            error_msg=_str(got.get("error_msg"), "error_msg"),
            env=EnvResponse.from_value(got.get("env")),
            stopped_streams=_strings(got.get("stopped_streams"), "stopped_streams"),
            presence=PresenceResponse.from_value(got.get("presence")),
        )


@dataclass
class DisconnectRequest(_Message):
    """``POST …/disconnect`` body: the session's identifiers, every identifier it was
    subscribed to, and the final env (istate nested, see :func:`encode_disconnect_istate`)."""

    identifiers: str = ""
    subscriptions: list[str] = field(default_factory=list)
    env: Env = field(default_factory=Env)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        _put(out, "identifiers", self.identifiers)
        _put(out, "subscriptions", list(self.subscriptions))
        out["env"] = self.env.to_dict()
        return out

    @classmethod
    def from_value(cls, value: Any) -> DisconnectRequest:
        got = _fields(value, "request", ("identifiers", "subscriptions", "env"))
        return cls(
            identifiers=_str(got.get("identifiers"), "identifiers"),
            subscriptions=_strings(got.get("subscriptions"), "subscriptions"),
            env=Env.from_value(got.get("env")),
        )


@dataclass
class DisconnectResponse(_Message):
    """Disconnect answer; only ERROR is acted upon (logged) by the server."""

    status: Status = Status.ERROR
    error_msg: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": int(self.status)}
        _put(out, "error_msg", self.error_msg)
        return out

    @classmethod
    def from_value(cls, value: Any) -> DisconnectResponse:
        got = _fields(value, "response", ("status", "error_msg"))
        return cls(
            status=_status(got.get("status")),
            error_msg=_str(got.get("error_msg"), "error_msg"),
        )


# -- state rules (rpc.md §2.2, §4.7) -------------------------------------------------------


def merge_state(stored: Mapping[str, str], changes: Mapping[str, str]) -> dict[str, str]:
    """``stored`` with ``changes`` applied as the server does: ``""`` deletes a key, any
    other value sets it, keys not mentioned are kept."""
    out = dict(stored)
    for key, value in changes.items():
        if value == "":
            out.pop(key, None)
        else:
            out[key] = value
    return out


def state_changes(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str]:
    """The smallest response map that turns ``before`` into ``after`` under
    :func:`merge_state`: changed or new keys with their value, removed keys with ``""``.

    Raises :class:`TypeError` for a key or value that is not a string (Go would refuse
    the whole response).
    """
    out: dict[str, str] = {}
    for key, value in after.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"state keys and values must be strings, not {key!r}: {value!r}")
        if before.get(key) != value:
            out[key] = value
    for key in before:
        if key not in after:
            out[key] = ""
    return out


def encode_disconnect_istate(states: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The Disconnect ``env.istate``: identifier → compact JSON of that channel's state."""
    return {
        identifier: json.dumps(dict(state), separators=(",", ":"))
        for identifier, state in states.items()
    }


def decode_disconnect_istate(istate: Mapping[str, str], identifier: str) -> dict[str, str]:
    """One channel's state from a Disconnect ``env.istate`` (``{}`` when absent or not a
    JSON object of strings)."""
    text = istate.get(identifier)
    if not text:
        return {}
    try:
        return _map(_parse(text), "istate")
    except DecodeError:
        return {}
