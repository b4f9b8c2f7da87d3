"""What one option is: the declaration every reader, rule and rendering is derived from.

An :class:`Option` says everything about one setting once: its flag name, environment
variables, kind, typed default, accepted range or values, help text, ``--help`` group, the
AnyCable-Go 1.6 TOML key that sets it and the :class:`~cableway.config.Config` field it fills.
The table of them is :data:`cableway.config.options.OPTIONS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .parse import keep, unset_if_empty

__all__ = [
    "AUTH",
    "BROADCAST",
    "BROKER",
    "CONFIG_FILE",
    "DEPRECATED",
    "LIMITS",
    "LOGGING",
    "METRICS",
    "SERVER",
    "SSE",
    "STREAMS",
    "WEBSOCKET",
    "Kind",
    "Option",
    "Refusal",
    "declare",
    "env_name",
    "shown_value",
]

Kind = Literal["str", "int", "float", "bool", "list", "secret"]

# The --help groups (and docs headings), in the order they are shown.
SERVER = "Server"
AUTH = "Authentication (JWT)"
STREAMS = "Signed streams and Turbo Streams"
BROADCAST = "Broadcasting"
BROKER = "Reliable streams (history, session restore, presence)"
WEBSOCKET = "WebSocket and pings"
SSE = "Server-Sent Events"
LIMITS = "Cableway limits (not AnyCable options)"
LOGGING = "Logging"
METRICS = "Metrics"
CONFIG_FILE = "Configuration file"
DEPRECATED = "Deprecated aliases"

_METAVARS: dict[Kind, str] = {
    "str": "VALUE",
    "int": "N",
    "float": "SECONDS",
    "bool": "BOOL",
    "list": "A,B",
    "secret": "SECRET",
}


def env_name(name: str) -> str:
    """The environment variable of option ``name``: ``max-conn`` -> ``ANYCABLE_MAX_CONN``."""
    return "ANYCABLE_" + re.sub(r"[-_]", "_", name).upper()


def shown_value(value: object) -> str:
    """A typed default as ``--help`` and the docs show it (``30.0`` -> ``30``, ``()`` ->
    ``unset``)."""
    if value is None or value == () or value == "":
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: a command-line flag, its environment variables and its file key.

    ``value`` is the typed value used when no source sets the option (``None`` = unset); it
    is also the :class:`~cableway.config.Config` field's default. ``default`` is how
    ``--help`` and the docs show it. ``low``/``high`` bound an ``int``; ``positive`` says a
    ``float`` must be more than zero (else zero or more); ``choices`` lists a ``str``'s (or a
    ``list``'s items') accepted values. ``toml`` is the AnyCable-Go 1.6 key path
    (``("server", "port")``, ``("secret",)``), ``None`` for Cableway's own options, which the
    file spells as flat keys named like the option.
    """

    name: str  # as spelled on the command line, without the leading "--"
    kind: Kind
    value: Any
    help: str
    section: str  # the --help group and docs heading
    env: tuple[str, ...]  # highest precedence first; () = no environment variable
    toml: tuple[str, ...] | None = None
    # how a value read from that TOML key becomes the option's (None: "not set")
    toml_convert: Callable[[object], object | None] | None = None
    field: str | None = None  # the Config field it fills; None = none
    low: int = 1
    high: int | None = None
    positive: bool = False
    choices: tuple[str, ...] = ()
    pattern: bool = False  # an endpoint path: literal, or a routing pattern (/a/{b}/*)
    in_file: bool = True  # False: only on the command line or in the environment
    note: str = ""  # shown after the default: "0 (unlimited)"
    shown: str | None = None  # the default as shown, when not the typed default's text
    replaced_by: str | None = None  # deprecated alias of this option

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def metavar(self) -> str:
        return _METAVARS[self.kind]

    @property
    def file_key(self) -> str:
        """The option as a flat configuration-file key: ``health-path`` -> ``health_path``."""
        return self.name.replace("-", "_")

    @property
    def default(self) -> str:
        """The default for ``--help`` and the docs."""
        text = shown_value(self.value) if self.shown is None else self.shown
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True, slots=True)
class Refusal:
    """An AnyCable option (or some of its values) that Cableway cannot honour yet.

    ``accepted`` describes the values that are fine, for ``--help`` and the docs; when empty
    it is derived: the option's declared choices that ``accepts`` lets through.
    """

    kind: Kind  # for an option that exists only as a refusal
    reason: str
    accepts: Callable[[str], bool]  # True for the values that are fine (raises ValueError if bad)
    accepted: str = ""


_DERIVED = "derived"


def declare(
    name: str,
    kind: Kind,
    value: Any,
    help: str,
    section: str,
    *,
    env: tuple[str, ...] | None = None,
    toml: tuple[str, ...] | None = None,
    toml_convert: Callable[[object], object | None] | None = None,
    field: str | None = _DERIVED,
    low: int = 1,
    high: int | None = None,
    positive: bool = False,
    choices: tuple[str, ...] = (),
    pattern: bool = False,
    in_file: bool = True,
    note: str = "",
    shown: str | None = None,
    replaced_by: str | None = None,
) -> Option:
    """An :class:`Option` with the usual derivations: the environment variable from the
    name, the Config field named like the option (none for a deprecated alias), string file
    keys read ``""`` as unset."""
    if replaced_by is not None:
        field = None
    if toml is not None and toml_convert is None:
        toml_convert = unset_if_empty if kind in ("str", "secret") else keep
    return Option(
        name=name,
        kind=kind,
        value=value,
        help=help,
        section=section,
        env=(env_name(name),) if env is None else env,
        toml=toml,
        toml_convert=toml_convert,
        field=name.replace("-", "_") if field == _DERIVED else field,
        low=low,
        high=high,
        positive=positive,
        choices=choices,
        pattern=pattern,
        in_file=in_file,
        note=note,
        shown=shown,
        replaced_by=replaced_by,
    )
