"""examples/asgi_fastapi: FastAPI with Cableway mounted at /cable, under uvicorn, driven by the
real ``@rails/actioncable`` consumer and the app's own HTTP routes."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from html import unescape
from typing import TYPE_CHECKING

import pytest

from cableway.config import Config

from .host import hosted

if TYPE_CHECKING:
    from ..interop.conftest import NodeClient

pytestmark = pytest.mark.interop

SECRET = "example-turbo-secret"


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status), response.read().decode()


def post_json(url: str, payload: object) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


def test_fastapi_example_serves_the_page_and_cable_and_broadcasts_in_process(
    rails_client: Callable[..., NodeClient],
) -> None:
    pytest.importorskip("fastapi")
    from examples.asgi_fastapi.main import create_app

    config = Config(turbo_streams=True, turbo_streams_secret=SECRET, path=("/",))
    with hosted(create_app(config)) as host:
        base = f"http://127.0.0.1:{host.port}"
        status, page = get(f"{base}/rooms/7")
        assert status == 200
        found = re.search(r'signed-stream-name="([^"]+)"', page)
        assert found is not None
        params = {"channel": "Turbo::StreamsChannel", "signed_stream_name": unescape(found[1])}
        assert get(f"{base}/cable/health")[0] == 200

        client = rails_client(
            url=f"ws://127.0.0.1:{host.port}/cable/",
            subscriptions=[{"name": "room", "params": params}],
        )
        client.wait_for("connected", name="room")
        assert post_json(f"{base}/rooms/7/messages", {"text": "<hi> & bye"}) == 201
        received = client.wait_for("received", name="room")
        assert received["message"] == (
            '<turbo-stream action="append" target="messages"><template>'
            "<p>&lt;hi&gt; &amp; bye</p></template></turbo-stream>"
        )
        assert client.disconnect() == 0
        assert client.wait_for("idle_exit")["sockets"] == 1
        # the message is on the page for the next visitor
        assert "&lt;hi&gt; &amp; bye" in get(f"{base}/rooms/7")[1]
