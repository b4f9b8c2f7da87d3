from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from .models import Message, Room


def room(request: HttpRequest, pk: int) -> HttpResponse:
    room = get_object_or_404(Room, pk=pk)
    if request.method == "POST":
        Message.objects.create(room=room, text=request.POST["text"])  # broadcasts on commit
        return redirect("room", pk=pk)  # Turbo follows the redirect
    return render(request, "chat/room.html", {"room": room, "sse": request.GET.get("sse") == "1"})
