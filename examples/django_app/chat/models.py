from __future__ import annotations

from django.db import models

from cableway.django.broadcasts import broadcasts_to


class Room(models.Model):
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name


# After each commit: a new message is appended to #messages of every page showing its room
# (rendered with chat/_message.html), an edit replaces #message_<pk>, a delete removes it.
@broadcasts_to(lambda message: (message.room, "messages"))  # cableway
class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    text = models.TextField()

    def __str__(self) -> str:
        return self.text
