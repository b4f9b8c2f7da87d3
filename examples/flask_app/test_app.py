"""The example's own tests, with Cableway's pytest plugin: no server, no browser.

``cableway_broadcasts`` captures what the app broadcasts; ``open_page`` is a simulated
browser connected and subscribed exactly as the rendered page would be. Run:
``pytest examples/flask_app`` (tests/interop/test_examples.py runs it too).
"""

from __future__ import annotations

from cableway.testing import BroadcastCapture, read_page

from .app import create_app

CONFIG = {"CABLEWAY_SECRET": "test-secret", "TESTING": True}


def test_a_message_posted_in_one_page_reaches_the_others(
    cableway_broadcasts: BroadcastCapture,
) -> None:
    client = create_app(CONFIG).test_client()
    page = cableway_broadcasts.open_page(client.get("/rooms/4").get_data(as_text=True))
    assert page.streams == {"room:4:messages"}

    response = client.post("/rooms/4/messages", data={"text": "<b>hi</b>"})

    assert response.status_code == 303
    cableway_broadcasts.assert_broadcasts("room:4:messages", 1)
    [update] = page.turbo_streams
    assert update.startswith('<turbo-stream action="append" target="messages">')
    assert "<p>&lt;b&gt;hi&lt;/b&gt;</p>" in update
    cableway_broadcasts.assert_no_broadcasts("room:5:messages")


def test_the_page_identifies_its_user() -> None:
    client = create_app(CONFIG).test_client()
    page = read_page(client.get("/rooms/1").get_data(as_text=True))
    capture = BroadcastCapture()
    assert capture.connect(page.token()).identifiers == {"user_id": 1}
