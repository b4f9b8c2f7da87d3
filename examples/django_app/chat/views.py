from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from .live import Cableway, page_context
from .models import Message, Room


def room(request: HttpRequest, pk: int) -> HttpResponse:
    room = get_object_or_404(Room, pk=pk)
    if request.method == "POST":
        Message.objects.create(room=room, text=request.POST["text"])
        return redirect("room", pk=pk)  # Turbo follows the redirect
    cableway = Cableway(settings.CABLEWAY_SECRET, settings.CABLEWAY_URL)
    context = page_context(cableway, room, user_id=request.user.pk)  # cableway
    return render(request, "chat/room.html", {"room": room, **context})
