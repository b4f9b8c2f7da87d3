"""The node's fan-out rules (cableway.node.fanout) without sockets: fake sessions."""

from __future__ import annotations

from typing import Any, ClassVar

from cableway.node.fanout import encode_run, fan_out, without
from cableway.node.held import HeldMessages


class Core:
    def __init__(self, held: set[str] | None = None) -> None:
        self.held = held or set()


class Sub:
    """A session of one kind (``upper``: its wire item is the text in capitals)."""

    encoded: ClassVar[list[str]] = []

    def __init__(self, sid: str, kind: str, held: set[str] | None = None) -> None:
        self.sid = sid
        self.wire_kind = kind
        self.core = Core(held)
        self.held: HeldMessages[str] = HeldMessages(0)
        self.pushed: list[str] = []

    def encode(self, text: str) -> str | None:
        Sub.encoded.append(f"{self.wire_kind}:{text}")
        if text == "skip":
            return None
        return text.upper() if self.wire_kind == "upper" else text

    def push_frame(self, frame: str) -> None:
        self.pushed.append(frame)

    def hold(self, identifier: str, offset: int | None, frame: str) -> None:
        self.held.hold(identifier, offset, frame, len(frame))


def run(sessions: list[Sub], texts: list[str], excludes: list[str | None] | None) -> int:
    Sub.encoded = []
    offsets: list[int | None] = list(range(1, len(texts) + 1))
    sessions_any: list[Any] = sessions
    delivered, written = fan_out(sessions_any, "id", texts, offsets, excludes)
    assert written == 0
    return delivered


def test_wire_items_are_built_once_per_kind_and_shared() -> None:
    a, b, c = Sub("a", "plain"), Sub("b", "upper"), Sub("c", "plain")
    assert run([a, b, c], ["x", "skip", "y"], None) == 6
    assert sorted(Sub.encoded) == sorted(
        ["plain:x", "plain:skip", "plain:y", "upper:x", "upper:skip", "upper:y"]
    )
    assert (a.pushed, b.pushed, c.pushed) == (["x", "y"], ["X", "Y"], ["x", "y"])
    assert a.pushed[0] is c.pushed[0]  # the same object, not a copy per subscriber


def test_the_publisher_excluded_gets_the_others_only() -> None:
    a, b = Sub("a", "plain"), Sub("b", "plain")
    assert run([a, b], ["one", "skip", "two", "three"], [None, None, "a", "b"]) == 4
    assert a.pushed == ["one", "three"]
    assert b.pushed == ["one", "two"]


def test_a_subscription_waiting_for_its_history_holds_with_offsets() -> None:
    waiting, live = Sub("w", "plain", held={"id"}), Sub("l", "plain")
    assert run([waiting, live], ["m1", "m2"], None) == 4
    assert waiting.pushed == []
    assert waiting.held.release("id", after=1) == ["m2"]  # newer than the history only
    assert live.pushed == ["m1", "m2"]


def test_encode_run_keeps_each_items_exclude_and_without_filters_on_it() -> None:
    frames, kept = encode_run(
        lambda t: None if t == "skip" else t, ["a", "skip", "b"], [7, 8, 9], ["s1", None, "s2"]
    )
    assert frames == [(7, "a"), (9, "b")]
    assert kept == ["s1", "s2"]
    assert without(frames, kept, "s1") == [(9, "b")]
