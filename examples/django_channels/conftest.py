"""Django for the example's tests (``pytest`` from examples/django_channels): this
project's settings with an in-memory database, migrated once."""

from __future__ import annotations

import os

import django
from django.core.management import call_command
from django.test.utils import setup_test_environment

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "roomsite.settings")
os.environ.setdefault("ANYCABLE_SECRET", "test-secret")
os.environ["ROOMS_DATABASE"] = ":memory:"
django.setup()
setup_test_environment()  # what Django's test runner does: test mail, 'testserver' host...
call_command("migrate", verbosity=0)
