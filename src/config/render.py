"""What is derived from the declarations for people to read: ``--print-config`` (TOML in
AnyCable-Go 1.6's layout), the option sections of ``--help`` and the option reference in
``docs/configuration.md``."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import fields

from ..rpc.settings import RpcSettings
from . import anycable
from .model import REDACTED, SECRET_FIELDS, Config
from .option import Option
from .options import ALL_BY_NAME, BROKER_SETTINGS, BY_FIELD, OPTIONS, REFUSED

__all__ = [
    "accepted_values",
    "config_toml",
    "file_key",
    "help_entry",
    "options_help",
    "options_markdown",
    "toml_string",
    "toml_value",
]


def toml_string(text: str) -> str:
    # JSON strings are TOML basic strings, once DEL (which TOML wants escaped) is escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))  # AnyCable-Go reads durations as TOML integers
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _printed_value(config: Config, name: str, value: object) -> str | None:
    """The TOML text of field ``name`` (from ``config.redacted()``), or None to comment it out."""
    if name in SECRET_FIELDS and value is None:
        return '"none"'  # explicitly unset (also stops the fallback to secret), as AnyCable
    if value is None:
        return None
    if name == "metrics_tags":
        pairs = ", ".join(f"{tag} = {toml_string(text)}" for tag, text in config.metrics_tags)
        return f"{{ {pairs} }}" if pairs else "{}"
    if name == "allowed_origins":
        return toml_string(",".join(config.allowed_origins))  # a comma string in AnyCable
    return toml_value(value)


def _rpc_toml(rpc: RpcSettings | None) -> list[str]:
    """AnyCable-Go's ``[rpc]`` keys for the RPC settings (``--headers`` is not among them:
    AnyCable-Go never reads ``proxy_headers`` from the file)."""
    if rpc is None:
        return ['implementation = "none"  # no RPC (--norpc)']
    secret = toml_string(REDACTED) if rpc.key is not None else '"none"'
    lines = [
        'implementation = "http"',
        f"host = {toml_string(rpc.host)}",
        f"secret = {secret}",
        f"concurrency = {rpc.concurrency}",
        f"request_timeout = {round(rpc.request_timeout * 1000)}",
        f"# headers = {toml_string(','.join(rpc.headers))}: only --headers or ANYCABLE_HEADERS",
    ]
    if rpc.proxy_cookies is not None:
        lines.append(f"proxy_cookies = {toml_value(rpc.proxy_cookies)}")
    return lines


def config_toml(config: Config) -> str:
    """The effective configuration as a TOML file (``--print-config``), secrets redacted.

    The layout is AnyCable-Go 1.6's (top-level keys, then ``[server]``, ``[logging]``, ...
    with its key names, :mod:`cableway.config.anycable`), so the file (with real secrets put
    back) loads in Cableway and in AnyCable-Go. Cableway's own options come as flat
    top-level keys, which AnyCable-Go ignores. Unset values are written as comments.
    """
    top: list[str] = []
    own: list[str] = []
    sections: dict[str, list[str]] = {section: [] for section in anycable.SECTIONS}
    defaults = {field.name: field.default for field in fields(Config)}
    for name, value in config.redacted().items():
        if name == "rpc":
            continue  # written below, as AnyCable-Go's [rpc] section
        section, key = anycable.PRINTED.get(name, ("", BY_FIELD[name].file_key))
        text = _printed_value(config, name, value)
        line = f"# {key} is unset" if text is None else f"{key} = {text}"
        if name in BROKER_SETTINGS and config.broker == "none" and value == defaults[name]:
            line = f"# {line}  (no effect: the broker is none)"
        if name not in anycable.PRINTED:
            own.append(line)
        elif section:
            sections[section].append(line)
        else:
            top.append(line)
    sections["rpc"] += _rpc_toml(config.rpc)
    if config.rpc is not None:
        sections["app"].append(f"disconnect_mode = {toml_string(config.rpc.disconnect_mode)}")
        sections["disconnector"].append(f"rate = {config.rpc.disconnect_rate}")
    out = [
        "# Cableway effective configuration (cableway --print-config), in AnyCable-Go 1.6's",
        "# layout: Cableway and AnyCable-Go both load it.",
        f'# Secrets show as "{REDACTED}": write the real values before using this file.',
        "",
        *top,
        "",
        "# Cableway's own settings (AnyCable-Go ignores them)",
        *own,
    ]
    for section, lines in sections.items():
        if lines:
            out += ["", f"[{section}]", *lines]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# --help (the option sections) and docs/configuration.md (the option reference)
# ---------------------------------------------------------------------------------------------

HELP_WIDTH = 100
FLAG_COLUMN = 34


def _sections() -> dict[str, list[Option]]:
    sections: dict[str, list[Option]] = {}
    for option in OPTIONS:
        sections.setdefault(option.section, []).append(option)
    return sections


def _flag_usage(option: Option) -> str:
    if option.kind == "bool":
        return f"{option.flag}[=BOOL]"
    return f"{option.flag}={option.metavar}"


def help_entry(flag: str, lines: Sequence[str]) -> list[str]:
    """One entry of ``--help``: ``flag`` in the left column, ``lines`` wrapped beside it."""
    indent = " " * FLAG_COLUMN
    head = f"  {flag}"
    body: list[str] = []
    for line in lines:
        body.extend(textwrap.wrap(line, HELP_WIDTH - FLAG_COLUMN) or [""])
    if len(head) < FLAG_COLUMN - 1:
        return [head.ljust(FLAG_COLUMN) + body[0], *(indent + rest for rest in body[1:])]
    return [head, *(indent + rest for rest in body)]


def _env_text(option: Option) -> str:
    return ", ".join(option.env) if option.env else "(none)"


def accepted_values(name: str) -> str:
    """The values refused option ``name`` accepts, as the docs list them (```http`, `redis```)."""
    refusal = REFUSED[name]
    if refusal.accepted:
        return refusal.accepted
    option = ALL_BY_NAME[name]
    choices = ("true", "false") if option.kind == "bool" else option.choices
    return ", ".join(f"`{choice}`" for choice in choices if refusal.accepts(choice))


def options_help() -> list[str]:
    """The lines of ``--help`` that describe the options: every option with its environment
    variable and default, by section, then the refused AnyCable options."""
    out: list[str] = []
    for section, options in _sections().items():
        out += ["", f"{section}:"]
        for option in options:
            details = [f"env: {_env_text(option)}; default: {option.default}"]
            if len(details[0]) > HELP_WIDTH - FLAG_COLUMN:  # keep "default: X" on one line
                details = [f"env: {_env_text(option)}", f"default: {option.default}"]
            out += help_entry(_flag_usage(option), [option.help, *details])
    out += ["", "Recognised AnyCable options that Cableway refuses (exit status 2):"]
    for name, refusal in REFUSED.items():
        env = _env_text(ALL_BY_NAME[name])
        accepted = accepted_values(name).replace("`", "")
        out += help_entry(f"--{name}", [refusal.reason, f"env: {env}; accepted values: {accepted}"])
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def file_key(option: Option) -> str | None:
    """How a configuration file sets ``option``: its AnyCable-Go 1.6 key (``[server] port``),
    else the flat key named like it (Cableway's own options); None when no file may."""
    if not option.in_file:
        return None
    return option.file_key if option.toml is None else anycable.label(option.toml)


def options_markdown() -> str:
    """The generated part of docs/configuration.md (kept in sync by a test)."""
    out: list[str] = []
    for section, options in _sections().items():
        out += [f"### {section}", "", "| Flag | Environment | File key | Default | Meaning |"]
        out.append("|---|---|---|---|---|")
        for option in options:
            env = ", ".join(f"`{name}`" for name in option.env) or "(none)"
            key = file_key(option)
            meaning = option.help
            if option.replaced_by is not None:
                meaning = f"**deprecated**: {meaning}"
            out.append(
                f"| `{option.flag}` | {env} | {'(none)' if key is None else f'`{key}`'} "
                f"| `{_cell(option.default)}` | {_cell(meaning)} |"
            )
        out.append("")
    out += [
        "### Recognised but not supported yet",
        "",
        "These AnyCable options are refused with an error (exit status 2) rather than ignored,",
        "unless they carry one of the accepted values.",
        "",
        "| Flag | Environment | Accepted values | Why |",
        "|---|---|---|---|",
    ]
    for name, refusal in REFUSED.items():
        env = ", ".join(f"`{variable}`" for variable in ALL_BY_NAME[name].env)
        out.append(f"| `--{name}` | {env} | {accepted_values(name)} | {_cell(refusal.reason)} |")
    return "\n".join(out) + "\n"
