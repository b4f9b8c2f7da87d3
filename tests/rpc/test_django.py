"""cableway.channels in Django's asgi.py as docs/rpc.md shows it: the Django ORM works in
plain ``def`` callbacks because they run in a worker thread, not on the event loop."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

pytest.importorskip("django")

from tests.frameworks import djangoapp

djangoapp.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.db import connection  # noqa: E402

from cableway.channels import Application, Channel  # noqa: E402
from cableway.rpc import derive_rpc_key  # noqa: E402

ENV = {"url": "http://localhost:8080/cable", "headers": {"REMOTE_ADDR": "127.0.0.1"}}


class OrmChannel(Channel):
    def subscribed(self) -> None:
        with connection.cursor() as cursor:  # any ORM access
            cursor.execute("SELECT 42")
            (value,) = cursor.fetchone()
        self.stream_from(f"answer:{value}")


def asgi_py(threaded: bool) -> Any:
    """The docs' asgi.py: /_anycable/ goes to the channels app, the rest to Django."""
    django_app = get_asgi_application()
    rpc_app = Application(channels=[OrmChannel], secret="s").asgi(threaded=threaded)

    async def application(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/_anycable/"):
            await rpc_app(scope, receive, send)
        else:
            await django_app(scope, receive, send)

    return application


async def subscribe(application: Any) -> tuple[int, Any]:
    body = json.dumps(
        {"command": "subscribe", "identifier": '{"channel":"OrmChannel"}', "env": ENV}
    ).encode()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    key = derive_rpc_key("s")
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/_anycable/command",
        "headers": [(b"authorization", f"Bearer {key}".encode())],
    }
    await application(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_orm_in_a_sync_callback_under_django_asgi() -> None:
    status, body = asyncio.run(subscribe(asgi_py(threaded=True)))
    assert status == 200
    assert body["status"] == 1
    assert body["streams"] == ["answer:42"]


def test_unthreaded_sync_callbacks_hit_djangos_async_guard() -> None:
    status, body = asyncio.run(subscribe(asgi_py(threaded=False)))
    assert status == 200
    assert body == {
        "status": 0,
        "error_msg": "SynchronousOnlyOperation in OrmChannel.subscribed (see the application log)",
    }
