"""AnyCable-like text log lines for the ``cableway`` command (spec §13.5).

``2024-03-06 13:38:07.545 INF Handle WebSocket connections at ... sid=abc``: local time with
milliseconds, a three-letter level (DBG/INF/WRN/ERR), the message, then ``key=value`` pairs taken
from the record's ``extra`` attributes (``log.info("Connected", extra={"sid": sid})``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import TextIO

__all__ = ["LEVELS", "TextFormatter", "configure_logging"]

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


def _short_level(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "ERR"
    if levelno >= logging.WARNING:
        return "WRN"
    if levelno >= logging.INFO:
        return "INF"
    return "DBG"


def _format_value(value: object) -> str:
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """One line per record, in AnyCable-Go's text format."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        line = f"{stamp}.{int(record.msecs):03d} {_short_level(record.levelno)} "
        line += record.getMessage()
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                line += f" {key}={_format_value(value)}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` (a Config.log_level) or above to ``stream``.

    ``stream`` defaults to the current ``sys.stderr``. Replaces the root logger's handlers.
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
