"""A first room, so that /rooms/1/ works right after `migrate`."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def create_lobby(apps: Any, schema_editor: Any) -> None:
    apps.get_model("chat", "Room").objects.get_or_create(pk=1, defaults={"name": "Lobby"})


class Migration(migrations.Migration):
    dependencies = (("chat", "0001_initial"),)

    operations = (migrations.RunPython(create_lobby, migrations.RunPython.noop),)
