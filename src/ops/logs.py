"""Log lines for the ``cableway`` command (spec §13.5): text or JSON, escaped and redacted.

Text (``--log_format=text``, the default), as AnyCable-Go prints it::

    2024-03-06 13:38:07.545 INF Handle WebSocket connections at ... sid=abc

local time with milliseconds, a three-letter level (DBG/INF/WRN/ERR), the message, then
``key=value`` pairs from the record's ``extra`` attributes
(``log.info("Connected", extra={"sid": sid})``).

JSON (``--log_format=json``): one object per line, as Go's ``slog`` JSON handler writes it::

    {"time":"2024-03-06T13:38:07.545+01:00","level":"INFO","msg":"Connected","sid":"abc"}

Two protections apply whatever the format:

* **No forged lines.** Control characters (CR, LF and every other C0/C1 control, DEL, the
  Unicode line/paragraph separators and bidirectional overrides) are escaped in the message
  and in every value, so a client-controlled string can never start a new log line. A text
  record is exactly one line; a traceback follows it as lines indented by four spaces, so no
  continuation line can pass for a record. :func:`safe` additionally escapes backslashes and
  shortens long values: use it for client-controlled values (``log.debug("... %s", safe(x))``).
* **No secrets.** :class:`SecretFilter` (installed by :func:`configure_logging`) replaces the
  configured secrets (``secret``, ``jwt_secret``, ``streams_secret``, ``turbo_streams_secret``,
  ``broadcast_key``) where they stand as whole tokens (not inside a longer word, so the
  secret ``T`` leaves ``JWT`` alone), the value of ``<jwt_param>=``/``token=`` query
  parameters and of the ``X-<JWT_PARAM>`` and ``Authorization`` headers, and anything shaped
  like a JWT with ``[REDACTED]``, once: a replacement is never redacted again. The message is
  redacted when a record is created (so every handler, including test capture, sees the
  redacted record); the handler does the ``extra`` values.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "LEVELS",
    "REDACTED",
    "WARNINGS_PER_WINDOW",
    "WARNING_WINDOW_SECONDS",
    "JsonFormatter",
    "SecretFilter",
    "TextFormatter",
    "WarningGate",
    "configure_logging",
    "escape_controls",
    "safe",
]

REDACTED = "[REDACTED]"

# Config.log_level -> stdlib level.
LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}

_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))
) | {"message", "asctime", "taskName"}
_PLAIN = re.compile(r"[^\s=\"\\]+")

# ---------------------------------------------------------------------------------------------
# Escaping
# ---------------------------------------------------------------------------------------------

# C0 controls, DEL, C1 controls, line/paragraph separators, bidirectional overrides/isolates.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character escaped (``\\n``, ``\\x1b``, ``\\u2028``...)."""
    return _CONTROLS.sub(_escape_one, text)


def safe(value: object, *, limit: int = 256) -> str:
    """A client-controlled value made safe to log: one unambiguous line, at most ``limit``
    characters of it (the rest is counted, not shown).

    Backslashes are doubled and control characters escaped, so what the client sent can be
    read back exactly; bytes are decoded as UTF-8 with invalid bytes shown as ``\\xNN``.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value).decode("utf-8", "backslashreplace")
    else:
        text = str(value).replace("\\", "\\\\")
    omitted = len(text) - limit
    if omitted > 0:
        return escape_controls(text[:limit]) + f"...({omitted} more characters)"
    return escape_controls(text)


# ---------------------------------------------------------------------------------------------
# Formatters
# ---------------------------------------------------------------------------------------------


def _short_level(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "ERR"
    if levelno >= logging.WARNING:
        return "WRN"
    if levelno >= logging.INFO:
        return "INF"
    return "DBG"


def _slog_level(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARN"
    if levelno >= logging.INFO:
        return "INFO"
    return "DEBUG"


def _format_value(value: object) -> str:
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _extras(record: logging.LogRecord) -> Iterable[tuple[str, object]]:
    for key, value in record.__dict__.items():
        if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
            yield key, value


def _traceback(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The record's exception and stack text ("" if none), using the redacted cache."""
    parts: list[str] = []
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts)


class TextFormatter(logging.Formatter):
    """One line per record, in AnyCable-Go's text format, control characters escaped."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        line = f"{stamp}.{int(record.msecs):03d} {_short_level(record.levelno)}"
        message = record.getMessage()
        if message:
            line += " " + message
        for key, value in _extras(record):
            line += f" {key}={_format_value(value)}"
        line = escape_controls(line)
        trace = _traceback(self, record)
        if trace:
            line += "".join("\n    " + escape_controls(part) for part in trace.splitlines())
        return line


# JSON escapes C0 controls itself; these remain (ensure_ascii=False keeps text readable).
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``msg``, then the extra attributes."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).astimezone()
        stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        fields: dict[str, object] = {
            "time": stamp,
            "level": _slog_level(record.levelno),
            "msg": record.getMessage(),
        }
        for key, value in _extras(record):
            fields.setdefault(key, value)
        trace = _traceback(self, record)
        if trace:
            fields.setdefault("error", trace)
        text = json.dumps(fields, ensure_ascii=False, default=str, separators=(",", ":"))
        return _JSON_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


# ---------------------------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------------------------

# base64url of '{"' is 'eyJ': a JWT header.
_JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_NOT_DONE = r"(?!\[REDACTED\])"
_BEARER = re.compile(rf"(?i)(\bbearer(?:\s++|%20)){_NOT_DONE}[^\s\"',;)\]}}]+")
_QUERY_VALUE = r"[^&#\s\"'<>,;)\]}]+"
_HEADER_VALUE = r"[^\s\"'&,;)\]}]+"
# After a header name: quotes, ":" or "=" or "," (a tuple), an optional auth scheme.
# Possessive, so that an already redacted value cannot be matched again by backtracking.
_HEADER_SEPARATOR = r"['\"]?+\s*+[:=,]\s*+(?:b?['\"])?+(?:(?:bearer|basic|digest|token|jwt)\s++)?+"


class SecretFilter(logging.Filter):
    """Replaces secrets, tokens and credentials in log records with ``[REDACTED]``.

    ``secrets``: exact values never to show. ``params``: query parameter names whose values
    are credentials (``jid``: ``?jid=...`` and the ``X-JID`` header); ``token`` and
    ``access_token`` are always included, and the ``Authorization`` header too.
    """

    def __init__(
        self, secrets: Iterable[str | None] = (), params: Iterable[str] = ("jid",)
    ) -> None:
        super().__init__()
        values = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
        names = sorted({name.lower() for name in (*params, "token", "access_token") if name})
        self.params = frozenset(names)
        self.headers = frozenset({f"x-{name}" for name in names} | {"authorization"})
        param = "|".join(re.escape(name) for name in names)
        header = "|".join(re.escape(name) for name in sorted(self.headers))
        # "[REDACTED]" first, kept as it is: a secret never matches inside a replacement
        self._secrets = (
            re.compile("|".join([_ALREADY, *map(_whole_token, values)])) if values else None
        )
        # ?jid=value, token=value
        self._query = re.compile(rf"(?i)((?<![\w-])(?:{param})=){_NOT_DONE}{_QUERY_VALUE}")
        # "X-JID: value", "x-jid=value", ('x-jid', 'value'), (b'x-jid', b'value')
        self._header = re.compile(
            rf"(?i)((?<![\w-])(?:{header}){_HEADER_SEPARATOR}){_NOT_DONE}{_HEADER_VALUE}"
        )

    @classmethod
    def from_config(cls, config: Config) -> SecretFilter:
        return cls(
            (
                config.secret,
                config.jwt_secret,
                config.streams_secret,
                config.turbo_streams_secret,
                config.broadcast_key,
            ),
            (config.jwt_param,),
        )

    def redact(self, text: str) -> str:
        """``text`` with every secret and credential replaced by ``[REDACTED]``."""
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)  # "[REDACTED]" itself is replaced by itself
        text = _JWT_SHAPE.sub(REDACTED, text)
        text = self._header.sub(_KEEP_PREFIX, text)
        text = self._query.sub(_KEEP_PREFIX, text)
        return _BEARER.sub(_KEEP_PREFIX, text)

    def redact_record(self, record: logging.LogRecord, *, extras: bool = True) -> None:
        """Redact ``record`` in place: message, traceback, and (``extras``) extra values."""
        if getattr(record, _DONE, None) is not self:  # once per record and filter
            try:
                message = record.getMessage()
            except Exception:  # a broken format string: let the handler report it
                return
            redacted = self.redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
            if record.exc_info and not record.exc_text:
                record.exc_text = _PLAIN_FORMATTER.formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self.redact(record.exc_text)
            if record.stack_info:
                record.stack_info = self.redact(record.stack_info)
            setattr(record, _DONE, self)
        if extras:
            for key, value in list(_extras(record)):
                lowered = key.lower()
                if lowered in self.params or lowered in self.headers:
                    setattr(record, key, REDACTED)
                    continue
                text = value if isinstance(value, str) else str(value)
                cleaned = self.redact(text)
                if cleaned != text:
                    setattr(record, key, cleaned)

    def filter(self, record: logging.LogRecord) -> bool:
        self.redact_record(record)
        return True


_PLAIN_FORMATTER = logging.Formatter()
_ALREADY = re.escape(REDACTED)
_WORD = re.compile(r"\w")


def _whole_token(secret: str) -> str:
    """A pattern for ``secret`` where it stands as a whole token: not inside a longer word, so
    a one-letter secret ``T`` hides ``?key=T`` and ``"T"`` but not the T of ``JWT``."""
    pattern = re.escape(secret)
    if _WORD.match(secret[0]):
        pattern = r"(?<!\w)" + pattern
    if _WORD.match(secret[-1]):
        pattern += r"(?!\w)"
    return pattern


_DONE = "_cableway_redacted"  # on a record: the filter its message was redacted by
_KEEP_PREFIX = r"\1" + REDACTED  # keep "jid=" / "X-JID: " / "Bearer ", hide the value

# The filter records are redacted with as they are created (see configure_logging).
_active_filter: SecretFilter | None = None
_base_factory: Callable[..., logging.LogRecord] | None = None


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _base_factory is not None
    record = _base_factory(*args, **kwargs)
    active = _active_filter
    if active is not None:
        # extra attributes are set after the factory returns: the handler filter does those
        active.redact_record(record, extras=False)
    return record


def _install_record_factory(secret_filter: SecretFilter) -> None:
    global _active_filter, _base_factory
    _active_filter = secret_filter
    current = logging.getLogRecordFactory()
    if current is not _redacting_factory:
        _base_factory = current
        logging.setLogRecordFactory(_redacting_factory)


class _CablewayHandler(logging.StreamHandler[TextIO]):
    """The handler configure_logging installs (and replaces on the next call)."""


def configure_logging(config: Config, stream: TextIO | None = None) -> None:
    """Log at ``config.log_level`` in ``config.log_format`` to ``stream`` (default: stderr).

    Installs one handler on the root logger (replacing the one a previous call installed;
    other handlers are left alone) and the :class:`SecretFilter` for ``config``, both on that
    handler and on every log record as it is created.
    """
    secret_filter = SecretFilter.from_config(config)
    handler = _CablewayHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if config.log_format == "json" else TextFormatter())
    handler.addFilter(secret_filter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _CablewayHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[config.log_level])
    _install_record_factory(secret_filter)


#: "invalid broadcast" (and "body budget") warnings logged per window; the rest are
#: counted (see :class:`WarningGate`)
WARNINGS_PER_WINDOW = 10
WARNING_WINDOW_SECONDS = 10.0


class WarningGate:
    """At most ``burst`` warnings per window of ``window`` seconds (on ``clock``: the
    driver's monotonic clock, trio's or the event loop's).

    A window opens with the first warning after the previous one closed. The warning
    that fills a window says that more are suppressed; the first one after the window
    is preceded by one line counting those suppressed. So a flood of bad requests
    costs a few lines per window, not one per request, and nothing goes unsaid.
    """

    __slots__ = (
        "_clock",
        "_ends",
        "_logged",
        "_logger",
        "_suppressed",
        "burst",
        "what",
        "window",
    )

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        burst: int = WARNINGS_PER_WINDOW,
        window: float = WARNING_WINDOW_SECONDS,
        *,
        clock: Callable[[], float],
    ) -> None:
        self._logger = logger
        self._clock = clock
        self.what = what
        self.burst = burst
        self.window = window
        self._ends = -math.inf
        self._logged = 0
        self._suppressed = 0

    def warn(self, message: str, *args: object) -> None:
        now = self._clock()
        if now >= self._ends:
            if self._suppressed:
                self._logger.warning(
                    "%d more %s warnings suppressed in the last %gs",
                    self._suppressed,
                    self.what,
                    self.window,
                )
            self._ends = now + self.window
            self._logged = self._suppressed = 0
        if self._logged >= self.burst:
            self._suppressed += 1
            return
        self._logged += 1
        self._logger.warning(message, *args)
        if self._logged == self.burst:
            self._logger.warning(
                "more than %d %s warnings in %gs: the next ones are counted, not logged, "
                "until the window ends",
                self.burst,
                self.what,
                self.window,
            )
