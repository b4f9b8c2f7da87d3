"""cableway.jinja and cableway.flask: page helpers, the Flask extension, Turbo Stream
responses, broadcasts captured and received by a simulated page."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cableway import turbo_stream
from cableway.auth import decode_identifiers, sign_stream_name
from cableway.testing import BroadcastCapture
from cableway.toolkit.broadcaster import BroadcastUnavailable
from cableway.toolkit.integration import IntegrationSettings
from tests.frameworks.pages import Page
from tests.toolkit.stub_http import closed_port

jinja2 = pytest.importorskip("jinja2")

SECRET = "jinja-test-secret"
SETTINGS = IntegrationSettings(secret=SECRET, websocket_url="ws://127.0.0.1:8080/cable")
HOSTILE = '"><script>alert(1)</script>'
PAGE = """<html><head>{{ cable_meta_tag() }}</head><body>
{{ turbo_stream_from("room", room_id, "messages") }}
{{ turbo_stream_from(private, "notifications", sse=True) }}
<p>{{ text }}</p></body></html>"""


def _env(autoescape: bool = True) -> Any:
    from cableway.jinja import configure

    env = jinja2.Environment(loader=jinja2.DictLoader({"page.html": PAGE}), autoescape=autoescape)
    return configure(env, SETTINGS, identifiers=lambda context: {"user_id": context["user_id"]})


@pytest.mark.parametrize("autoescape", [True, False])
def test_jinja_helpers_render_escaped_signed_elements(autoescape: bool) -> None:
    html = (
        _env(autoescape)
        .get_template("page.html")
        .render(room_id=3, private=HOSTILE, user_id=8, text="t")
    )
    assert "<script>" not in html
    page = Page(html)
    assert page.signed_streams == [sign_stream_name("room:3:messages", SECRET)]
    assert decode_identifiers(page.token or "", SECRET, now=time.time()) == '{"user_id":8}'
    (sse,) = page.sse_sources
    assert sse["turbo_signed_stream_name"] == [sign_stream_name(f"{HOSTILE}:notifications", SECRET)]
    assert decode_identifiers(sse["jid"][0], SECRET, now=time.time()) == '{"user_id":8}'


def test_jinja_meta_tag_explicit_identifiers_and_anonymous() -> None:
    env = jinja2.Environment(extensions=["cableway.jinja.CablewayExtension"], autoescape=True)
    env.cableway_settings = SETTINGS
    page = Page(env.from_string("{{ cable_meta_tag(expires_in=30, user_id=2) }}").render())
    with pytest.raises(Exception, match="expired"):
        decode_identifiers(page.token or "", SECRET, now=time.time() + 31)
    assert Page(env.from_string("{{ cable_meta_tag() }}").render()).token is None


def test_jinja_private_stream_of_a_is_not_readable_with_b_page(
    cableway_broadcasts: BroadcastCapture,
) -> None:
    template = _env().get_template("page.html")
    page_a = Page(template.render(room_id=1, private="user-a", user_id="a"))
    page_b = Page(template.render(room_id=1, private="user-b", user_id="b"))
    b = BroadcastCapture(SETTINGS).connect(page_b.token)
    assert b.identifiers == {"user_id": "b"}
    (sse_a,) = page_a.sse_sources
    assert sse_a["turbo_signed_stream_name"][0] not in str(page_b.sse_sources)
    assert not b.subscribe(sign_stream_name("user-a:notifications", "guess"))
    assert not b.subscribe("user-a:notifications")


# --- Flask ----------------------------------------------------------------------------------


def _flask_app(**config: object) -> Any:
    flask = pytest.importorskip("flask")
    from cableway.flask import Cableway, turbo_stream_response

    app = flask.Flask(__name__)
    app.config.update({"CABLEWAY_SECRET": SECRET, **config})
    app.jinja_loader = jinja2.DictLoader(
        {"page.html": PAGE, "_message.html": "<p id=m>{{ text }}</p>"}
    )
    cable = Cableway(app, identifiers=lambda: {"user_id": flask.request.args.get("user")})

    @app.get("/rooms/<int:room_id>")
    def room(room_id: int) -> str:
        return flask.render_template("page.html", room_id=room_id, private="p", text="")

    @app.post("/rooms/<int:room_id>/messages")
    def create(room_id: int) -> Any:
        html = cable.render_turbo_stream(
            "append", "messages", "_message.html", text=flask.request.form["text"]
        )
        sent = cable.broadcast(("room", room_id, "messages"), html)
        return turbo_stream_response(html, status=201 if sent else 202)

    return app


def test_flask_page_subscription_receives_the_form_broadcast(
    cableway_broadcasts: BroadcastCapture,
) -> None:
    client = _flask_app().test_client()
    page = Page(client.get("/rooms/5?user=u1").get_data(as_text=True))
    browser = cableway_broadcasts.connect(page.token)
    assert browser.identifiers == {"user_id": "u1"}
    assert browser.subscribe(page.signed_streams[0])
    response = client.post("/rooms/5/messages", data={"text": "<b>x</b>"})
    assert response.status_code == 201
    assert response.mimetype == "text/vnd.turbo-stream.html"
    expected = turbo_stream.append("messages", "<p id=m>&lt;b&gt;x&lt;/b&gt;</p>")
    assert response.get_data(as_text=True) == expected
    assert browser.turbo_streams == [expected]
    cableway_broadcasts.assert_broadcasts("room:5:messages", 1)


def test_flask_reads_app_config_and_env_and_refuses_typos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYCABLE_BROADCAST_KEY", "env-key")
    app = _flask_app(CABLEWAY_WEBSOCKET_URL="wss://live.example/cable", CABLEWAY_JWT_TTL="60")
    settings = app.extensions["cableway"]
    assert settings.key == "env-key"
    assert settings.broadcast_url == "https://live.example/_broadcast"
    assert settings.jwt_ttl == 60
    with pytest.raises(ValueError, match="websocket_ur"):
        _flask_app(CABLEWAY_WEBSOCKET_UR="x")


def test_flask_broadcast_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{closed_port()}/_broadcast"
    client = _flask_app(CABLEWAY_HTTP_BROADCAST_URL=url).test_client()
    response = client.post("/rooms/1/messages", data={"text": "x"})
    assert response.status_code == 202
    assert "BroadcastUnavailable" in caplog.text
    strict = _flask_app(CABLEWAY_HTTP_BROADCAST_URL=url, CABLEWAY_RAISE_BROADCAST_ERRORS="true")
    strict.testing = True
    with pytest.raises(BroadcastUnavailable):
        strict.test_client().post("/rooms/1/messages", data={"text": "x"})
