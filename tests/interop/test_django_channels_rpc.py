"""examples/django_channels for real: the Django project under uvicorn (its ``asgi.py``
mounting the channels app at ``/_anycable``), ``cableway --rpc_host`` in front of it, and
the stock ``@rails/actioncable`` consumer in Node carrying the session cookie a login
through Django's login view gave (as a browser sends it with the WebSocket handshake).

Connect without the cookie is rejected; with it the user is identified from the Django
session; ``speak`` saves a message and reaches another client; ``typing`` reaches another
client on the room's typing stream.
"""

from __future__ import annotations

import html
import http.cookiejar
import os
import re
import secrets
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .conftest import REPO_ROOT, CablewayServer, _attach_section, _cableway_command, _free_port
from .test_examples import AppProcess

if TYPE_CHECKING:
    from .conftest import NodeClient

    ClientFactory = Callable[..., NodeClient]

pytestmark = pytest.mark.interop
pytest.importorskip("django")
pytest.importorskip("uvicorn")

PROJECT = REPO_ROOT / "examples" / "django_channels"
PASSWORD = "correct horse battery staple"
LOBBY = {"channel": "RoomChannel", "room": "lobby"}

# The project in its own process (Django settings are process-wide): a fresh SQLite file
# migrated, two users, then uvicorn serving roomsite.asgi on a port the OS picks (printed).
SERVER = """
import json, socket, sys
import django
from django.core.management import call_command

django.setup()
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
for name in ("alice", "bob"):
    get_user_model().objects.create_user(name, password=sys.argv[1])

import uvicorn
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.bind(("127.0.0.1", 0))
sock.listen(64)
print(json.dumps({"event": "listening", "port": sock.getsockname()[1]}), flush=True)
config = uvicorn.Config("roomsite.asgi:application", log_level="warning", lifespan="off")
uvicorn.Server(config).run(sockets=[sock])
"""


@dataclass
class Stack:
    server: CablewayServer
    site: str  # http://127.0.0.1:<django port>

    def headers(self, session: str) -> dict[str, str]:
        """What a browser sends with the handshake from the site's page."""
        return {"Cookie": f"csrftoken=abc; sessionid={session}", "Origin": self.site}

    def log_in(self, username: str) -> tuple[str, urllib.request.OpenerDirector]:
        """Logs in through the login form as a browser does; (sessionid, the browser)."""
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with browser.open(f"{self.site}/login/", timeout=30) as response:
            form = response.read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
        assert token is not None, form
        body = urllib.parse.urlencode(
            {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)}
        ).encode()
        with browser.open(f"{self.site}/login/", data=body, timeout=30) as response:
            assert response.url == f"{self.site}/rooms/lobby/", response.url  # logged in
        cookies = {cookie.name: cookie.value for cookie in jar}
        session = cookies["sessionid"]
        assert session
        return session, browser


@pytest.fixture
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    secret = secrets.token_hex(16)
    port = _free_port()
    env = {
        "DJANGO_SETTINGS_MODULE": "roomsite.settings",
        "ROOMS_DATABASE": str(tmp_path / "db.sqlite3"),
        "ANYCABLE_SECRET": secret,  # the RPC key and the broadcast key derive from it
        "ANYCABLE_WEBSOCKET_URL": f"ws://127.0.0.1:{port}/cable",
    }
    django = AppProcess(
        [sys.executable, "-c", SERVER, PASSWORD],
        cwd=PROJECT,
        env={**os.environ, **env},
        server=True,
    )
    _attach_section(request, "django (uvicorn)", django.describe)
    server: CablewayServer | None = None
    try:
        django_port = django.wait_for("listening")["port"]
        argv = [
            *_cableway_command(),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--secret", secret,
            "--rpc_host", f"http://127.0.0.1:{django_port}/_anycable",
            "--proxy-cookies", "sessionid",
            "--allowed_origins", f"127.0.0.1:{django_port}",
        ]  # fmt: skip
        server = CablewayServer(port, secret, "", "", argv)
        _attach_section(request, f"cableway --rpc_host (port {port})", server.describe)
        server.start()
        yield Stack(server, f"http://127.0.0.1:{django_port}")
    finally:
        if server is not None:
            server.stop()
        django.close()


def test_the_example_own_tests_pass() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYCABLE_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PROJECT)],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b\d+ passed\b", result.stdout), result.stdout


def test_without_the_session_cookie_the_connection_is_rejected(
    stack: Stack, rails_client: ClientFactory
) -> None:
    anonymous = rails_client(
        url=stack.server.ws_url(),
        headers=stack.headers("forged"),
        subscriptions=[{"name": "room", "params": LOBBY}],
        control="none",
    )

    assert anonymous.wait_for("socket_close")["code"] == 1000
    frame = anonymous.wait_frame(lambda data: data.get("type") == "disconnect")
    assert frame["data"] == {"type": "disconnect", "reason": "unauthorized", "reconnect": False}
    assert not anonymous.find("connected", name="room")


def test_logged_in_clients_chat_and_see_who_is_typing(
    stack: Stack, rails_client: ClientFactory
) -> None:
    alice_session, alice_browser = stack.log_in("alice")
    bob_session, _ = stack.log_in("bob")
    with alice_browser.open(f"{stack.site}/rooms/lobby/", timeout=30) as response:
        page = response.read().decode()
    assert f'"{stack.server.ws_url()}"' in page  # the page's cable URL: no token in it

    def client(session: str) -> NodeClient:
        return rails_client(
            url=stack.server.ws_url(),
            headers=stack.headers(session),
            subscriptions=[
                {"name": "room", "params": LOBBY},
                {"name": "nowhere", "params": {"channel": "RoomChannel", "room": "nowhere"}},
            ],
        )

    alice = client(alice_session)
    bob = client(bob_session)
    for consumer in (alice, bob):
        consumer.wait_for("connected", name="room")
        consumer.wait_for("rejected", name="nowhere")

    alice.command("perform", name="room", action="typing")
    assert bob.wait_for("received", name="room")["message"] == {"type": "typing", "user": "alice"}

    alice.command("perform", name="room", action="speak", data={"text": "<b>hi</b> & bye"})
    received = bob.wait_count("received", 2, name="room")[1]["message"]  # after the typing
    assert received["user"] == "alice"
    assert received["html"] == (
        f'<p id="message_{received["id"]}"><b>alice</b>: &lt;b&gt;hi&lt;/b&gt; &amp; bye</p>\n'
    )
    alice.wait_for("received", name="room", message=received)  # the sender gets it too

    with alice_browser.open(f"{stack.site}/rooms/lobby/", timeout=30) as response:
        assert html.escape("<b>hi</b> & bye", quote=False) in response.read().decode()  # saved

    for consumer in (alice, bob):
        assert consumer.disconnect() == 0
    assert stack.server.error_lines() == []


def test_another_sites_page_cannot_use_the_cookie(
    stack: Stack, rails_client: ClientFactory
) -> None:
    session, _ = stack.log_in("alice")
    hijacker = rails_client(
        url=stack.server.ws_url(),
        headers={"Cookie": f"sessionid={session}", "Origin": "http://evil.example"},
        subscriptions=[{"name": "room", "params": LOBBY}],
    )

    hijacker.wait_for("socket_close", socket=1)  # the handshake is refused
    assert not hijacker.find("frame")
    assert not hijacker.find("connected", name="room")
