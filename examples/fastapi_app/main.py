"""FastAPI + Cableway chat rooms (docs/recipes/fastapi.md), runnable.

From the repository root, with Cableway running (``ANYCABLE_SECRET=change-me cableway
--turbo_streams``)::

    ANYCABLE_SECRET=change-me uvicorn --factory examples.fastapi_app.main:create_app --port 8000

then open http://localhost:8000/rooms/1 in two windows (``?sse=1`` for the SSE variant).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Form
from fastapi.responses import HTMLResponse, RedirectResponse

from .live import Cableway, on_message_saved, render_page


def create_app(cableway: Cableway | None = None) -> FastAPI:
    """The application. ``cableway`` defaults to the environment (``ANYCABLE_SECRET``,
    ``CABLEWAY_URL``)."""
    cableway = cableway or Cableway.from_env()
    broadcaster = cableway.broadcaster()  # cableway
    messages: dict[int, list[str]] = {}  # stands in for your database
    app = FastAPI()

    @app.get("/rooms/{room_id}", response_class=HTMLResponse)
    async def room(room_id: int, sse: bool = False) -> str:
        # cableway: user_id is your user's id
        return render_page(cableway, room_id, messages.get(room_id, []), user_id=1, sse=sse)

    @app.post("/rooms/{room_id}/messages")
    async def create_message(room_id: int, text: Annotated[str, Form()]) -> RedirectResponse:
        messages.setdefault(room_id, []).append(text)
        await on_message_saved(broadcaster, room_id, text)  # cableway
        return RedirectResponse(f"/rooms/{room_id}", status_code=303)  # Turbo follows it

    return app
