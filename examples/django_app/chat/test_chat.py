"""The example's own tests, with Cableway's pytest plugin: no server, no browser.

``cableway_broadcasts`` captures what the models broadcast after commit; ``open_page`` is a
simulated browser connected and subscribed exactly as the rendered page would be.
"""

from __future__ import annotations

from django.test import Client

from cableway.testing import BroadcastCapture

from .models import Message, Room


def test_a_message_posted_in_one_page_reaches_the_others(
    cableway_broadcasts: BroadcastCapture,
) -> None:
    client = Client()
    page = cableway_broadcasts.open_page(client.get("/rooms/1/").content.decode())
    room = Room.objects.get(pk=1)

    response = client.post("/rooms/1/", {"text": "<b>hi</b>"})

    assert response.status_code == 302
    message = Message.objects.get(text="<b>hi</b>")
    cableway_broadcasts.assert_broadcasts((room, "messages"), 1)
    assert page.turbo_streams == [
        '<turbo-stream action="append" target="messages"><template>'
        f'<p id="message_{message.pk}">&lt;b&gt;hi&lt;/b&gt;</p>\n</template></turbo-stream>'
    ]

    pk = message.pk
    message.delete()
    assert page.turbo_streams[-1] == (
        f'<turbo-stream action="remove" target="message_{pk}"></turbo-stream>'
    )
