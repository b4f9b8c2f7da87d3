"""The option table: one :class:`~cableway.config.option.Option` per setting.

Everything the user can set is declared once: :data:`OPTIONS` (accepted options, declared in
:mod:`.options_serving` and :mod:`.options_running`) and :data:`REFUSED` (AnyCable options
Cableway recognises but cannot honour yet). The readers
(:mod:`.sources`), the rules (:mod:`.resolve`), the :class:`~cableway.config.Config` defaults
(:mod:`.model`), ``--help``, ``--print-config`` and the docs table (:mod:`.render`) are all
derived from these declarations.
"""

from __future__ import annotations

from .option import Option, Refusal, declare
from .options_api import API
from .options_rpc import RPC
from .options_running import RUNNING
from .options_serving import OPEN_BROADCAST_PORT, SERVING
from .parse import split_list

__all__ = [
    "ALL_BY_NAME",
    "BROKER_SETTINGS",
    "BY_FIELD",
    "BY_NAME",
    "NOT_YET",
    "OPEN_BROADCAST_PORT",
    "OPTIONS",
    "REFUSED",
    "aliases",
    "all_options",
    "refused_options",
]

OPTIONS: tuple[Option, ...] = SERVING + RUNNING + RPC + API


def _never(_value: str) -> bool:
    return False


def _no_unbuilt_adapter(value: str) -> bool:
    return "nats" not in {item.lower() for item in split_list(value)}


def _no_nats(value: str) -> bool:
    return value.strip().lower() != "nats"


def _no_unbuilt_broker(value: str) -> bool:
    return value.strip().lower() != "nats"


def _only_built_presets(value: str) -> bool:
    return set(split_list(value.lower())) <= set(BY_NAME["presets"].choices)


NOT_YET = "not supported yet by Cableway"

# Options Cableway recognises but refuses (with a ConfigError naming them) instead of silently
# ignoring. When a feature lands, delete its row here and describe the option in OPTIONS.
REFUSED: dict[str, Refusal] = {
    "broadcast_adapter": Refusal(
        "list",
        f"the nats broadcast adapter is {NOT_YET}; use http, redis or redisx",
        _no_unbuilt_adapter,
    ),
    "broker": Refusal(
        "str",
        f"the nats broker is {NOT_YET}; use --broker=memory (history in this "
        "process), redis (history shared by nodes) or none",
        _no_unbuilt_broker,
    ),
    "pubsub": Refusal(
        "str",
        f"NATS pub/sub is {NOT_YET}; use --pubsub=redis or none",
        _no_nats,
    ),
    "presets": Refusal(
        "list",
        f"presets other than broker and none (fly, heroku) are {NOT_YET}",
        _only_built_presets,
    ),
}


# -- indexes derived from the tables ---------------------------------------------------------

BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def refused_options() -> tuple[Option, ...]:
    """Options that exist only in :data:`REFUSED`, described like accepted ones."""
    return tuple(
        declare(
            name,
            refusal.kind,
            None,
            refusal.reason,
            "Not supported yet",
            field=None,
            shown="unset",
        )
        for name, refusal in REFUSED.items()
        if name not in BY_NAME
    )


def all_options() -> tuple[Option, ...]:
    """Every flag the parser knows: accepted options, then refused-only ones."""
    return OPTIONS + refused_options()


ALL_BY_NAME: dict[str, Option] = {option.name: option for option in all_options()}

#: The option that fills each Config field.
BY_FIELD: dict[str, Option] = {option.field: option for option in OPTIONS if option.field}


#: The settings of the [broker] section that only matter with a broker (not --broker=none).
BROKER_SETTINGS: tuple[str, ...] = tuple(
    option.name
    for option in OPTIONS
    if option.toml is not None and option.toml[0] == "broker" and option.name != "broker"
)


def aliases(name: str) -> tuple[str, ...]:
    """``name`` and its deprecated old names, in the order a tie between them is decided."""
    return (name, *(option.name for option in OPTIONS if option.replaced_by == name))
