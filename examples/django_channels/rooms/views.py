from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from cableway.django.conf import get_settings

from .models import Room

#: The stock Action Cable client (what Rails apps ship), as an ES module.
ACTIONCABLE_JS = "https://cdn.jsdelivr.net/npm/@rails/actioncable@8.1.400/+esm"


@login_required
def room(request: HttpRequest, slug: str) -> HttpResponse:
    room = get_object_or_404(Room, slug=slug)
    context = {
        "room": room,
        "rooms": Room.objects.order_by("name"),
        "messages": room.messages.select_related("author"),
        # No token in the URL: the server calls ChatConnection.connect, which reads the
        # session cookie the browser sends with the WebSocket handshake.
        "cable_url": get_settings().websocket_url,
        "actioncable_js": ACTIONCABLE_JS,
    }
    return render(request, "rooms/room.html", context)
