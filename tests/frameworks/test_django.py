"""cableway.django: template tags, model broadcasts after commit, responses, manage.py cableway.

Django is configured once for this process (tests/frameworks/djangoapp); broadcasts are
captured by the ``cableway_broadcasts`` fixture (the package's pytest plugin) and received by
simulated clients that verify signatures and tokens exactly as the server does.
"""

from __future__ import annotations

import json
import logging
import time
import types
from collections.abc import Iterator

import pytest

pytest.importorskip("django")

from tests.frameworks import djangoapp

djangoapp.setup()

from django.db import transaction  # noqa: E402
from django.template.loader import render_to_string  # noqa: E402
from django.test import RequestFactory, override_settings  # noqa: E402

from cableway import turbo_stream  # noqa: E402
from cableway.auth import decode_identifiers, sign_stream_name  # noqa: E402
from cableway.auth.keys import derive_broadcast_key  # noqa: E402
from cableway.django.broadcasts import broadcast, dom_id  # noqa: E402
from cableway.django.conf import get_settings, stream_name  # noqa: E402
from cableway.django.responses import (  # noqa: E402
    TurboStreamResponse,
    TurboStreamTemplateResponse,
    accepts_turbo_stream,
    render_turbo_stream,
)
from cableway.testing import BroadcastCapture, ConnectionRejected  # noqa: E402
from cableway.toolkit.broadcaster import BroadcastUnavailable  # noqa: E402
from cableway.toolkit.integration import set_settings_provider  # noqa: E402
from cableway.toolkit.streams import gid_param  # noqa: E402
from tests.frameworks.djangoapp.models import Card, Message, Room, Topic  # noqa: E402
from tests.frameworks.pages import Page  # noqa: E402
from tests.toolkit.stub_http import closed_port, stub_server  # noqa: E402

SECRET = djangoapp.SECRET
USER_TEXT = '<b>hi</b> & "bye"'
ESCAPED = "&lt;b&gt;hi&lt;/b&gt; &amp; &quot;bye&quot;"


@pytest.fixture(autouse=True)
def _clean_tables() -> Iterator[None]:
    # other tests in this process may have started a Flask or FastAPI app since
    set_settings_provider(get_settings)
    yield
    Message.objects.all().delete()
    Topic.objects.all().delete()
    Card.objects.all().delete()
    Room.objects.all().delete()


def _user(pk: int) -> types.SimpleNamespace:
    return types.SimpleNamespace(pk=pk, is_authenticated=True)


def render_room(room: Room, user_pk: int, **context: object) -> Page:
    request = RequestFactory().get("/")
    request.user = _user(user_pk)
    user_stream = context.pop("user_stream", f"user-{user_pk}")
    html = render_to_string(
        "djangoapp/room.html", {"room": room, "user_stream": user_stream, **context}, request
    )
    return Page(html)


# --- template tags ---------------------------------------------------------------------------


def test_turbo_stream_from_signs_the_stream_a_model_broadcasts_to(
    cableway_broadcasts: BroadcastCapture,
) -> None:
    room = Room.objects.create(name="Lobby")
    page = render_room(room, user_pk=7)
    assert stream_name(room, "messages") == gid_param("djangoapp", "Room", room.pk) + ":messages"
    client = cableway_broadcasts.connect(page.token)
    assert client.identifiers == {"user_id": 7}
    assert client.subscribe(page.signed_streams[0])
    message = Message.objects.create(room=room, text=USER_TEXT)
    expected = turbo_stream.append("messages", f'<p id="message_{message.pk}">{ESCAPED}</p>\n')
    assert client.turbo_streams == [expected]
    cableway_broadcasts.assert_broadcasts((room, "messages"), 1)
    cableway_broadcasts.assert_broadcast_on((room, "messages"), expected)


def test_sse_form_carries_the_signed_name_and_the_token() -> None:
    room = Room.objects.create(name="Lobby")
    page = render_room(room, user_pk=3)
    (source,) = page.all("turbo-stream-source")
    assert source["id"] == "sse"
    assert source["src"].startswith("http://cable.example:8080/events?")
    (query,) = page.sse_sources
    assert query["turbo_signed_stream_name"] == [page.signed_streams[0]]
    assert json.loads(decode_identifiers(query["jid"][0], SECRET, now=time.time())) == {
        "user_id": 3
    }


def test_cable_meta_tag_token_identifies_the_user_and_expires() -> None:
    page = render_room(Room.objects.create(name="x"), user_pk=42)
    assert page.cable_url.startswith("ws://cable.example:8080/cable?jid=")
    assert page.token is not None
    now = time.time()
    assert decode_identifiers(page.token, SECRET, now=now) == '{"user_id":42}'
    with pytest.raises(Exception, match="expired"):
        decode_identifiers(page.token, SECRET, now=now + 3601)


def test_cable_meta_tag_explicit_identifiers_and_expiry() -> None:
    from django.template import engines

    template = engines["django"].from_string(
        "{% load cableway %}{% cable_meta_tag expires_in=60 team=team user_id=5 %}"
    )
    page = Page(template.render({"team": 'a"b'}))
    assert page.token is not None
    identifiers = decode_identifiers(page.token, SECRET, now=time.time())
    assert json.loads(identifiers) == {"team": 'a"b', "user_id": 5}
    with pytest.raises(Exception, match="expired"):
        decode_identifiers(page.token, SECRET, now=time.time() + 61)


def test_identifiers_setting_and_anonymous_pages() -> None:
    with override_settings(
        CABLEWAY={
            "secret": SECRET,
            "identifiers": lambda request: {"account": request.user.pk, "role": "reader"},
        }
    ):
        page = render_room(Room.objects.create(name="x"), user_pk=9)
        assert page.token is not None
        assert json.loads(decode_identifiers(page.token, SECRET, now=time.time())) == {
            "account": 9,
            "role": "reader",
        }
    from django.template import engines

    # no request in the context: an anonymous connection, no token
    anonymous = Page(
        engines["django"].from_string("{% load cableway %}{% cable_meta_tag %}").render({})
    )
    assert anonymous.token is None


def test_templates_escape_stream_parts_and_attributes() -> None:
    room = Room.objects.create(name="x")
    hostile = '"><script>alert(1)</script>'
    page = render_room(room, user_pk=1, user_stream=hostile)
    assert "<script>" not in render_to_string(
        "djangoapp/room.html",
        {"room": room, "user_stream": hostile},
        RequestFactory().get("/"),
    )
    # the attribute round-trips: the browser reads exactly the signed name of that stream
    assert page.signed_streams[1] == sign_stream_name(f"{hostile}:notifications", SECRET)


def test_user_b_cannot_subscribe_to_user_a_private_stream(
    cableway_broadcasts: BroadcastCapture,
) -> None:
    room = Room.objects.create(name="shared")
    page_a = render_room(room, user_pk=1, user_stream="user-1")
    page_b = render_room(room, user_pk=2, user_stream="user-2")
    a_private, b_private = page_a.signed_streams[1], page_b.signed_streams[1]
    assert a_private not in page_b.signed_streams  # B's page never names A's stream

    b = cableway_broadcasts.connect(page_b.token)
    assert b.identifiers == {"user_id": 2}  # B's token is B, whatever B does with it
    assert b.subscribe(b_private)
    # what B could try without A's page: sign A's name with a guess, tamper with B's own
    forged_payload = sign_stream_name("user-1:notifications", "guessed-secret")
    assert not b.subscribe(forged_payload)
    tampered = b_private.replace(b_private.split("--")[0], a_private.split("--")[0])
    assert not b.subscribe(tampered)
    assert not b.subscribe("user-1:notifications")  # a cleartext name is not a signed one
    with pytest.raises(ConnectionRejected):  # nor can B make up a token for A
        cableway_broadcasts.connect(page_b.token[:-2] + "xx" if page_b.token else "x")

    a = cableway_broadcasts.connect(page_a.token)
    assert a.subscribe(a_private)
    broadcast("user-1", "notifications", data=turbo_stream.update("n", "for A only"))
    assert a.turbo_streams == [turbo_stream.update("n", "for A only")]
    assert b.turbo_streams == []
    assert b.streams == {"user-2:notifications"}


# --- model broadcasts ------------------------------------------------------------------------


def test_create_update_delete_broadcast_append_replace_remove(
    cableway_broadcasts: BroadcastCapture,
) -> None:
    room = Room.objects.create(name="r")
    message = Message.objects.create(room=room, text="one")
    message.text = "two <i>"
    message.save()
    pk = message.pk
    message.delete()
    stream = (room, "messages")
    assert cableway_broadcasts.on(stream) == [
        turbo_stream.append("messages", f'<p id="message_{pk}">one</p>\n'),
        turbo_stream.replace(f"message_{pk}", f'<p id="message_{pk}">two &lt;i&gt;</p>\n'),
        turbo_stream.remove(f"message_{pk}"),
    ]


def test_broadcasts_uses_the_instance_stream_and_the_plural_for_creates(
    cableway_broadcasts: BroadcastCapture,
) -> None:
    card = Card.objects.create(title="A & B")
    card.title = "C"
    card.save()
    cableway_broadcasts.assert_broadcast_on(
        "cards", turbo_stream.prepend("cards", f'<div id="card_{card.pk}">A &amp; B</div>\n')
    )
    cableway_broadcasts.assert_broadcasts(card, 1)
    cableway_broadcasts.assert_broadcast_on(card, lambda html: f'"card_{card.pk}">C<' in html)
    assert dom_id(card) == f"card_{card.pk}"
    assert dom_id(Card()) == "new_card"


def test_broadcasts_refreshes_to_sends_refresh_for_the_chosen_actions(
    cableway_broadcasts: BroadcastCapture,
) -> None:
    room = Room.objects.create(name="r")
    topic = Topic.objects.create(room=room, title="a")  # "create" is not among the actions
    cableway_broadcasts.assert_no_broadcasts(room)
    topic.title = "b"
    topic.save()
    topic.delete()
    assert cableway_broadcasts.on(room) == [turbo_stream.refresh()] * 2


def test_nothing_is_sent_before_commit_or_for_a_rollback(
    cableway_broadcasts: BroadcastCapture,
) -> None:
    room = Room.objects.create(name="r")
    with transaction.atomic():
        Message.objects.create(room=room, text="kept")
        cableway_broadcasts.assert_no_broadcasts()  # not before the commit
    cableway_broadcasts.assert_broadcasts((room, "messages"), 1)

    class Abort(Exception):
        pass

    def rolled_back() -> None:
        with transaction.atomic():
            Message.objects.create(room=room, text="rolled back")
            raise Abort

    with pytest.raises(Abort):
        rolled_back()
    with transaction.atomic():
        Message.objects.create(room=room, text="outer")
        try:
            with transaction.atomic():  # a savepoint rolled back inside a committed one
                Message.objects.create(room=room, text="inner")
                raise Abort
        except Abort:
            pass
    texts = [html for html in cableway_broadcasts.on((room, "messages"))]
    assert len(texts) == 2
    assert "outer" in str(texts[1])
    assert not any("rolled back" in str(t) or "inner" in str(t) for t in texts)


def test_a_failing_broadcast_is_logged_and_the_save_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/_broadcast"
    with override_settings(CABLEWAY={"secret": SECRET, "http_broadcast_url": url}):
        room = Room.objects.create(name="r")
        with caplog.at_level(logging.ERROR, logger="cableway.integration"):
            Message.objects.create(room=room, text="saved anyway")
        assert Message.objects.filter(text="saved anyway").exists()
        assert "broadcast" in caplog.text
        assert "BroadcastUnavailable" in caplog.text


def test_raise_broadcast_errors_raises() -> None:
    url = f"http://127.0.0.1:{closed_port()}/_broadcast"
    settings = {"secret": SECRET, "http_broadcast_url": url, "raise_broadcast_errors": True}
    with override_settings(CABLEWAY=settings):
        room = Room.objects.create(name="r")
        with pytest.raises(BroadcastUnavailable):
            Message.objects.create(room=room, text="x")


def test_without_capture_the_broadcast_reaches_the_endpoint_with_the_derived_key() -> None:
    with (
        stub_server() as stub,
        override_settings(CABLEWAY={"secret": SECRET, "http_broadcast_url": stub.url}),
    ):
        room = Room.objects.create(name="r")
        message = Message.objects.create(room=room, text="hi")
        (request,) = stub.requests
    assert request.headers["authorization"] == f"Bearer {derive_broadcast_key(SECRET)}"
    body = json.loads(request.body)
    assert body["stream"] == stream_name(room, "messages")
    assert json.loads(body["data"]) == turbo_stream.append(
        "messages", f'<p id="message_{message.pk}">hi</p>\n'
    )


def test_settings_fall_back_to_the_server_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYCABLE_SECRET", "from-env")
    monkeypatch.setenv("ANYCABLE_WEBSOCKET_URL", "wss://cable.example/ws")
    with override_settings(CABLEWAY={"jwt_secret": "jwt-only"}):
        settings = get_settings()
    assert settings.signing_secret == "from-env"
    assert settings.token_secret == "jwt-only"
    assert settings.broadcast_url == "https://cable.example/_broadcast"
    assert settings.sse_url == "https://cable.example/events"
    with override_settings(CABLEWAY={"secert": "typo"}), pytest.raises(ValueError, match="secert"):
        get_settings()


# --- responses -------------------------------------------------------------------------------


def test_turbo_stream_response_and_rendering() -> None:
    room = Room.objects.create(name="r")
    message = Message.objects.create(room=room, text=USER_TEXT)
    html = render_turbo_stream(
        "append", "messages", "djangoapp/_message.html", {"message": message}
    )
    assert html == turbo_stream.append("messages", f'<p id="message_{message.pk}">{ESCAPED}</p>\n')
    response = TurboStreamResponse(html + turbo_stream.remove("form_errors"))
    assert response["Content-Type"] == "text/vnd.turbo-stream.html; charset=utf-8"
    assert response.content.decode().endswith('target="form_errors"></turbo-stream>')
    request = RequestFactory().post("/")
    template_response = TurboStreamTemplateResponse(
        request, "djangoapp/create.turbo_stream.html", {"message": message}
    ).render()
    assert template_response["Content-Type"] == "text/vnd.turbo-stream.html; charset=utf-8"
    assert template_response.content.decode().strip() == html
    turbo = RequestFactory().post("/", HTTP_ACCEPT="text/vnd.turbo-stream.html, text/html")
    assert accepts_turbo_stream(turbo)
    assert not accepts_turbo_stream(RequestFactory().post("/", HTTP_ACCEPT="text/html"))


# --- manage.py cableway ----------------------------------------------------------------------


def test_manage_py_cableway_starts_the_server_with_the_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.core.management import call_command

    for name in ("ANYCABLE_TURBO_STREAMS", "ANYCABLE_SSE", "ANYCABLE_PORT", "ANYCABLE_PATH"):
        monkeypatch.delenv(name, raising=False)
    with override_settings(
        CABLEWAY={"secret": SECRET, "websocket_url": "ws://localhost:9123/live", "sse_path": "/sse"}
    ):
        call_command("cableway", "--print-config")
    toml = capsys.readouterr().out
    # AnyCable-Go 1.6's layout: [ws] paths, [streams] turbo, [sse] enabled/path
    assert "port = 9123" in toml
    assert '[ws]\npaths = ["/live"]' in toml
    assert "[streams]" in toml
    assert "turbo = true" in toml
    assert '[sse]\nenabled = true\npath = "/sse"' in toml
    assert SECRET not in toml  # secrets are passed, and redacted when printed
    assert 'secret = "[REDACTED]"' in toml


def test_manage_py_cableway_server_environment() -> None:
    from cableway.django.management.commands.cableway import server_environment
    from cableway.toolkit.integration import IntegrationSettings

    settings = IntegrationSettings(
        secret="s", websocket_url="wss://cable.example:8443/cable", jwt_param="token"
    )
    env = server_environment(settings, {"ANYCABLE_SSE": "false"})
    assert env["ANYCABLE_SECRET"] == "s"
    assert env["ANYCABLE_PORT"] == "8443"
    assert env["ANYCABLE_JWT_PARAM"] == "token"
    assert env["ANYCABLE_SSE"] == "false"  # the environment keeps its say
    assert env["ANYCABLE_TURBO_STREAMS"] == "true"
    assert "ANYCABLE_JWT_SECRET" not in env  # the server applies its own fallbacks
