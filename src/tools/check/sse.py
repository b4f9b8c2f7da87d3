"""The check of Server-Sent Events: a signed stream over ``GET --sse_path``."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from ...auth.signed_streams import sign_stream_name
from .client import (
    CheckFailed,
    Transcript,
)
from .harness import Harness
from .model import new_stream


async def sse(checker: Harness, transcript: Transcript) -> str:
    secret = checker.options.turbo_key
    assert secret is not None
    parts = urlsplit(checker.options.url)
    scheme = "https" if checker.secure else "http"
    fields = {"turbo_signed_stream_name": sign_stream_name(new_stream(), secret)}
    if checker.options.jwt_secret:  # browsers cannot set headers on an EventSource
        fields[checker.options.jwt_param] = checker.token()
    query = urlencode(fields)
    url = urlunsplit((scheme, parts.netloc, checker.options.sse_path, query, ""))
    headers = [("origin", checker.options.origin_header), ("accept", "text/event-stream")]
    wanted = {"welcome", "confirm_subscription"}
    status, response_headers, body = await checker.http_request(
        "GET",
        url,
        transcript,
        headers,
        until=lambda text: all(f"event: {name}" in text for name in wanted),
    )
    if status != 200:
        raise CheckFailed(f"GET {checker.options.sse_path} answered {status} (--sse_path?)")
    kind = response_headers.get("content-type", "")
    if not kind.startswith("text/event-stream"):
        raise CheckFailed(f"content-type {kind!r}, not text/event-stream")
    text = body.decode("utf-8", "replace")
    missing = [name for name in sorted(wanted) if f"event: {name}" not in text]
    if missing:
        raise CheckFailed(f"no {' / '.join(missing)} event")
    return f"GET {checker.options.sse_path}: 200 text/event-stream, welcome and confirm events"
