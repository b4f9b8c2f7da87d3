"""Fuzz the endpoint path matcher (:mod:`cableway.protocol.routes`), on every HTTP request.

Invariant: ``parse_path_pattern`` returns a pattern or raises ``ValueError``; a pattern's
``matches`` returns a bool for any path; a literal pattern matches exactly its own text; a
pattern ending in ``*`` with no placeholder matches exactly the paths that start with the
text before the ``*``; a one-route :class:`Router` routes exactly the paths its pattern
matches. Nothing else may escape.

The input bytes (invalid UTF-8 as lone surrogates) before the first ``0xFE`` are the pattern,
the rest the request path.

Run: ``python fuzz/fuzz_routes.py -runs=200000 fuzz/corpus/routes/`` (needs
``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

from cableway.protocol.routes import Router, parse_path_pattern


def test_one_input(raw: bytes) -> None:
    text, _, rest = raw.partition(b"\xfe")
    source = text.decode("utf-8", "surrogateescape")
    path = rest.decode("utf-8", "surrogateescape")
    try:
        pattern = parse_path_pattern(source)
    except ValueError:
        return
    matched = pattern.matches(path)
    assert isinstance(matched, bool)
    assert pattern.matches(source) or not pattern.literal
    if pattern.literal:
        assert matched == (path == source)
    elif "{" not in source:
        assert matched == path.startswith(source[:-1])
    assert (Router([(source, "here")]).lookup(path) == "here") == matched


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway"])
