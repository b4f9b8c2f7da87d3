"""Turbo Stream builders: exact HTML, escaping of attributes, template rules."""

from __future__ import annotations

import doctest
from collections.abc import Callable

import pytest

import cableway.toolkit.turbo_stream
from cableway.toolkit import turbo_stream as ts

TEMPLATED: list[tuple[str, Callable[..., str]]] = [
    ("append", ts.append),
    ("prepend", ts.prepend),
    ("replace", ts.replace),
    ("update", ts.update),
    ("before", ts.before),
    ("after", ts.after),
]


@pytest.mark.parametrize(("action", "builder"), TEMPLATED)
def test_templated_actions(action: str, builder: Callable[..., str]) -> None:
    assert builder("messages", "<p>Hi</p>") == (
        f'<turbo-stream action="{action}" target="messages">'
        "<template><p>Hi</p></template></turbo-stream>"
    )
    assert builder(targets=".card > p", html="<b>x</b>") == (
        f'<turbo-stream action="{action}" targets=".card &gt; p">'
        "<template><b>x</b></template></turbo-stream>"
    )


@pytest.mark.parametrize(("action", "builder"), TEMPLATED)
def test_templated_actions_need_a_target(action: str, builder: Callable[..., str]) -> None:
    with pytest.raises(ValueError, match=f"{action} needs a target"):
        builder(html="<p>x</p>")


def test_remove_has_no_template() -> None:
    assert (
        ts.remove("message_5") == '<turbo-stream action="remove" target="message_5"></turbo-stream>'
    )
    assert ts.remove(targets=".done") == (
        '<turbo-stream action="remove" targets=".done"></turbo-stream>'
    )
    with pytest.raises(ValueError, match="remove needs a target"):
        ts.remove()


def test_refresh() -> None:
    assert ts.refresh() == '<turbo-stream action="refresh"></turbo-stream>'
    assert ts.refresh("a1-b2") == (
        '<turbo-stream action="refresh" request-id="a1-b2"></turbo-stream>'
    )
    assert ts.refresh(request_id='x"><script>') == (
        '<turbo-stream action="refresh" request-id="x&quot;&gt;&lt;script&gt;"></turbo-stream>'
    )


def test_empty_template_is_kept() -> None:
    assert ts.update("counter") == (
        '<turbo-stream action="update" target="counter"><template></template></turbo-stream>'
    )


def test_attribute_values_are_escaped() -> None:
    target = "a\"b'c<d>&e"
    assert ts.replace(target, "<i>ok</i>") == (
        '<turbo-stream action="replace" target="a&quot;b&#x27;c&lt;d&gt;&amp;e">'
        "<template><i>ok</i></template></turbo-stream>"
    )


def test_html_is_inserted_as_is_and_escape_is_offered() -> None:
    user_text = "<script>alert(1)</script>"
    raw = ts.append("messages", f"<p>{user_text}</p>")
    assert "<p><script>alert(1)</script></p>" in raw
    safe = ts.append("messages", f"<p>{ts.escape(user_text)}</p>")
    assert "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>" in safe
    assert ts.escape("\"'&") == "&quot;&#x27;&amp;"


def test_extra_attributes() -> None:
    assert ts.replace("card", "<div>x</div>", method="morph") == (
        '<turbo-stream action="replace" target="card" method="morph">'
        "<template><div>x</div></template></turbo-stream>"
    )
    assert ts.update("c", "", children_only=True, skipped=False, also=None, n=3) == (
        '<turbo-stream action="update" target="c" children-only n="3">'
        "<template></template></turbo-stream>"
    )


def test_generic_builder_and_custom_actions() -> None:
    assert ts.turbo_stream("log", html="<p>x</p>", level="info") == (
        '<turbo-stream action="log" level="info"><template><p>x</p></template></turbo-stream>'
    )
    assert ts.turbo_stream("append", "m", html="y") == ts.append("m", "y")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ts.turbo_stream(""), "action"),
        (lambda: ts.turbo_stream("append", "a", ".b"), "not both"),
        (lambda: ts.append("a", "x", **{"bad name": "1"}), "attribute name"),
        (lambda: ts.append("a", "x", **{"on>x": "1"}), "attribute name"),
        (lambda: ts.refresh(**{"target": "x"}), "own argument"),
        (lambda: ts.refresh(**{"action": "x"}), "own argument"),
    ],
)
def test_invalid_calls(call: Callable[[], str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_html_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="html"):
        ts.append("a", b"<p>")  # type: ignore[arg-type]


def test_module_doctests() -> None:
    failures, tried = doctest.testmod(cableway.toolkit.turbo_stream)
    assert tried > 0
    assert failures == 0
