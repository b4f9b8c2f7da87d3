"""Which listener serves the REST API, and the stream named by a presence query's path."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cableway.config import Config
from cableway.transport.api_endpoint import api_role, presence_stream


@given(st.text())
def test_any_path_gives_a_stream_or_none_and_never_raises(path: str) -> None:
    stream = presence_stream(path)
    assert stream is None or isinstance(stream, str)


@given(st.text(min_size=1))
def test_a_percent_encoded_stream_name_comes_back_whole(stream: str) -> None:
    try:
        encoded = quote(stream, safe="")
    except UnicodeEncodeError:  # lone surrogates have no UTF-8 form: no such request
        return
    assert presence_stream(f"/api/presence/{encoded}/users") == stream


@pytest.mark.parametrize(
    ("path", "stream"),
    [
        ("/api/presence/chat/users", "chat"),
        ("/api/presence/chat%2F1/users", "chat/1"),
        ("/api/presence/caf%C3%A9/users", "café"),
        ("/api/presence/chat/1/users", None),
        ("/api/presence//users", None),
        ("/api/presence/chat/users/", None),
        ("/api/presence/%ff/users", None),
    ],
)
def test_presence_paths(path: str, stream: str | None) -> None:
    assert presence_stream(path) == stream


@pytest.mark.parametrize(
    ("changes", "role"),
    [
        ({}, None),
        ({"api_secret": "k"}, "main"),
        ({"public": True}, "main"),
        ({"api_secret": "k", "api_port": 8080}, "main"),
        ({"api_port": 9000}, "api"),
        ({"api_port": 8090, "broadcast_key": None, "http_broadcast_port": 8090}, "broadcast"),
        ({"api_port": 9102, "metrics_http": "/metrics", "metrics_port": 9102}, "metrics"),
        ({"api_port": 9102, "metrics_port": 9102}, "api"),  # no metrics endpoint there
    ],
)
def test_the_listener_that_serves_the_api(changes: dict[str, object], role: str | None) -> None:
    assert api_role(Config(**changes)) == role  # type: ignore[arg-type]
