"""cableway.channels as a WSGI app, mounted beside a Flask app (werkzeug's test client)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from cableway.channels import Application
from cableway.testing import capture_broadcasts

from .chat import IDENT, SPEC_HEADERS, make_app

ENV = {"url": "http://localhost:8080/cable?user=alice", "headers": {"REMOTE_ADDR": "127.0.0.1"}}
IDS = '{"user":"alice"}'


def flask_client(app: Application) -> Client:
    flask_app = Flask(__name__)

    @flask_app.get("/")
    def index() -> str:
        return "home"

    flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, {"/_anycable": app.wsgi()}
    )
    return flask_app.test_client()


@pytest.fixture
def events() -> list[Any]:
    return []


@pytest.fixture
def client(events: list[Any]) -> Client:
    return flask_client(make_app(events))


def post(client: Client, call: str, body: object, headers: Any = SPEC_HEADERS) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(f"/_anycable/{call}", data=data, headers=headers)


def test_connect_subscribe_act_disconnect(client: Client, events: list[Any]) -> None:
    connected = post(client, "connect", {"env": ENV})
    assert connected.status_code == 200
    assert connected.headers["Content-Type"] == "application/json"
    assert connected.json["identifiers"] == IDS
    subscribe = {
        "command": "subscribe",
        "identifier": IDENT,
        "connection_identifiers": IDS,
        "env": ENV,
    }
    assert post(client, "command", subscribe).json["streams"] == ["room:42"]
    speak = {
        **subscribe,
        "command": "message",
        "data": json.dumps({"action": "speak", "message": "hi"}),
    }
    with capture_broadcasts() as broadcasts:
        answer = post(client, "command", speak).json
        typing = post(client, "command", {**speak, "data": '{"action":"typing"}'}).json
    assert [json.loads(t) for t in answer["transmissions"]] == [
        {"identifier": IDENT, "message": {"echo": "hi"}}
    ]
    assert typing == {"status": 1}
    assert broadcasts.on("room:42") == [{"message": "hi", "from": "alice"}, {"typing": "alice"}]
    gone = post(client, "disconnect", {"identifiers": IDS, "subscriptions": [IDENT], "env": ENV})
    assert gone.json == {"status": 1}
    assert events[-1] == ("disconnect", {"user": "alice"})


def test_http_errors_through_wsgi(client: Client) -> None:
    assert post(client, "connect", {"env": ENV}, headers=[]).status_code == 401
    assert post(client, "connect", b"not json").status_code == 422
    assert post(client, "connect", b"").status_code == 422
    assert post(client, "ping", {}).status_code == 404
    response = client.get("/_anycable/connect", headers=SPEC_HEADERS)
    assert (response.status_code, response.headers["Allow"]) == (405, "POST")
    assert client.get("/").text == "home"


def test_app_errors_are_200_with_status_0(client: Client) -> None:
    crash = {
        "command": "message",
        "identifier": IDENT,
        "connection_identifiers": IDS,
        "data": '{"action":"crash"}',
        "env": ENV,
    }
    response = post(client, "command", crash)
    assert response.status_code == 200
    assert response.json == {
        "status": 0,
        "error_msg": "KeyError in ChatChannel.crash (see the application log)",
    }


def test_oversized_body_is_413(events: list[Any]) -> None:
    client = flask_client(make_app(events, max_body_size=50))
    assert post(client, "connect", {"env": {**ENV, "cstate": {"x": "y" * 100}}}).status_code == 413
    assert events == []
