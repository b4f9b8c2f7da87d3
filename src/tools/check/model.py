"""What the checker is told (:class:`Options`) and what it says (:class:`Result`)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ...auth.keys import derive_broadcast_key

PASS, FAIL, SKIP, NOT_RUN = "PASS", "FAIL", "SKIP", "NOT RUN"
ACTIONCABLE, ANYCABLE = "actioncable", "anycable"
PROFILES = (ACTIONCABLE, ANYCABLE)


@dataclass(frozen=True, slots=True)
class Options:
    """What the checker is told about the server."""

    url: str
    profile: str = ACTIONCABLE
    secret: str | None = None
    turbo_secret: str | None = None
    streams_secret: str | None = None
    jwt_key: str | None = None
    jwt_param: str = "jid"
    broadcast_url: str | None = None
    broadcast_key: str | None = None
    channel: str | None = None
    action: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    sse_path: str = "/events"
    streams_whisper: bool = False
    shutdown_command: str | None = None
    fuzz: bool = False
    origin: str | None = None
    ping_interval: float = 3.0
    timeout: float = 5.0
    insecure: bool = False

    # AnyCable's fallbacks: each secret defaults to the application secret (--secret)
    @property
    def turbo_key(self) -> str | None:
        return self.turbo_secret or self.streams_secret or self.secret

    @property
    def streams_key(self) -> str | None:
        return self.streams_secret or self.secret

    @property
    def jwt_secret(self) -> str | None:
        return self.jwt_key or self.secret

    @property
    def broadcast_auth(self) -> str | None:
        if self.broadcast_key:
            return None if self.broadcast_key.lower() == "none" else self.broadcast_key
        return derive_broadcast_key(self.secret) if self.secret else None

    @property
    def origin_header(self) -> str:
        """``--origin``, else the URL's own origin (what a browser on that host sends)."""
        if self.origin is not None:
            return self.origin
        parts = urlsplit(self.url)
        return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"


@dataclass(frozen=True, slots=True)
class Result:
    """One check's verdict, with the evidence when it failed."""

    name: str
    status: str
    detail: str = ""
    profile: str = ACTIONCABLE
    duration: float = 0.0
    sent: tuple[str, ...] = ()
    received: tuple[str, ...] = ()
    unusable: bool = False

    def as_dict(self) -> dict[str, object]:
        record: dict[str, object] = {
            "check": self.name,
            "status": self.status.lower().replace(" ", "_"),
            "profile": self.profile,
            "duration": round(self.duration, 3),
            "detail": self.detail,
        }
        if self.status == FAIL:  # JSON messages as JSON values, the rest as text
            record["sent"] = [_as_data(text) for text in self.sent]
            record["received"] = [_as_data(text) for text in self.received]
        return record


def _as_data(text: str) -> object:
    if text.startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def new_stream() -> str:
    return f"cableway-check/{secrets.token_hex(4)}"
