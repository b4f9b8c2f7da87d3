"""Where the page loads Turbo from (a CDN; ``TURBO_JS_URL`` to serve it yourself)."""

from __future__ import annotations

import os

from django.http import HttpRequest

TURBO_JS = "https://cdn.jsdelivr.net/npm/@hotwired/turbo-rails@8.0.23/+esm"


def turbo(request: HttpRequest) -> dict[str, str]:
    return {"turbo_js": os.environ.get("TURBO_JS_URL", TURBO_JS)}
