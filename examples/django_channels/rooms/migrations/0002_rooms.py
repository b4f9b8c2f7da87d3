"""The rooms a fresh database starts with."""

from __future__ import annotations

from typing import Any

from django.db import migrations

ROOMS = [("lobby", "Lobby"), ("random", "Random")]


def create_rooms(apps: Any, schema_editor: Any) -> None:
    Room = apps.get_model("rooms", "Room")
    for slug, name in ROOMS:
        Room.objects.get_or_create(slug=slug, defaults={"name": name})


class Migration(migrations.Migration):
    dependencies = (("rooms", "0001_initial"),)
    operations = (migrations.RunPython(create_rooms, migrations.RunPython.noop),)
