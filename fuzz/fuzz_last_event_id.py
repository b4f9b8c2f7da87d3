# Invariant: parse_last_event_id returns a valid (offset, epoch, stream)/None or raises ValueError.
"""Fuzz the ``Last-Event-ID`` and ``history_since`` parsers (security O9).

Invariant: ``parse_last_event_id`` returns ``None`` or ``(offset, epoch, stream)`` with
``offset >= 0`` spelled in ASCII digits and non-empty ``epoch``/``stream`` that are the
input's parts, or raises ``ValueError``; ``history_from_request`` returns a dict or
``None`` or raises ``ValueError``. Nothing else may escape.

The input bytes (invalid UTF-8 as lone surrogates) are the header value; the part before
the first ``0xFE`` is also tried as ``?history_since=``. Any other exception is a bug.

Run: ``python fuzz/fuzz_last_event_id.py -runs=50000 fuzz/corpus/last_event_id/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import contextlib
import sys

from cableway.protocol.sse import MAX_LAST_EVENT_ID, history_from_request, parse_last_event_id


def test_one_input(raw: bytes) -> None:
    value = raw.decode("utf-8", "surrogateescape")
    try:
        position = parse_last_event_id(value)
    except ValueError:
        position = None
    else:
        if position is not None:
            offset, epoch, stream = position
            assert len(value) <= MAX_LAST_EVENT_ID
            assert offset >= 0
            assert epoch
            assert stream
            head, epoch_part, stream_part = value.split("/", 2)
            assert int(head) == offset
            assert head.isascii()
            assert head.isdigit()
            assert (epoch_part, stream_part) == (epoch, stream)

    since = raw.split(b"\xfe", 1)[0].decode("utf-8", "surrogateescape")
    with contextlib.suppress(ValueError):
        history = history_from_request({"history_since": since}, value)
        assert history is None or isinstance(history, dict)
        if position is not None:
            assert history is not None
            offset, epoch, stream = position
            assert history["streams"] == {stream: {"epoch": epoch, "offset": offset}}


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
