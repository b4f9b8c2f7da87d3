# Invariant: verifying a signed stream name returns a str or raises InvalidSignature, nothing else.
"""Fuzz signed stream names (``cableway.auth.signed_streams``) and identifier resolution.

The first byte picks the mode; the rest is text (UTF-8, invalid bytes as lone
surrogates):

* ``0``: the text is a ``signed_stream_name``: verify -> ``str`` or ``InvalidSignature``;
* ``1``: the text is a stream name: sign then verify gives it back (when it has a
  UTF-8 form), and a wrong key never verifies;
* ``2``: the text is a signed name with a valid signature over the fuzzed Base64 part
  (``<text>--<hmac>``), so the fuzzer reaches the payload decoding behind the HMAC;
* ``3``: the text is a subscription identifier: ``resolve_subscription`` returns
  ``None`` or a ``Subscription`` with a non-empty stream, never raises.

Run: ``python fuzz/fuzz_signed_streams.py -runs=100000 -max_len=1024 fuzz/corpus/signed_streams/``
(needs ``pip install atheris``); ``tests/test_fuzz_corpus.py`` replays the corpus.
"""

from __future__ import annotations

import hashlib
import hmac

from cableway.auth.errors import InvalidSignature
from cableway.auth.signed_streams import sign_stream_name, verify_signed_stream_name
from cableway.protocol.channels import StreamPolicy, Subscription, resolve_subscription

KEY = "fuzz-streams-key"
POLICY = StreamPolicy(
    streams_secret=KEY,
    turbo_streams=True,
    turbo_secret=KEY,
    public_streams=True,
    streams_whisper=True,
)


def verify(signed: str, key: str = KEY) -> str | None:
    try:
        result: str | InvalidSignature = verify_signed_stream_name(signed, key)
    except InvalidSignature as exc:
        result = exc
    if isinstance(result, InvalidSignature):
        assert KEY not in str(result), "the secret in an error message"
        return None
    assert isinstance(result, str), type(result)
    result.encode("utf-8")  # never a lone surrogate
    return result


def test_one_input(data: bytes) -> None:
    mode, rest = (data[0] % 4, data[1:]) if data else (0, b"")
    text = rest.decode("utf-8", "surrogateescape")
    if mode == 0:
        verify(text)
    elif mode == 1:
        try:
            signed = sign_stream_name(text, KEY)
        except ValueError:
            return  # lone surrogates have no UTF-8 form: refused when signing
        if len(signed) <= 8192:
            assert verify(signed) == text, text
        assert verify(signed, "another-key") is None, "verified with the wrong key"
    elif mode == 2:
        if not text.isascii():
            verify(text)
            return
        digest = hmac.new(KEY.encode(), text.encode("ascii"), hashlib.sha256).hexdigest()
        verify(f"{text}--{digest}")
    else:
        found = resolve_subscription(text, POLICY)
        if found is not None:
            assert isinstance(found, Subscription), found
            assert isinstance(found.stream, str), found
            assert found.stream, found


if __name__ == "__main__":
    from atheris_main import fuzz

    fuzz(__file__, ["cableway"])
