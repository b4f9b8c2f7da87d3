"""Flask + Cableway chat rooms (docs/recipes/flask.md), runnable.

From the repository root, with Cableway running (``ANYCABLE_SECRET=change-me cableway
--turbo_streams``)::

    ANYCABLE_SECRET=change-me flask --app examples.flask_app.app run --port 5000

then open http://localhost:5000/rooms/1 in two windows.
"""

from __future__ import annotations

from flask import Flask, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from .live import Cableway, on_message_saved, page_context


def create_app(cableway: Cableway | None = None) -> Flask:
    """The application (``flask --app`` finds this factory). ``cableway`` defaults to the
    environment (``ANYCABLE_SECRET``, ``CABLEWAY_URL``)."""
    cableway = cableway or Cableway.from_env()
    broadcaster = cableway.broadcaster()  # cableway
    messages: dict[int, list[str]] = {}  # stands in for your database
    app = Flask(__name__)

    @app.get("/rooms/<int:room_id>")
    def room(room_id: int) -> str:
        return render_template(
            "room.html",
            room_id=room_id,
            messages=messages.get(room_id, []),
            **page_context(cableway, room_id, user_id=1),  # cableway: your user's id
        )

    @app.post("/rooms/<int:room_id>/messages")
    def create_message(room_id: int) -> Response:
        text = request.form["text"]
        messages.setdefault(room_id, []).append(text)
        html = render_template("_message.html", text=text)  # Jinja escapes the user's text
        on_message_saved(broadcaster, room_id, html)  # cableway
        return redirect(url_for("room", room_id=room_id), 303)  # Turbo follows the redirect

    return app
