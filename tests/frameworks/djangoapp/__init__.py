"""A tiny Django app for tests/frameworks/test_django.py (configured by ``setup()``)."""

from __future__ import annotations

SECRET = "django-test-secret"


def setup(**cableway: object) -> None:
    """Configure Django once for this process: in-memory SQLite, this app, cableway.django."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only",
        INSTALLED_APPS=["cableway.django", "tests.frameworks.djangoapp"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        TEMPLATES=[
            {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}
        ],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
        CABLEWAY={"secret": SECRET, "websocket_url": "ws://cable.example:8080/cable", **cableway},
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)
