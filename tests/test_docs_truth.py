"""The README and the configuration guide say of each option what the code does with it.

Every sentence that calls something refused (or not built) names only options and values
that :func:`cableway.config.load_config` refuses; every option value the README's Status
calls built loads.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cableway.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docs" / "configuration.md"]
#: options whose values the docs name bare (`redis`, `nats`)
VALUE_OPTIONS = ("broker", "broadcast_adapter", "pubsub")
REFUSING = re.compile(r"\b(refused|not built)\b", re.IGNORECASE)


def _sentences(text: str) -> list[str]:
    """Sentences (and clauses after ';'), whitespace-normalised, code left out."""
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    # tables are left out: the generated option tables are checked against the code elsewhere
    text = "\n".join("" if line.lstrip().startswith("|") else line for line in text.splitlines())
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        flat = " ".join(paragraph.split())
        out += re.split(r"(?<=[.;])\s+", flat)
    return out


def _refused(*argv: str) -> bool:
    try:
        load_config(list(argv), {})
    except ConfigError:
        return True
    return False


def _refusal_claims() -> list[tuple[str, str, list[str]]]:
    """(file, sentence, the command lines it says are refused)."""
    claims = []
    for path in DOCS:
        for sentence in _sentences(path.read_text(encoding="utf-8")):
            if not REFUSING.search(sentence):
                continue
            argvs: list[list[str]] = []
            for token in re.findall(r"`(--[a-z_]+(?:=[^`\s]+)?)`", sentence):
                # a bare option is refused whatever its value: "1" is a valid int, float,
                # bool and string, so only a refusal can refuse it
                argvs.append([token if "=" in token else f"{token}=1"])
            for word in re.findall(r"`([a-z]+)`", sentence):
                if word in ("memory", "redis", "redisx", "http", "nats", "none"):
                    # refused means: refused wherever such a value goes
                    argvs.append([f"--{option}={word}" for option in VALUE_OPTIONS])
            for argv in argvs:
                claims.append((path.name, sentence, argv))
    return claims


def _is_refused_somewhere(argv: list[str]) -> bool:
    if len(argv) == 1:
        return _refused(argv[0])
    # a bare value: refused by every option that could take it (and accepted by none)
    return all(_refused(arg) for arg in argv)


@pytest.mark.parametrize(
    ("name", "sentence", "argv"),
    [pytest.param(*claim, id=f"{claim[0]}:{' '.join(claim[2])}") for claim in _refusal_claims()],
)
def test_what_the_docs_call_refused_is_refused(name: str, sentence: str, argv: list[str]) -> None:
    assert _is_refused_somewhere(argv), f"{name} calls {argv} refused: {sentence!r}"


def test_the_docs_make_refusal_claims_at_all() -> None:
    """The extraction above finds something (a reworded doc must not silence the test)."""
    names = {name for name, _, _ in _refusal_claims()}
    assert {"README.md", "configuration.md"} <= names


def _status() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme[readme.index("## Status") :]


def test_readme_status_calls_built_only_what_loads() -> None:
    status = _status()
    built = status[status.index("Built:") : status.index("Not built")]
    tokens = re.findall(r"`(--[a-z_]+=[^`\s]+)`", built)
    assert tokens  # --broker=redis at least
    for token in tokens:
        assert not _refused(token), token


def test_readme_status_points_at_nothing_a_user_cannot_see() -> None:
    assert "open issues" not in _status()
