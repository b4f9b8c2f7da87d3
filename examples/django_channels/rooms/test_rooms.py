"""The example's own tests: no server, no browser.

The channels are called as Cableway or AnyCable-Go call them, through the application's
sans-IO ``handle()`` with the JSON those servers send, and with the session cookie of a
real login through Django's login view. ``cableway_broadcasts`` (Cableway's pytest plugin)
captures what the channel broadcasts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.sessions.models import Session
from django.test import Client

from cableway.rpc import derive_rpc_key
from cableway.testing import BroadcastCapture

from .cable import cable
from .models import Message

PASSWORD = "correct horse battery staple"
LOBBY = json.dumps({"channel": "RoomChannel", "room": "lobby"})


def user(username: str) -> AbstractBaseUser:
    User = get_user_model()
    found: AbstractBaseUser | None = User.objects.filter(username=username).first()
    return found or User.objects.create_user(username, password=PASSWORD)


def log_in(client: Client, username: str) -> str:
    """Logs in through the login view; the ``sessionid`` cookie the browser now has."""
    user(username)
    response = client.post("/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def invoke(function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Runs a callback as the ASGI app does for a plain ``def``: off the event loop (here on
    the test's thread, which holds the in-memory database)."""
    return await sync_to_async(function)(*args)


def rpc(call: str, body: dict[str, Any], *, key: str | None = None) -> tuple[int, Any]:
    """POST /_anycable/<call> with the server's ``Authorization``; (HTTP status, JSON)."""
    key = derive_rpc_key(settings.CABLEWAY["secret"]) if key is None else key
    headers = [("authorization", f"Bearer {key}"), ("x-anycable-meta-sid", "sid-1")]
    response = async_to_sync(cable.handle)(
        "POST", f"/_anycable/{call}", headers, json.dumps(body).encode(), invoke
    )
    if response.status != 200:
        return response.status, response.body.decode()
    return response.status, json.loads(response.body)


def env(cookie: str | None) -> dict[str, Any]:
    """``env`` as the server sends it: the handshake's cookie header (``--headers``
    default) and the peer address."""
    headers = {"REMOTE_ADDR": "127.0.0.1"}
    if cookie is not None:
        headers["cookie"] = cookie
    return {"url": "http://localhost:8080/cable", "headers": headers}


def connect(cookie: str | None) -> dict[str, Any]:
    status, answer = rpc("connect", {"env": env(cookie)})
    assert status == 200
    result: dict[str, Any] = answer
    return result


def command(session: str, connected: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {
        "identifier": LOBBY,
        "connection_identifiers": connected["identifiers"],
        **fields,
        "env": {**env(f"sessionid={session}"), "cstate": connected["env"]["cstate"]},
    }
    status, answer = rpc("command", body)
    assert status == 200
    result: dict[str, Any] = answer
    return result


def test_the_session_cookie_of_a_login_identifies_the_user() -> None:
    session = log_in(Client(), "alice")

    answer = connect(f"csrftoken=x; sessionid={session}")

    assert answer["status"] == 1
    assert json.loads(answer["identifiers"]) == {"user_id": user("alice").pk}
    assert answer["env"]["cstate"] == {"username": "alice"}
    assert json.loads(answer["transmissions"][0]) == {"type": "welcome", "sid": "sid-1"}


@pytest.mark.parametrize("cookie", [None, "", "sessionid=not-a-session", "csrftoken=abc"])
def test_a_visitor_without_a_session_is_rejected(cookie: str | None) -> None:
    answer = connect(cookie)

    assert answer["status"] == 2
    assert "identifiers" not in answer
    assert [json.loads(text) for text in answer["transmissions"]] == [
        {"type": "disconnect", "reason": "unauthorized", "reconnect": False}
    ]


def test_logging_out_ends_the_cookie_and_connecting_never_changes_the_session() -> None:
    client = Client()
    session = log_in(client, "alice")
    assert connect(f"sessionid={session}")["status"] == 1
    assert client.get("/rooms/lobby/").status_code == 200  # still logged in

    client.post("/logout/")

    assert connect(f"sessionid={session}")["status"] == 2


def test_a_changed_password_rejects_the_old_session_without_logging_it_out() -> None:
    client = Client()
    session = log_in(client, "carol")
    carol = user("carol")
    carol.set_password("something new")
    carol.save()

    assert connect(f"sessionid={session}")["status"] == 2
    # the session is still there for Django to end on the next page (connect changed nothing)
    assert Session.objects.filter(session_key=session).exists()


def test_a_known_room_streams_its_messages_and_typing_an_unknown_one_is_rejected() -> None:
    session = log_in(Client(), "alice")
    connected = connect(f"sessionid={session}")

    answer = command(session, connected, command="subscribe")
    assert answer["status"] == 1
    assert answer["streams"] == ["room:lobby", "room:lobby:typing"]
    assert json.loads(answer["transmissions"][0]) == {
        "identifier": LOBBY,
        "type": "confirm_subscription",
    }

    nowhere = json.dumps({"channel": "RoomChannel", "room": "nowhere"})
    rejected = command(session, connected, command="subscribe", identifier=nowhere)
    assert rejected["status"] == 2
    assert "streams" not in rejected
    assert [json.loads(text) for text in rejected["transmissions"]] == [
        {"identifier": nowhere, "type": "reject_subscription"}
    ]


def test_speak_saves_the_message_and_broadcasts_it_to_the_room(
    cableway_broadcasts: BroadcastCapture,
) -> None:
    session = log_in(Client(), "alice")
    connected = connect(f"sessionid={session}")
    data = json.dumps({"action": "speak", "text": " <b>hi</b> & bye "})

    answer = command(session, connected, command="message", data=data)

    assert answer["status"] == 1
    message = Message.objects.get(text="<b>hi</b> & bye")
    assert message.author == user("alice")
    assert message.room.slug == "lobby"
    cableway_broadcasts.assert_broadcasts("room:lobby", 1)
    assert cableway_broadcasts.on("room:lobby") == [
        {
            "type": "message",
            "id": message.pk,
            "user": "alice",
            "html": f'<p id="message_{message.pk}"><b>alice</b>: '
            "&lt;b&gt;hi&lt;/b&gt; &amp; bye</p>\n",
        }
    ]


def test_typing_is_broadcast_to_the_rooms_typing_stream(
    cableway_broadcasts: BroadcastCapture,
) -> None:
    session = log_in(Client(), "bob")
    connected = connect(f"sessionid={session}")

    answer = command(session, connected, command="message", data='{"action":"typing"}')

    assert answer["status"] == 1
    assert cableway_broadcasts.on("room:lobby:typing") == [{"type": "typing", "user": "bob"}]
    cableway_broadcasts.assert_no_broadcasts("room:lobby")


def test_an_empty_message_is_neither_saved_nor_broadcast(
    cableway_broadcasts: BroadcastCapture,
) -> None:
    session = log_in(Client(), "alice")
    connected = connect(f"sessionid={session}")
    before = Message.objects.count()

    answer = command(session, connected, command="message", data='{"action":"speak","text":" "}')

    assert answer["status"] == 1
    assert Message.objects.count() == before
    cableway_broadcasts.assert_no_broadcasts()


def test_calls_without_the_servers_key_are_refused() -> None:
    session = log_in(Client(), "alice")

    status, _ = rpc("connect", {"env": env(f"sessionid={session}")}, key="wrong")

    assert status == 401


def test_the_room_page_needs_a_login_and_connects_without_a_token() -> None:
    client = Client()
    assert client.get("/rooms/lobby/")["Location"] == "/login/?next=/rooms/lobby/"

    log_in(client, "alice")
    page = client.get("/rooms/lobby/").content.decode()

    assert '"ws://localhost:8080/cable"' in page  # the cable URL, with no token in it
    assert "jid=" not in page
    assert 'channel: "RoomChannel"' in page
