"""The ASGI application: the channels RPC endpoints under /_anycable/, Django for the rest.

Run it with an ASGI server (``uvicorn roomsite.asgi:application``) and point Cableway's
``--rpc_host`` at ``http://<this host>/_anycable``. The RPC calls are dispatched before
Django's middleware: they carry no CSRF token and must not be redirected.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "roomsite.settings")
django_app = get_asgi_application()

from rooms.cable import cable  # noqa: E402  (after Django is set up)

rpc_app = cable.asgi()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"].startswith("/_anycable/"):
        await rpc_app(scope, receive, send)
    else:
        await django_app(scope, receive, send)
