"""FastAPI + Cableway chat rooms (docs/recipes/fastapi.md), runnable.

From the repository root, with Cableway running (``ANYCABLE_SECRET=change-me cableway
--turbo_streams``)::

    ANYCABLE_SECRET=change-me uvicorn --factory examples.fastapi_app.main:create_app --port 8000

then open http://localhost:8000/rooms/1 in two windows (``?sse=1`` for the SSE variant).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from cableway import turbo_stream
from cableway.fastapi import Cableway, Publisher
from cableway.integration import IntegrationSettings

TURBO_JS = "https://cdn.jsdelivr.net/npm/@hotwired/turbo-rails@8.0.23/+esm"
TEMPLATES = Path(__file__).resolve().parent / "templates"


def create_app(settings: IntegrationSettings | None = None) -> FastAPI:
    """The application. ``settings`` default to the ``ANYCABLE_*`` environment variables the
    server reads (``ANYCABLE_SECRET``, ``ANYCABLE_WEBSOCKET_URL``...)."""
    cable = Cableway(settings, identifiers=lambda request: {"user_id": 1})  # your user's id
    app = FastAPI(lifespan=cable.lifespan)  # the lifespan closes the broadcaster's connections
    cable.init_app(app)  # for the Publisher dependency
    templates = cable.templates(Jinja2Templates(directory=TEMPLATES))
    templates.env.globals["turbo_js"] = os.environ.get("TURBO_JS_URL", TURBO_JS)
    messages: dict[int, list[str]] = {}  # stands in for your database

    @app.get("/rooms/{room_id}", response_class=HTMLResponse)
    async def room(request: Request, room_id: int, sse: bool = False) -> HTMLResponse:
        context = {"room_id": room_id, "messages": messages.get(room_id, []), "sse": sse}
        return templates.TemplateResponse(request, "room.html", context)

    @app.post("/rooms/{room_id}/messages")
    async def create_message(
        room_id: int, text: Annotated[str, Form()], live: Publisher
    ) -> RedirectResponse:
        messages.setdefault(room_id, []).append(text)
        html = templates.get_template("_message.html").render(text=text)  # escaped
        await live.broadcast(("room", room_id, "messages"), turbo_stream.append("messages", html))
        return RedirectResponse(f"/rooms/{room_id}", status_code=303)  # Turbo follows it

    return app
