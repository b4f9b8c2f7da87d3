"""FastAPI with Cableway inside it: no second server, one process, one port.

The Cableway ASGI app is mounted at ``/cable``: the WebSocket endpoint is ``/cable/``, the
event stream ``/cable/events``, health ``/cable/health``. Messages posted to the app are
broadcast in-process with ``await cable.broadcast(...)`` (no HTTP hop, no broadcast key).

From the repository root::

    pip install -e . fastapi uvicorn
    ANYCABLE_SECRET=change-me uvicorn --factory examples.asgi_fastapi.main:create_app --port 8000

then open http://localhost:8000/rooms/1 in two windows and post a message in one.
Configuration comes from the same ``ANYCABLE_*`` variables as the standalone server.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import escape

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from cableway import turbo_stream
from cableway.asgi import CablewayApp
from cableway.config import Config, load_config
from cableway.streams import signed_stream_name, stream_name_from

MOUNT = "/cable"

PAGE = """<!doctype html>
<html>
<head>
  <meta charset="utf-8">
  <title>Room {room_id}</title>
  <meta name="action-cable-url" content="{mount}/">
  <script type="module" src="https://cdn.jsdelivr.net/npm/@hotwired/turbo-rails@8.0.23/+esm"></script>
</head>
<body>
  <h1>Room {room_id}</h1>
  <turbo-cable-stream-source channel="Turbo::StreamsChannel"
    signed-stream-name="{signed}"></turbo-cable-stream-source>
  <div id="messages">{messages}</div>
  <form onsubmit="event.preventDefault(); fetch('/rooms/{room_id}/messages', {{method: 'POST',
    headers: {{'Content-Type': 'application/json'}},
    body: JSON.stringify({{text: this.text.value}})}}); this.reset();">
    <input name="text" autocomplete="off"> <button>Send</button>
  </form>
</body>
</html>
"""


class NewMessage(BaseModel):
    text: str


def default_config() -> Config:
    """``ANYCABLE_*`` from the environment, served below the mount point."""
    config = load_config([], os.environ)
    return dataclasses.replace(config, path=("/",), turbo_streams=True)


def room_stream(room_id: int) -> str:
    return stream_name_from("room", room_id, "messages")


def create_app(config: Config | None = None) -> FastAPI:
    config = config or default_config()
    cable = CablewayApp(config)
    secret = config.turbo_streams_secret or config.streams_secret or ""
    messages: dict[int, list[str]] = {}  # stands in for your database

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # a mounted app gets no lifespan events of its own: start and stop it here
        cable.start()
        yield
        await cable.aclose()

    app = FastAPI(lifespan=lifespan)
    app.state.cable = cable

    @app.get("/rooms/{room_id}", response_class=HTMLResponse)
    async def room(room_id: int) -> str:
        items = "".join(f"<p>{escape(text)}</p>" for text in messages.get(room_id, []))
        signed = signed_stream_name("room", room_id, "messages", secret=secret)
        return PAGE.format(room_id=room_id, mount=MOUNT, signed=escape(signed), messages=items)

    @app.post("/rooms/{room_id}/messages", status_code=201)
    async def create_message(room_id: int, message: NewMessage) -> dict[str, int]:
        messages.setdefault(room_id, []).append(message.text)
        html = turbo_stream.append("messages", f"<p>{escape(message.text)}</p>")
        # Turbo's stream source expects the HTML as a JSON string, as Rails broadcasts it
        await cable.broadcast(room_stream(room_id), json.dumps(html))
        return {"count": len(messages[room_id])}

    app.mount(MOUNT, cable)
    return app
