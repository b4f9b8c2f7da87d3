"""Cableway configuration: AnyCable-compatible options from flags, the environment and a file.

Sources, lowest to highest precedence: a TOML configuration file, environment variables, then
command-line flags. Names follow AnyCable-Go (spec §13.1/§13.2): the environment variable of
``--some_flag`` is ``ANYCABLE_SOME_FLAG``. :func:`load_config` is pure: it reads only the
``argv``, ``env`` and file values it is given and returns a :class:`Config` whose values are
fully resolved (secret fallbacks applied, broadcast key derived, broadcast port chosen), so the
rest of the server never re-derives them.

Every option is declared once (:mod:`.options`: name, environment variables, kind, default,
range, help, ``--help`` group, AnyCable-Go TOML key, Config field); the readers
(:mod:`.sources`), the rules (:mod:`.resolve`), :class:`Config`'s defaults (:mod:`.model`),
``--help``, ``--print-config`` and the docs table (:mod:`.render`) derive from it.
"""

from __future__ import annotations

from .errors import ConfigError, StartupError
from .model import REDACTED, SECRET_FIELDS, Config
from .option import Option, Refusal
from .options import OPTIONS, REFUSED, all_options, refused_options
from .parse import SentinelAddress, parse_sentinels
from .render import config_toml
from .resolve import file_options, load_config, load_config_with_warnings
from .sources import DEFAULT_CONFIG_PATHS, FileOptions, read_config_file, unread_variables

__all__ = [
    "DEFAULT_CONFIG_PATHS",
    "OPTIONS",
    "REDACTED",
    "REFUSED",
    "SECRET_FIELDS",
    "Config",
    "ConfigError",
    "FileOptions",
    "Option",
    "Refusal",
    "SentinelAddress",
    "StartupError",
    "all_options",
    "config_toml",
    "file_options",
    "load_config",
    "load_config_with_warnings",
    "parse_sentinels",
    "read_config_file",
    "refused_options",
    "unread_variables",
]
