"""docs/configuration.md against the option declarations (cableway.config.options).

The option reference in the docs is generated (tests/test_cli.py checks it is up to date with
the renderer); these tests read the docs themselves and compare every row with the
declaration it documents, and check that each documented default is what the server really
uses and each documented file key is one the server really reads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest

from cableway.config import OPTIONS, Config, load_config
from cableway.config.anycable import SETS, label
from cableway.config.option import Option

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
BEGIN = "<!-- BEGIN GENERATED OPTIONS -->\n"
END = "<!-- END GENERATED OPTIONS -->\n"
ROW = re.compile(
    r"\| `--(?P<name>[^`]+)` \| (?P<env>[^|]*) \| (?P<key>[^|]*) "
    r"\| `(?P<default>(?:[^`\\]|\\.)*)` \| (?P<meaning>(?:[^|\\]|\\.)*) \|"
)


class Row(NamedTuple):
    section: str
    env: str
    key: str
    default: str
    meaning: str


def _unescape(cell: str) -> str:
    return cell.replace("\\|", "|")


def documented() -> dict[str, Row]:
    """The rows of the accepted-option tables of the option reference, by option name."""
    text = DOC.read_text(encoding="utf-8").split(BEGIN, 1)[1].split(END, 1)[0]
    rows: dict[str, Row] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("### "):
            section = line.removeprefix("### ")
        match = ROW.fullmatch(line)
        if match is not None:
            rows[match["name"]] = Row(
                section,
                match["env"],
                match["key"],
                _unescape(match["default"]),
                _unescape(match["meaning"]),
            )
    return rows


def _name(option: Option) -> str:
    return option.name


def test_the_docs_list_exactly_the_declared_options_in_their_order() -> None:
    assert list(documented()) == [option.name for option in OPTIONS]


@pytest.mark.parametrize("option", OPTIONS, ids=_name)
def test_each_docs_row_says_what_the_declaration_says(option: Option) -> None:
    row = documented()[option.name]
    assert row.section == option.section
    assert row.env == (", ".join(f"`{variable}`" for variable in option.env) or "(none)")
    if not option.in_file:
        assert row.key == "(none)"
    elif option.toml is not None:
        assert row.key == f"`{label(option.toml)}`"
    else:
        assert row.key == f"`{option.file_key}`"
    assert row.default == option.default
    deprecated = "**deprecated**: " if option.replaced_by is not None else ""
    assert row.meaning == deprecated + option.help


def _literal(default: str) -> str | None:
    """The value a documented default names, or None when it names none (unset, derived)."""
    value = default.split(" (", 1)[0]
    if value in ("unset", "auto") or value.startswith("-") or " " in value:
        return None
    return value


LITERAL = [option for option in OPTIONS if _literal(option.default) is not None]


def test_most_options_document_a_literal_default() -> None:
    # the test below must not pass by skipping everything
    assert len(LITERAL) > 50


@pytest.mark.parametrize("option", LITERAL, ids=_name)
def test_the_documented_default_given_explicitly_changes_nothing(option: Option) -> None:
    value = _literal(documented()[option.name].default)
    assert value is not None
    assert load_config([f"--{option.name}={value}"], {}) == load_config([], {}) == Config()


@pytest.mark.parametrize("option", LITERAL, ids=_name)
def test_the_documented_file_key_sets_the_option(option: Option) -> None:
    """The file key in the docs is read as that option: the documented default written under
    it changes nothing, and a wrong value under it is reported as that key."""
    row = documented()[option.name]
    value = _literal(row.default)
    assert value is not None
    if row.key == "(none)":
        return
    if option.toml_convert is not None and option.toml_convert(value) != value:
        return  # the key takes other values than the flag ([rpc] implementation = "none")
    key = row.key.strip("`")
    match = re.fullmatch(r"\[(?P<section>[a-z_]+)\] (?P<key>.+)", key)
    values: dict[str, object] = {key: value}
    if match is not None:
        values = {match["section"]: {match["key"]: value}}
    assert load_config([], {}, file_values=values) == Config()


# --- the summary of AnyCable-Go keys in "Configuration file" ---------------------------------

KEY_TABLE = re.compile(r"\| (?P<keys>(?:`\[[a-z_.]+\]` )?`[^|]+?) \| [^|]+ \|")


def _documented_anycable_keys() -> set[tuple[str, ...]]:
    text = DOC.read_text(encoding="utf-8")
    table = text.split("| Key | Option |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    paths: set[tuple[str, ...]] = set()
    for line in table.splitlines():
        match = KEY_TABLE.fullmatch(line)
        assert match is not None, line
        names = re.findall(r"`([^`]+)`", match["keys"])
        section: tuple[str, ...] = ()
        if names[0].startswith("["):
            section = tuple(names.pop(0).strip("[]").split("."))
        paths.update((*section, *name.split(".")) for name in names)
    return paths


def test_the_anycable_key_summary_names_exactly_the_keys_cableway_reads() -> None:
    assert _documented_anycable_keys() == set(SETS)
