"""The framework examples (examples/) against a real server, with real clients.

Each example's page gives a real ``@rails/actioncable`` consumer (what turbo-rails'
``<turbo-cable-stream-source>`` uses) the cable URL and signed stream name it renders, and a
real ``EventSource`` the SSE URL; then the example broadcasts a new message, and both must
receive exactly the Turbo Stream it sent.

* The framework-free parts (``live.py`` of each example: page values, page rendering, the
  broadcast after a save) run always.
* The whole applications run through each framework's test client when the framework is
  installed (``examples/requirements.txt``); otherwise those tests are skipped.

Server mode "secret_turbo": one ``--secret`` shared with the application (the broadcast key
derived from it), Turbo Streams on, as the recipes set it up.
"""

from __future__ import annotations

import asyncio
import html.parser
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import pytest

from cableway import turbo_stream
from cableway.turbo_stream import escape

from .conftest import REPO_ROOT, CablewayServer, NodeClient, _LineCollector

pytestmark = pytest.mark.interop

EXAMPLES = REPO_ROOT / "examples"
DJANGO_APP = EXAMPLES / "django_app"
USER_TEXT = "<b>hi</b> & bye"
ESCAPED = "&lt;b&gt;hi&lt;/b&gt; &amp; bye"
ClientFactory = Callable[..., NodeClient]


def _load(name: str, path: Path) -> ModuleType:
    """Import a framework-free module of an example by path, under a unique name (the
    examples are not on sys.path and two have a ``live`` module)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = sys.modules.get(name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return module


class _Page(html.parser.HTMLParser):
    """The attributes of a page's <meta>, stream source and form elements."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.attrs: dict[str, dict[str, str]] = {}
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        key = f"meta:{values.get('name')}" if tag == "meta" else tag
        self.attrs.setdefault(key, values)

    @property
    def cable_url(self) -> str:
        return self.attrs["meta:action-cable-url"]["content"]

    @property
    def signed_stream(self) -> str:
        source = self.attrs["turbo-cable-stream-source"]
        assert source["channel"] == "Turbo::StreamsChannel"
        return source["signed-stream-name"]


class Subscribers:
    """A real Action Cable consumer subscribed as the page's <turbo-cable-stream-source>
    would, and a real EventSource on the SSE URL; both confirmed before anything is sent."""

    def __init__(
        self, rails_client: ClientFactory, sse_client: ClientFactory, page: _Page, events_url: str
    ) -> None:
        # Relies on: the consumer sends `subscribe` with exactly these params after `welcome`
        # and fires `connected` on the confirmation; EventSource fires `open` on the 200,
        # which the server sends once the subscription is confirmed.
        params = {"channel": "Turbo::StreamsChannel", "signed_stream_name": page.signed_stream}
        self.cable = rails_client(
            url=page.cable_url, subscriptions=[{"name": "room", "params": params}]
        )
        self.sse = sse_client(url=events_url)
        self.cable.wait_for("connected", name="room")
        self.sse.wait_for("open")

    def received(self) -> tuple[str, str]:
        """What both got (the Turbo Stream HTML, as Turbo's stream sources see it)."""
        cable = self.cable.wait_for("received", name="room")["message"]
        sse = self.sse.wait_for("message")["data"]
        return str(cable), str(sse)


def _assert_append(html: str, message_html_pattern: str) -> None:
    prefix = '<turbo-stream action="append" target="messages"><template>'
    suffix = "</template></turbo-stream>"
    assert html.startswith(prefix), html
    assert html.endswith(suffix), html
    inner = html[len(prefix) : -len(suffix)]
    assert ESCAPED in inner, inner
    assert "<b>" not in inner
    assert inner.strip().startswith(message_html_pattern), inner


# --- framework-free parts ------------------------------------------------------------------


def test_flask_example_live_part(
    cableway_factory: Callable[[str], CablewayServer],
    rails_client: ClientFactory,
    sse_client: ClientFactory,
) -> None:
    live = _load("flask_example_live", EXAMPLES / "flask_app/live.py")
    server = cableway_factory("secret_turbo")
    cableway = live.Cableway(server.jwt_secret, server.http_url)
    context = live.page_context(cableway, 7, user_id=1)
    page = _Page(
        f'<meta name="action-cable-url" content="{escape(context["cable_url"])}">'
        '<turbo-cable-stream-source channel="Turbo::StreamsChannel" '
        f'signed-stream-name="{escape(context["signed_stream"])}">'
    )
    subscribers = Subscribers(rails_client, sse_client, page, context["events_url"])
    message_html = f"<p>{escape(USER_TEXT)}</p>"
    live.on_message_saved(cableway.broadcaster(), 7, message_html)
    expected = turbo_stream.append("messages", message_html)
    assert subscribers.received() == (expected, expected)
    assert live.room_stream(7) == "room:7:messages"


def test_fastapi_example_live_part(
    cableway_factory: Callable[[str], CablewayServer],
    rails_client: ClientFactory,
    sse_client: ClientFactory,
) -> None:
    live = _load("fastapi_example_live", EXAMPLES / "fastapi_app/live.py")
    server = cableway_factory("secret_turbo")
    cableway = live.Cableway(server.jwt_secret, server.http_url)
    page = _Page(live.render_page(cableway, 3, ["earlier <i>"], user_id=1))
    sse_page = _Page(live.render_page(cableway, 3, [], user_id=1, sse=True))
    events_url = sse_page.attrs["turbo-stream-source"]["src"]
    assert "turbo-cable-stream-source" not in sse_page.attrs
    assert "<p>earlier &lt;i&gt;</p>" in live.render_page(cableway, 3, ["earlier <i>"], user_id=1)
    subscribers = Subscribers(rails_client, sse_client, page, events_url)
    asyncio.run(live.on_message_saved(cableway.broadcaster(), 3, USER_TEXT))
    expected = turbo_stream.append("messages", f"<p>{ESCAPED}</p>")
    assert subscribers.received() == (expected, expected)


def test_django_example_live_part(
    cableway_factory: Callable[[str], CablewayServer],
    rails_client: ClientFactory,
    sse_client: ClientFactory,
) -> None:
    live = _load("django_example_live", DJANGO_APP / "chat/live.py")

    class Room:  # what chat.models.Room does for its stream name
        def __init__(self, pk: int) -> None:
            self.pk = pk

        def to_gid_param(self) -> str:
            return str(live.room_gid_param(self.pk))

    server = cableway_factory("secret_turbo")
    cableway = live.Cableway(server.jwt_secret, server.http_url)
    room = Room(1)
    assert live.room_stream(room) == "Z2lkOi8vbXlhcHAvUm9vbS8x:messages"  # gid://myapp/Room/1
    context = live.page_context(cableway, room, user_id=None)  # an anonymous visitor
    page = _Page(
        f'<meta name="action-cable-url" content="{escape(context["cable_url"])}">'
        '<turbo-cable-stream-source channel="Turbo::StreamsChannel" '
        f'signed-stream-name="{escape(context["signed_stream"])}">'
    )
    subscribers = Subscribers(rails_client, sse_client, page, context["events_url"])
    message_html = f'<p id="message_5">{escape(USER_TEXT)}</p>'
    live.on_message_saved(cableway.broadcaster(), room, message_html)
    expected = turbo_stream.append("messages", message_html)
    assert subscribers.received() == (expected, expected)


# --- the whole applications (when the framework is installed) -----------------------------


def test_flask_example_app(
    cableway_factory: Callable[[str], CablewayServer],
    rails_client: ClientFactory,
    sse_client: ClientFactory,
) -> None:
    pytest.importorskip("flask")
    from examples.flask_app.app import create_app
    from examples.flask_app.live import Cableway

    server = cableway_factory("secret_turbo")
    cableway = Cableway(server.jwt_secret, server.http_url)
    client = create_app(cableway).test_client()
    response = client.get("/rooms/4")
    assert response.status_code == 200
    page = _Page(response.get_data(as_text=True))
    events_url = f"{cableway.events_url}?turbo_signed_stream_name={_quote(page.signed_stream)}"
    subscribers = Subscribers(rails_client, sse_client, page, events_url)
    posted = client.post("/rooms/4/messages", data={"text": USER_TEXT})
    assert posted.status_code == 303
    assert posted.headers["Location"] == "/rooms/4"
    cable, sse = subscribers.received()
    assert cable == sse
    _assert_append(cable, f"<p>{ESCAPED}</p>")
    assert ESCAPED in client.get("/rooms/4").get_data(as_text=True)  # and it was saved


def test_fastapi_example_app(
    cableway_factory: Callable[[str], CablewayServer],
    rails_client: ClientFactory,
    sse_client: ClientFactory,
) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx2")  # starlette 1.x warns (an error here) with plain httpx
    pytest.importorskip("python_multipart")
    from fastapi.testclient import TestClient

    from examples.fastapi_app.live import Cableway
    from examples.fastapi_app.main import create_app

    server = cableway_factory("secret_turbo")
    cableway = Cableway(server.jwt_secret, server.http_url)
    with TestClient(create_app(cableway)) as client:
        response = client.get("/rooms/2")
        assert response.status_code == 200
        page = _Page(response.text)
        sse_page = _Page(client.get("/rooms/2", params={"sse": "1"}).text)
        subscribers = Subscribers(
            rails_client, sse_client, page, sse_page.attrs["turbo-stream-source"]["src"]
        )
        posted = client.post("/rooms/2/messages", data={"text": USER_TEXT}, follow_redirects=False)
        assert posted.status_code == 303
        assert posted.headers["location"] == "/rooms/2"
        cable, sse = subscribers.received()
        assert cable == sse
        _assert_append(cable, f"<p>{ESCAPED}</p>")
        assert f"<p>{ESCAPED}</p>" in client.get("/rooms/2").text


# The Django project runs in its own process (its settings are process-wide): it migrates a
# fresh SQLite file, prints the room page, then posts one message per stdin line.
DJANGO_DRIVER = """
import json, sys
import django
from django.core.management import call_command
from django.test import Client
from django.test.utils import setup_test_environment

django.setup()
setup_test_environment()
call_command("migrate", verbosity=0)
client = Client()
page = client.get("/rooms/1/")
print(json.dumps({"event": "page", "status": page.status_code, "html": page.content.decode()}))
sys.stdout.flush()
for line in sys.stdin:
    response = client.post("/rooms/1/", {"text": json.loads(line)["text"]})
    again = client.get("/rooms/1/").content.decode()
    print(json.dumps({"event": "posted", "status": response.status_code,
                      "location": response.get("Location"), "page": again}))
    sys.stdout.flush()
"""


@pytest.fixture
def django_process(tmp_path: Path) -> Iterator[Callable[[CablewayServer], DjangoProcess]]:
    processes: list[DjangoProcess] = []

    def start(server: CablewayServer) -> DjangoProcess:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "ANYCABLE_SECRET": server.jwt_secret,
            "CABLEWAY_URL": server.http_url,
            "CHAT_DATABASE": str(tmp_path / "db.sqlite3"),
        }
        process = DjangoProcess(env)
        processes.append(process)
        return process

    try:
        yield start
    finally:
        for process in processes:
            process.close()


class DjangoProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", DJANGO_DRIVER],
            cwd=DJANGO_APP,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._stdout = _LineCollector(self.process.stdout)
        self._stderr = _LineCollector(self.process.stderr)

    def wait_for(self, event: str, count: int = 1, timeout: float = 30.0) -> dict[str, Any]:
        def found() -> list[dict[str, Any]]:
            return [
                json.loads(line)
                for line in list(self._stdout.lines)
                if line.startswith("{") and json.loads(line).get("event") == event
            ]

        self._stdout.wait_until(lambda: len(found()) >= count, time.monotonic() + timeout)
        events = found()
        assert len(events) >= count, (
            f"django: no {event!r} within {timeout}s (exit {self.process.poll()})\n"
            f"{self._stdout.text()}\n--- stderr ---\n{self._stderr.text()}"
        )
        return events[count - 1]

    def post(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"text": text}) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._stdout.join(10)
        self._stderr.join(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def test_django_example_app(
    cableway_factory: Callable[[str], CablewayServer],
    rails_client: ClientFactory,
    sse_client: ClientFactory,
    django_process: Callable[[CablewayServer], DjangoProcess],
) -> None:
    pytest.importorskip("django")
    server = cableway_factory("secret_turbo")
    django = django_process(server)
    page_event = django.wait_for("page")
    assert page_event["status"] == 200
    page = _Page(page_event["html"])
    live = _load("django_example_live_app", DJANGO_APP / "chat/live.py")
    events_url = live.Cableway(server.jwt_secret, server.http_url).events_url + (
        f"?turbo_signed_stream_name={_quote(page.signed_stream)}"
    )
    subscribers = Subscribers(rails_client, sse_client, page, events_url)
    django.post(USER_TEXT)
    posted = django.wait_for("posted")
    assert posted["status"] == 302
    assert posted["location"] == "/rooms/1/"
    cable, sse = subscribers.received()
    assert cable == sse
    _assert_append(cable, '<p id="message_1">')
    assert ESCAPED in posted["page"]


def _quote(value: str) -> str:
    return quote(value, safe="")
