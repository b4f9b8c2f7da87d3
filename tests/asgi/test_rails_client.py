"""The real ``@rails/actioncable`` consumer (tests/interop/rails_client.mjs) against
:class:`cableway.asgi.CablewayApp` under uvicorn.

Same client expectations as tests/interop/test_rails_actioncable.py: the v1 subprotocol, the
identifier echoed byte for byte, Turbo broadcasts delivered to ``received`` as the HTML string.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from cableway.asgi import CablewayApp
from cableway.auth.jwt import encode_token
from cableway.auth.signed_streams import sign_stream_name
from cableway.config import Config

from .host import UvicornHost, hosted

if TYPE_CHECKING:
    from ..interop.conftest import NodeClient

pytestmark = pytest.mark.interop

JWT = "asgi-jwt-secret-of-at-least-thirty-two-bytes"
TURBO = "asgi-turbo-secret"
KEY = "asgi-broadcast-key"
STREAM = "Z2lkOi8vY2FibGV3YXkvUm9vbS8x:messages"
HTML = '<turbo-stream action="append" target="messages"><template>Hi</template></turbo-stream>'


@pytest.fixture
def asgi() -> Iterator[tuple[CablewayApp, UvicornHost]]:
    cfg = Config(
        host="127.0.0.1",
        port=0,
        jwt_secret=JWT,
        turbo_streams=True,
        turbo_streams_secret=TURBO,
        broadcast_key=KEY,
    )
    app = CablewayApp(cfg)
    with hosted(app) as host:
        yield app, host


def turbo_params(stream: str, secret: str = TURBO) -> dict[str, Any]:
    return {
        "channel": "Turbo::StreamsChannel",
        "signed_stream_name": sign_stream_name(stream, secret),
    }


def http_broadcast(port: int, payload: object) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/_broadcast",
        data=json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


def test_rails_consumer_subscribes_receives_turbo_html_and_is_rejected_when_forged(
    asgi: tuple[CablewayApp, UvicornHost], rails_client: Callable[..., NodeClient]
) -> None:
    app, host = asgi
    token = encode_token({"user_id": 42}, JWT, exp=int(time.time()) + 300)
    params = turbo_params(STREAM)
    forged = turbo_params(STREAM, secret="not-the-secret")
    client = rails_client(
        url=f"ws://127.0.0.1:{host.port}/cable?jid={token}",
        subscriptions=[{"name": "turbo", "params": params}, {"name": "forged", "params": forged}],
    )
    assert client.wait_for("connected", name="turbo")["reconnected"] is False
    assert client.wait_for("socket_open")["protocol"] == "actioncable-v1-json"
    client.wait_for("rejected", name="forged")
    frames = [ev["data"] for ev in client.find("frame")]
    assert frames[0]["type"] == "welcome"
    confirmations = [f for f in frames if f.get("type") == "confirm_subscription"]
    assert [c["identifier"] for c in confirmations] == [json.dumps(params, separators=(",", ":"))]

    assert http_broadcast(host.port, {"stream": STREAM, "data": json.dumps(HTML)}) == 201
    assert client.wait_for("received", name="turbo")["message"] == HTML
    host.call(lambda: app.broadcast(STREAM, json.dumps("<p>in-process</p>")))
    client.wait_count("received", 2, name="turbo")
    assert [ev["message"] for ev in client.find("received")] == [HTML, "<p>in-process</p>"]

    assert client.disconnect() == 0
    assert client.wait_for("idle_exit")["sockets"] == 1


def test_rails_consumer_with_an_expired_token_stops_for_good(
    asgi: tuple[CablewayApp, UvicornHost], rails_client: Callable[..., NodeClient]
) -> None:
    _app, host = asgi
    token = encode_token({"user_id": 42}, JWT, exp=1_000_000)
    client = rails_client(
        url=f"ws://127.0.0.1:{host.port}/cable?jid={token}",
        subscriptions=[{"name": "turbo", "params": turbo_params(STREAM)}],
        control="none",
    )
    disconnect = client.wait_frame(lambda data: (data or {}).get("type") == "disconnect")
    assert disconnect["data"] == {
        "type": "disconnect",
        "reason": "token_expired",
        "reconnect": False,
    }
    closed = client.wait_for("socket_close")
    assert closed["code"] == 1000
    assert closed["monitor_running"] is False  # reconnect: false -> the consumer gives up
    assert client.wait_exit() == 0
