from __future__ import annotations

from django.db import models

from cableway.django.broadcasts import broadcasts, broadcasts_refreshes_to, broadcasts_to


class Room(models.Model):
    name = models.CharField(max_length=100)

    class Meta:
        app_label = "djangoapp"


@broadcasts_to(lambda message: (message.room, "messages"))
class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    text = models.TextField()

    class Meta:
        app_label = "djangoapp"


@broadcasts(inserts_by="prepend", template="djangoapp/card.html")
class Card(models.Model):
    title = models.CharField(max_length=100)

    class Meta:
        app_label = "djangoapp"


@broadcasts_refreshes_to("room", actions=("update", "delete"))
class Topic(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE)
    title = models.CharField(max_length=100)

    class Meta:
        app_label = "djangoapp"
