"""Flask + Cableway chat rooms (docs/recipes/flask.md), runnable.

From the repository root, with Cableway running (``ANYCABLE_SECRET=change-me cableway
--turbo_streams``)::

    ANYCABLE_SECRET=change-me flask --app examples.flask_app.app run --port 5000

then open http://localhost:5000/rooms/1 in two windows (``?sse=1``: over Server-Sent Events).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from cableway import turbo_stream
from cableway.flask import Cableway

TURBO_JS = "https://cdn.jsdelivr.net/npm/@hotwired/turbo-rails@8.0.23/+esm"


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    """The application (``flask --app`` finds this factory). Cableway's settings are the
    ``CABLEWAY_*`` keys of ``config``, else the ``ANYCABLE_*`` environment variables the
    server reads (``ANYCABLE_SECRET``, ``ANYCABLE_WEBSOCKET_URL``...)."""
    app = Flask(__name__)
    app.config["TURBO_JS_URL"] = os.environ.get("TURBO_JS_URL", TURBO_JS)
    app.config.update(config or {})
    cable = Cableway(app, identifiers=lambda: {"user_id": 1})  # your user's id
    messages: dict[int, list[str]] = {}  # stands in for your database

    @app.get("/rooms/<int:room_id>")
    def room(room_id: int) -> str:
        return render_template(
            "room.html",
            room_id=room_id,
            messages=messages.get(room_id, []),
            sse=request.args.get("sse") == "1",
        )

    @app.post("/rooms/<int:room_id>/messages")
    def create_message(room_id: int) -> Response:
        text = request.form["text"]
        messages.setdefault(room_id, []).append(text)
        html = render_template("_message.html", text=text)  # Jinja escapes the user's text
        cable.broadcast(("room", room_id, "messages"), turbo_stream.append("messages", html))
        return redirect(url_for("room", room_id=room_id), 303)  # Turbo follows the redirect

    return app
