"""Broadcast each new message after its transaction commits (connected in ChatConfig.ready)."""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.template.loader import render_to_string

from cableway.broadcaster import Broadcaster

from .live import Cableway, on_message_saved
from .models import Message


@functools.cache
def broadcaster() -> Broadcaster:
    return Cableway(settings.CABLEWAY_SECRET, settings.CABLEWAY_URL).broadcaster()  # cableway


@receiver(post_save, sender=Message)
def broadcast_new_message(
    sender: type[Message], instance: Message, created: bool, **_: Any
) -> None:
    if not created:
        return
    # Django's template engine escapes the user's text
    html = render_to_string("chat/_message.html", {"message": instance})
    room = instance.room
    # after the commit, so that a page reload already shows the message
    transaction.on_commit(lambda: on_message_saved(broadcaster(), room, html))  # cableway
