"""The three sources of option values: the command line, the environment and a TOML file.

Each reader turns what the user wrote into :class:`Raw` values keyed by option name, keeping
how the user spelled it (for error messages) and the source's precedence. Nothing here
validates values; that is :mod:`cableway.config.resolve`'s job.
"""

from __future__ import annotations

import argparse
import decimal
import difflib
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from . import anycable
from .errors import ConfigError
from .option import Kind, Option
from .options import ALL_BY_NAME, all_options
from .options_running import DEFAULT_CONFIG_PATHS
from .render import toml_value

__all__ = [
    "DEFAULT_CONFIG_PATHS",
    "FileOptions",
    "Raw",
    "file_key",
    "from_command_line",
    "from_environment",
    "from_file",
    "read_config_file",
    "unread_variables",
]


@dataclass(frozen=True, slots=True)
class Raw:
    value: str
    label: str  # "--port", "ANYCABLE_PORT" or "port in anycable.toml": how the user spelled it
    rank: int  # -1 = configuration file, 0 = environment, 1 = command line
    setting: str = ""  # "--port=8080" as the user wrote it, for refusals ("" = label=value)

    def spelled(self) -> str:
        return self.setting or f"{self.label}={self.value}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _build_parser() -> _Parser:
    parser = _Parser(prog="cableway", add_help=False, allow_abbrev=False)
    for option in all_options():
        if option.kind == "bool":
            parser.add_argument(option.flag, dest=option.name, nargs="?", const="true")
        else:
            parser.add_argument(option.flag, dest=option.name, metavar=option.metavar)
    return parser


def from_command_line(argv: Sequence[str]) -> dict[str, Raw]:
    bools = {option.flag for option in all_options() if option.kind == "bool"}
    # A bare boolean flag never takes the next argument as its value (as in Go): spell it out.
    args = [f"{arg}=true" if arg in bools else arg for arg in argv]
    namespace, extras = _build_parser().parse_known_args(args)
    for extra in extras:
        if extra.startswith("-"):
            raise ConfigError(
                f"unknown option {extra.split('=', 1)[0]} (see cableway --help for the options)"
            )
        raise ConfigError(f"unexpected argument {extra!r}")
    values: dict[str, Raw] = {}
    for name, value in vars(namespace).items():
        if value is not None:
            values[name] = Raw(str(value), f"--{name}", 1)
    return values


def from_environment(env: Mapping[str, str]) -> dict[str, Raw]:
    values: dict[str, Raw] = {}
    for option in all_options():
        for variable in option.env:
            value = env.get(variable, "")
            if value != "":  # an empty variable counts as unset
                values[option.name] = Raw(value, variable, 0)
                break
    return values


def file_key(name: str) -> str:
    """Option ``name`` as a configuration-file key: ``health-path`` -> ``health_path``."""
    return name.replace("-", "_")


def _file_scalar(value: object) -> str:
    """A TOML scalar as the text a flag would carry (raises ValueError for other values)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        return format(decimal.Decimal(repr(value)), "f")
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, number or boolean, not a TOML {type(value).__name__}")


def _file_value(name: str, kind: Kind, value: object) -> str:
    if isinstance(value, dict):
        if name != "metrics_tags":
            raise ValueError(
                "expected a value, not a table (Cableway reads flat keys, e.g. port = 8080)"
            )
        return ",".join(f"{key}:{_file_scalar(item)}" for key, item in value.items())
    if isinstance(value, list):
        if kind != "list":
            raise ValueError("expected a single value, not a list")
        items = [_file_scalar(item) for item in value]
        if any("," in item for item in items):
            raise ValueError("list items must not contain commas")
        return ",".join(items)
    return _file_scalar(value)


def from_file(values: Mapping[str, object], file_name: str) -> tuple[dict[str, Raw], list[str]]:
    """The options a parsed configuration file sets, and warnings about it.

    The file may be in AnyCable-Go 1.6's layout (top-level keys and sections such as
    ``[server]``, :mod:`cableway.config.anycable`; names ignore case, as there) and may also
    hold flat keys named like the options (``port = 8080``, Cableway's extension, also how
    Cableway's own options are written). AnyCable-Go keys that ask for nothing Cableway does
    are accepted; keys of AnyCable-Go features Cableway lacks are refused unless idle; keys
    nobody knows get a warning.
    """
    reader = _FileReader(file_name)
    for key, value in values.items():
        lowered = key.lower()
        if lowered in anycable.SECTIONS and (
            isinstance(value, dict) or file_key(lowered) not in reader.flat
        ):  # (broker = "memory" and sse = true are flat keys)
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{key} in {file_name}: expected a section ([{lowered}]), not a TOML "
                    f"{type(value).__name__}"
                )
            for path, spelled, item in anycable.key_paths(lowered, value):
                reader.anycable_key(path, spelled, item)
        elif (lowered,) in anycable.SETS or anycable.ignored((lowered,)):
            reader.anycable_key((lowered,), key, value)
        else:
            reader.flat_key(key, value)
    return reader.raws, reader.warnings


class _FileReader:
    def __init__(self, file_name: str) -> None:
        self.file_name = file_name
        self.raws: dict[str, Raw] = {}
        self.warnings: list[str] = []
        self.flat = {file_key(option.name): option for option in all_options()}

    def _set(self, option: Option, spelled: str, value: object) -> None:
        label = f"{spelled} in {self.file_name}"
        try:
            text = _file_value(option.name, option.kind, value)
        except ValueError as exc:
            raise ConfigError(f"invalid value for {label}: {exc}") from None
        earlier = self.raws.get(option.name)
        if earlier is not None:
            raise ConfigError(f"{earlier.label} and {label} both set {option.flag}: keep one")
        self.raws[option.name] = Raw(text, label, -1, f"{spelled} = {text!r} in {self.file_name}")

    def anycable_key(self, path: tuple[str, ...], spelled: str, value: object) -> None:
        key = anycable.SETS.get(path)
        if key is not None:
            converted = key.convert(value)
            if converted is not None:
                self._set(ALL_BY_NAME[key.option], spelled, converted)
                if key.deprecated:
                    self.warnings.append(
                        f"{spelled} in {self.file_name} is deprecated, use {key.deprecated}"
                    )
            return
        feature = anycable.FEATURES.get(path)
        if feature is not None:
            if value not in feature.idle or type(value) is not type(feature.idle[-1]):
                raise ConfigError(
                    f"{spelled} = {_toml_value_or_repr(value)} in {self.file_name}: "
                    f"{feature.reason}"
                )
            return
        if not anycable.ignored(path):
            known = [anycable.label(known) for known in anycable.SETS]
            close = difflib.get_close_matches(anycable.label(path), known, n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.warnings.append(
                f"{spelled} in {self.file_name} is not a setting Cableway knows; ignored{hint}"
            )

    def flat_key(self, key: str, value: object) -> None:
        option = self.flat.get(file_key(key)) or self.flat.get(file_key(key).lower())
        if option is not None and not option.in_file:
            raise ConfigError(
                f"{key} in {self.file_name}: {option.flag} is a command-line option, not a "
                "configuration file setting"
            )
        if option is None:
            known = sorted({*self.flat, *(anycable.label(p) for p in anycable.SETS)})
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.warnings.append(
                f"{key} in {self.file_name} is not a setting Cableway knows; ignored{hint}"
            )
            return
        self._set(option, key, value)


def _toml_value_or_repr(value: object) -> str:
    try:
        return toml_value(value)
    except TypeError:
        return repr(value)


def read_config_file(path: str) -> dict[str, object]:
    """Parse the TOML file at ``path`` (the only function here that does I/O).

    Raises :class:`ConfigError` naming the file when it is missing, unreadable or not TOML.
    """
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None


@dataclass(frozen=True, slots=True)
class FileOptions:
    """The flags about the configuration file (``--config-path``, ``--ignore-config-path``,
    ``--print-config``)."""

    config_path: str | None = None  # given explicitly (flag or ANYCABLE_CONFIG_PATH)
    ignore_config_path: bool = False
    print_config: bool = False

    def path(self, exists: Callable[[str], bool]) -> str | None:
        """The file to read: none when ignored, else the explicit one, else the first default
        path for which ``exists`` is true."""
        if self.ignore_config_path:
            return None
        if self.config_path is not None:
            return self.config_path
        return next((path for path in DEFAULT_CONFIG_PATHS if exists(path)), None)


#: Variables with our prefixes that other programs read (the Rails side of AnyCable, the
#: ``cableway broadcast`` helper, AnyCable-Go's telemetry switch, Cableway's test suite).
_OTHER_PROGRAMS_VARIABLES = frozenset(
    {
        "ANYCABLE_WEBSOCKET_URL",
        "ANYCABLE_HTTP_BROADCAST_URL",
        "ANYCABLE_JWT_ID_TTL",
        "ANYCABLE_DISABLE_TELEMETRY",
        "ANYCABLE_TELEMETRY_URL",
        "CABLEWAY_WORKER",  # set by the supervisor of --workers for its workers
        "CABLEWAY_REUSEPORT",  # --workers: an experiment of issue 20 (docs/benchmarks.md)
        "CABLEWAY_REQUIRE_INTEROP",
        "CABLEWAY_REQUIRE_REDIS",
        "CABLEWAY_REQUIRE_RAILS",
        "CABLEWAY_PY27",
        "CABLEWAY_AUTOBAHN_VENV",
        "CABLEWAY_INTEROP_DEBUG",
        "CABLEWAY_INTEROP_SERVER",
        "CABLEWAY_CHROMIUM",
        "CABLEWAY_URL",
    }
)
_PREFIXES = ("ANYCABLE_", "CABLEWAY_")


def unread_variables(env: Mapping[str, str]) -> list[str]:
    """Warnings for ``ANYCABLE_*``/``CABLEWAY_*`` variables in ``env`` that no option reads
    (a typo there would otherwise silently run the server with the default)."""
    known = {variable for option in all_options() for variable in option.env}
    warnings = []
    for name in sorted(env):
        if not name.startswith(_PREFIXES) or name in known or name in _OTHER_PROGRAMS_VARIABLES:
            continue
        guess = name.replace("CABLEWAY_", "ANYCABLE_", 1)
        close = difflib.get_close_matches(guess, sorted(known), n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"the environment variable {name} is not read by Cableway{hint}")
    return warnings
