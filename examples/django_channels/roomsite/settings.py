"""Settings of the Cableway channels example (a development set-up: DEBUG, SQLite)."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-cableway-example-only")
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "cableway.django",  # Channel.broadcast reads settings.CABLEWAY
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rooms.apps.RoomsConfig",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "roomsite.urls"
ASGI_APPLICATION = "roomsite.asgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ROOMS_DATABASE", BASE_DIR / "db.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# Cableway: the server's option names; what is left out comes from the server's own
# variables (ANYCABLE_WEBSOCKET_URL, default ws://localhost:8080/cable, with /_broadcast on
# the same host; ANYCABLE_HTTP_BROADCAST_URL...). The same secret signs the server's RPC
# calls (rooms/cable.py) and this app's broadcasts.
CABLEWAY = {"secret": os.environ["ANYCABLE_SECRET"]}
