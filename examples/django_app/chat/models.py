from __future__ import annotations

from django.db import models

from .live import room_gid_param


class Room(models.Model):
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name

    def to_gid_param(self) -> str:  # names the stream as Rails would
        return room_gid_param(self.pk)  # cableway


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    text = models.TextField()

    def __str__(self) -> str:
        return self.text
