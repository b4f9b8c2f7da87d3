"""The example's own tests, with Cableway's pytest plugin: no server, no browser.

``cableway_broadcasts`` captures what the app broadcasts; ``open_page`` is a simulated
browser connected and subscribed exactly as the rendered page would be. Run:
``pytest examples/fastapi_app`` (tests/interop/test_examples.py runs it too).
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from cableway.integration import IntegrationSettings
from cableway.testing import BroadcastCapture, read_page

from .main import create_app

SETTINGS = IntegrationSettings(secret="test-secret")


def test_a_message_posted_in_one_page_reaches_the_others(
    cableway_broadcasts: BroadcastCapture,
) -> None:
    with TestClient(create_app(SETTINGS)) as client:
        page = cableway_broadcasts.open_page(client.get("/rooms/2").text)
        assert page.identifiers == {"user_id": 1}
        assert page.streams == {"room:2:messages"}

        response = client.post(
            "/rooms/2/messages", data={"text": "<b>hi</b>"}, follow_redirects=False
        )

    assert response.status_code == 303
    cableway_broadcasts.assert_broadcast_on(
        "room:2:messages",
        '<turbo-stream action="append" target="messages"><template>'
        "<p>&lt;b&gt;hi&lt;/b&gt;</p></template></turbo-stream>",
    )
    assert page.turbo_streams == cableway_broadcasts.on("room:2:messages")


def test_the_sse_variant_needs_no_action_cable_client() -> None:
    with TestClient(create_app(SETTINGS)) as client:
        page = read_page(client.get("/rooms/2", params={"sse": "1"}).text)
    assert page.cable_streams == []
    [url] = page.sse_urls
    assert url.startswith("http://localhost:8080/events?turbo_signed_stream_name=")
