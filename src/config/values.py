"""Reading one option's value from the collected sources, as its declaration says.

:class:`Values` holds the :class:`~cableway.config.sources.Raw` values of every source and
answers "what is option X?": the highest-precedence source wins (the command line over the
environment over the file; on a tie an option beats its deprecated old name), the text is
parsed by the option's kind and checked against its declared range or choices, and an invalid
value raises :class:`~cableway.config.errors.ConfigError` naming how the user spelled it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

from ..protocol.routes import parse_path_pattern
from .errors import ConfigError
from .model import REDACTED
from .options import BY_NAME, aliases
from .parse import parse_bool, parse_float, parse_int
from .sources import Raw

__all__ = ["Values"]

_T = TypeVar("_T")


class Values:
    def __init__(self, values: Mapping[str, Raw]) -> None:
        self.values = values

    def given(self, name: str) -> Raw | None:
        """The raw value of option ``name`` exactly (not its old names), if any source set it."""
        return self.values.get(name)

    def pick(self, *names: str) -> Raw | None:
        """The value from the highest-precedence source; on a tie, the earliest name wins."""
        best: tuple[int, int, Raw] | None = None
        for index, name in enumerate(names):
            raw = self.values.get(name)
            if raw is not None and (best is None or (raw.rank, -index) > best[:2]):
                best = (raw.rank, -index, raw)
        return None if best is None else best[2]

    def raw(self, name: str) -> Raw | None:
        """The raw value of option ``name`` or of one of its deprecated old names."""
        return self.pick(*aliases(name))

    @staticmethod
    def fail(raw: Raw, problem: str) -> NoReturn:
        raise ConfigError(f"invalid value {raw.value!r} for {raw.label}: {problem}")

    def convert(self, raw: Raw, parse: Callable[[str], _T]) -> _T:
        try:
            return parse(raw.value)
        except ValueError as exc:
            self.fail(raw, str(exc))

    def get(self, name: str, default: Any = None) -> Any:
        """Option ``name``'s value, parsed and checked as declared (``default`` replaces the
        declared one, for defaults that depend on other options). Not for lists and secrets,
        whose rules are the resolver's."""
        option = BY_NAME[name]
        fallback = option.value if default is None else default
        if option.kind == "bool":
            return self.boolean(name, default=fallback)
        if option.kind == "int":
            return self.integer(name, fallback, option.low, option.high)
        if option.kind == "float":
            return self.number(name, fallback, allow_zero=not option.positive)
        if option.kind != "str":
            raise TypeError(f"--{name} is a {option.kind} option: the resolver reads it")
        if option.choices:
            return self.choice(name, fallback, option.choices)
        if option.pattern:
            return self.path(name, fallback)
        if not fallback:  # unset by default (None or ""): an empty value is unset too
            value = self.optional_string(name)
            return fallback if value is None else value
        return self.string(name, default=fallback)

    def string(self, name: str, *, default: str) -> str:
        raw = self.raw(name)
        if raw is None:
            return default
        if not raw.value.strip():
            self.fail(raw, "must not be empty")
        return raw.value

    def path(self, name: str, default: str) -> str:
        """An endpoint path: literal, or a routing pattern as AnyCable-Go's router takes it."""
        raw = self.raw(name)
        if raw is None:
            return default
        self.convert(raw, parse_path_pattern)
        return raw.value

    def choice(self, name: str, default: str, choices: Sequence[str]) -> str:
        raw = self.raw(name)
        if raw is None:
            return default
        value = raw.value.strip().lower()
        if value not in choices:
            self.fail(raw, "must be one of " + ", ".join(choices))
        return value

    def boolean(self, name: str, *, default: bool = False) -> bool:
        raw = self.raw(name)
        return default if raw is None else self.convert(raw, parse_bool)

    def integer(self, name: str, default: int, low: int, high: int | None = None) -> int:
        raw = self.raw(name)
        if raw is None:
            return default
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        try:
            value = parse_int(raw.value)
        except ValueError:
            self.fail(raw, f"must be an integer {bound}")
        if value < low or (high is not None and value > high):
            self.fail(raw, f"must be an integer {bound}")
        return value

    def number(self, name: str, default: float, *, allow_zero: bool) -> float:
        raw = self.raw(name)
        if raw is None:
            return default
        value = self.convert(raw, parse_float)
        if value < 0 or (value == 0 and not allow_zero):
            self.fail(raw, "must be zero or more" if allow_zero else "must be more than zero")
        return value

    def secret(self, name: str) -> tuple[bool, str | None]:
        """(given, value): ``none`` and the empty string give ``(True, None)``."""
        raw = self.raw(name)
        if raw is None:
            return False, None
        if raw.value in ("", "none"):
            return True, None
        if raw.value == REDACTED:
            self.fail(raw, "this is the placeholder --print-config shows; write the real secret")
        return True, raw.value

    def optional_string(self, name: str) -> str | None:
        """A string option whose empty value means unset."""
        raw = self.raw(name)
        if raw is None or not raw.value.strip():
            return None
        return raw.value.strip()
