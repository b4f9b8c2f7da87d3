"""The framework examples (examples/) against a real server, with real clients.

* Each example's own tests (``examples/*/test_*.py``, written with Cableway's pytest plugin,
  no server) pass.
* Each example's page gives a real ``@rails/actioncable`` consumer (what turbo-rails'
  ``<turbo-cable-stream-source>`` uses) the cable URL and signed stream name it renders, and a
  real ``EventSource`` the SSE URL of its ``?sse=1`` variant; a message posted through the
  application reaches both as exactly the Turbo Stream it broadcast.
* In a real browser: two Chromium tabs open a room; a form submitted in one, the message
  appears in the other (Turbo from node_modules, served with CORS by the test).

Server mode "secret_turbo": one ``--secret`` shared with the application (the broadcast key
derived from it), Turbo Streams and SSE on, as the recipes set it up. The applications read it
from the same ``ANYCABLE_*`` variables the server reads.
"""

from __future__ import annotations

import html.parser
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    NODE_MODULES,
    REPO_ROOT,
    BrowserClient,
    CablewayServer,
    NodeClient,
    _LineCollector,
)
from .conftest import screenshot_path as _screenshot_path

pytestmark = pytest.mark.interop

EXAMPLES = REPO_ROOT / "examples"
DJANGO_APP = EXAMPLES / "django_app"
USER_TEXT = "<b>hi</b> & bye"
ESCAPED = "&lt;b&gt;hi&lt;/b&gt; &amp; bye"
ClientFactory = Callable[..., NodeClient]
KINDS = ("flask", "fastapi", "django")
APP_START_TIMEOUT = 60.0


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

    @property
    def events_url(self) -> str:
        assert "turbo-cable-stream-source" not in self.attrs
        return self.attrs["turbo-stream-source"]["src"]


class Subscribers:
    """A real Action Cable consumer subscribed as the page's <turbo-cable-stream-source>
    would, and a real EventSource on the SSE page's URL; both confirmed before anything is
    sent."""

    def __init__(
        self, rails_client: ClientFactory, sse_client: ClientFactory, page: _Page, sse: _Page
    ) -> None:
        # Relies on: the consumer sends `subscribe` with exactly these params after `welcome`
        # and fires `connected` on the confirmation; EventSource fires `open` on the 200,
        # which the server sends once the subscription is confirmed.
        params = {"channel": "Turbo::StreamsChannel", "signed_stream_name": page.signed_stream}
        self.cable = rails_client(
            url=page.cable_url, subscriptions=[{"name": "room", "params": params}]
        )
        self.sse = sse_client(url=sse.events_url)
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


def _app_env(server: CablewayServer) -> dict[str, str]:
    """What a deployment sets: the server's secret and where its cable is."""
    return {"ANYCABLE_SECRET": server.jwt_secret, "ANYCABLE_WEBSOCKET_URL": server.ws_url()}


# --- the examples' own tests (Cableway's pytest plugin) --------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_the_example_own_tests_pass(kind: str) -> None:
    pytest.importorskip(kind)
    directory = EXAMPLES / f"{kind}_app"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYCABLE_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(directory)],
        cwd=directory if kind == "django" else REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout
    assert "cableway_broadcasts" in "".join(
        path.read_text(encoding="utf-8") for path in directory.rglob("test_*.py")
    )


# --- real JS clients, applications in-process (Flask, FastAPI) -----------------------------


def test_flask_example_app(
    cableway_factory: Callable[[str], CablewayServer],
    rails_client: ClientFactory,
    sse_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("flask")
    from examples.flask_app.app import create_app

    server = cableway_factory("secret_turbo")
    for name, value in _app_env(server).items():
        monkeypatch.setenv(name, value)
    client = create_app().test_client()
    response = client.get("/rooms/4")
    assert response.status_code == 200
    page = _Page(response.get_data(as_text=True))
    sse = _Page(client.get("/rooms/4?sse=1").get_data(as_text=True))
    subscribers = Subscribers(rails_client, sse_client, page, sse)
    posted = client.post("/rooms/4/messages", data={"text": USER_TEXT})
    assert posted.status_code == 303
    assert posted.headers["Location"] == "/rooms/4"
    cable, from_sse = subscribers.received()
    assert cable == from_sse
    _assert_append(cable, f"<p>{ESCAPED}</p>")
    assert ESCAPED in client.get("/rooms/4").get_data(as_text=True)  # and it was saved


def test_fastapi_example_app(
    cableway_factory: Callable[[str], CablewayServer],
    rails_client: ClientFactory,
    sse_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx2")  # starlette 1.x warns (an error here) with plain httpx
    pytest.importorskip("python_multipart")
    from fastapi.testclient import TestClient

    from examples.fastapi_app.main import create_app

    server = cableway_factory("secret_turbo")
    for name, value in _app_env(server).items():
        monkeypatch.setenv(name, value)
    with TestClient(create_app()) as client:
        response = client.get("/rooms/2")
        assert response.status_code == 200
        page = _Page(response.text)
        sse = _Page(client.get("/rooms/2", params={"sse": "1"}).text)
        subscribers = Subscribers(rails_client, sse_client, page, sse)
        posted = client.post("/rooms/2/messages", data={"text": USER_TEXT}, follow_redirects=False)
        assert posted.status_code == 303
        assert posted.headers["location"] == "/rooms/2"
        cable, from_sse = subscribers.received()
        assert cable == from_sse
        _assert_append(cable, f"<p>{ESCAPED}</p>")
        assert f"<p>{ESCAPED}</p>" in client.get("/rooms/2").text


# The Django project runs in its own process (its settings are process-wide): it migrates a
# fresh SQLite file, prints the room page (and its SSE variant), then posts one message per
# stdin line.
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
sse = client.get("/rooms/1/?sse=1")
print(json.dumps({"event": "page", "status": page.status_code, "html": page.content.decode(),
                  "sse": sse.content.decode()}))
sys.stdout.flush()
for line in sys.stdin:
    response = client.post("/rooms/1/", {"text": json.loads(line)["text"]})
    again = client.get("/rooms/1/").content.decode()
    print(json.dumps({"event": "posted", "status": response.status_code,
                      "location": response.get("Location"), "page": again}))
    sys.stdout.flush()
"""


class AppProcess:
    """A Python process printing JSON event lines (an example app, or the Django driver)."""

    def __init__(
        self, argv: list[str], *, cwd: Path, env: dict[str, str], server: bool = False
    ) -> None:
        self.server = server  # a server is stopped with SIGTERM, a driver by closing stdin
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
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

    def describe(self) -> str:
        return f"{self._stdout.text()}\n--- stderr ---\n{self._stderr.text()}"

    def wait_for(
        self, event: str, count: int = 1, timeout: float = APP_START_TIMEOUT
    ) -> dict[str, Any]:
        def found() -> list[dict[str, Any]]:
            return [
                json.loads(line)
                for line in list(self._stdout.lines)
                if line.startswith("{") and json.loads(line).get("event") == event
            ]

        self._stdout.wait_until(lambda: len(found()) >= count, time.monotonic() + timeout)
        events = found()
        assert len(events) >= count, (
            f"no {event!r} within {timeout}s (exit {self.process.poll()})\n{self.describe()}"
        )
        return events[count - 1]

    def post(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"text": text}) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self.server and self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.terminate()
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


@pytest.fixture
def app_process() -> Iterator[Callable[..., AppProcess]]:
    """Factory of :class:`AppProcess` es, closed in teardown (their output is printed, which
    pytest shows when the test failed)."""
    processes: list[AppProcess] = []

    def start(
        argv: list[str], *, cwd: Path, env: dict[str, str], server: bool = False
    ) -> AppProcess:
        process = AppProcess(argv, cwd=cwd, env={**os.environ, **env}, server=server)
        processes.append(process)
        return process

    try:
        yield start
    finally:
        for process in processes:
            process.close()
            print(f"--- app process ---\n{process.describe()}")


def test_django_example_app(
    cableway_factory: Callable[[str], CablewayServer],
    rails_client: ClientFactory,
    sse_client: ClientFactory,
    app_process: Callable[..., AppProcess],
    tmp_path: Path,
) -> None:
    pytest.importorskip("django")
    server = cableway_factory("secret_turbo")
    env = {
        **_app_env(server),
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "CHAT_DATABASE": str(tmp_path / "db.sqlite3"),
    }
    django = app_process([sys.executable, "-c", DJANGO_DRIVER], cwd=DJANGO_APP, env=env)
    page_event = django.wait_for("page")
    assert page_event["status"] == 200
    page = _Page(page_event["html"])
    subscribers = Subscribers(rails_client, sse_client, page, _Page(page_event["sse"]))
    django.post(USER_TEXT)
    posted = django.wait_for("posted")
    assert posted["status"] == 302
    assert posted["location"] == "/rooms/1/"
    cable, from_sse = subscribers.received()
    assert cable == from_sse
    _assert_append(cable, '<p id="message_1">')
    assert ESCAPED in posted["page"]


# --- two Chromium tabs ------------------------------------------------------------------------

TURBO_BUNDLE = NODE_MODULES / "@hotwired/turbo-rails/app/assets/javascripts/turbo.js"

# Each example served over real HTTP on 127.0.0.1 (port chosen by the OS, printed as a JSON
# line): Flask and Django through werkzeug's threaded WSGI server, FastAPI through uvicorn.
APP_SERVER = """
import json, socket, sys
kind = sys.argv[1]

def listening(port):
    print(json.dumps({"event": "listening", "port": port}))
    sys.stdout.flush()

if kind == "fastapi":
    import uvicorn
    from examples.fastapi_app.main import create_app
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning", lifespan="on"))
    listening(sock.getsockname()[1])
    server.run(sockets=[sock])
else:
    from werkzeug.serving import make_server
    if kind == "flask":
        from examples.flask_app.app import create_app
        app = create_app()
    else:
        import django
        from django.core.management import call_command
        from django.core.wsgi import get_wsgi_application
        django.setup()
        call_command("migrate", verbosity=0)
        app = get_wsgi_application()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    listening(server.port)
    server.serve_forever()
"""


@pytest.fixture
def turbo_js() -> Iterator[str]:
    """The URL of turbo-rails' ESM bundle (Turbo + the Action Cable client) from node_modules,
    served with ``Access-Control-Allow-Origin`` (a module script from another origin)."""
    if not TURBO_BUNDLE.is_file():
        pytest.skip(f"{TURBO_BUNDLE} is missing (npm ci in tests/interop)")
    bundle = TURBO_BUNDLE.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript; charset=utf-8")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(bundle)))
            self.end_headers()
            self.wfile.write(bundle)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/turbo.js"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.parametrize("kind", KINDS)
def test_a_form_submitted_in_one_tab_updates_the_other(
    kind: str,
    cableway_factory: Callable[[str], CablewayServer],
    browser: Callable[..., BrowserClient],
    app_process: Callable[..., AppProcess],
    turbo_js: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    # Browser behaviours relied on: turbo-rails' <turbo-cable-stream-source> subscribes through
    # the consumer of <meta name="action-cable-url"> and sets `connected` once confirmed; Turbo
    # submits the form with fetch, follows the redirect, and applies each broadcast
    # <turbo-stream> to the document.
    pytest.importorskip(kind)
    if kind == "fastapi":
        pytest.importorskip("uvicorn")
    server = cableway_factory("secret_turbo")
    env = {**_app_env(server), "TURBO_JS_URL": turbo_js}
    if kind == "django":
        env["DJANGO_SETTINGS_MODULE"] = "chatsite.settings"
        env["CHAT_DATABASE"] = str(tmp_path / "db.sqlite3")
    cwd = DJANGO_APP if kind == "django" else REPO_ROOT
    app = app_process([sys.executable, "-c", APP_SERVER, kind], cwd=cwd, env=env, server=True)
    port = app.wait_for("listening")["port"]
    room = f"http://127.0.0.1:{port}/rooms/1" + ("/" if kind == "django" else "")

    reader, writer = browser(), browser()
    for tab in (reader, writer):
        assert tab.call("goto", url=room)["status"] == 200
        tab.call("wait_selector", selector="turbo-cable-stream-source[connected]")

    writer.call("fill", selector="form input[name=text]", value=USER_TEXT)
    writer.call("click", selector="form button")

    reader.call("wait_text", selector="#messages", text=USER_TEXT)
    assert reader.call("texts", selector="#messages > p") == [USER_TEXT]  # text, not markup
    assert ESCAPED in reader.call("html", selector="#messages")
    writer.call("wait_text", selector="#messages", text=USER_TEXT)
    path = _screenshot_path(request)
    reader.call("screenshot", path=str(path))
    print(f"\nscreenshot: {path}")
    for tab in (reader, writer):
        assert [p for p in tab.problems() if p.get("event") == "pageerror"] == []
    assert server.error_lines() == []


def test_manage_py_cableway_serves_with_the_settings_secret(
    app_process: Callable[..., AppProcess], tmp_path: Path
) -> None:
    # `python manage.py cableway` in the Django example: the server must accept a broadcast
    # keyed with the secret of settings.CABLEWAY, and refuse one keyed with another secret.
    pytest.importorskip("django")
    from cableway.toolkit.broadcaster import BroadcastAuthError, Broadcaster

    with socket.socket() as sock:  # a free port (another process could take it: unlikely)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    secret = "manage-py-secret-" + "x" * 32
    env = {
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "ANYCABLE_SECRET": secret,
        "ANYCABLE_WEBSOCKET_URL": f"ws://127.0.0.1:{port}/cable",
        "CHAT_DATABASE": str(tmp_path / "db.sqlite3"),
    }
    server = app_process(
        [sys.executable, "manage.py", "cableway", "--host", "127.0.0.1"],
        cwd=DJANGO_APP,
        env=env,
        server=True,
    )
    deadline = time.monotonic() + APP_START_TIMEOUT
    assert server._stderr.wait_until(
        lambda: "Handle WebSocket connections at" in server._stderr.text(), deadline
    ), server.describe()
    url = f"http://127.0.0.1:{port}/_broadcast"
    Broadcaster(url, secret=secret).broadcast("room:1:messages", "<p>ok</p>")  # 201
    with pytest.raises(BroadcastAuthError):
        Broadcaster(url, secret="another-secret").broadcast("room:1:messages", "<p>no</p>")
