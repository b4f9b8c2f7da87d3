from __future__ import annotations

import json

from cableway.auth.signed_streams import sign_stream_name
from cableway.protocol.channels import StreamPolicy
from cableway.protocol.connection import CableConnection, SessionSettings
from cableway.protocol.events import Event, SendMessage

STREAMS_SECRET = "streams-secret"
TURBO_SECRET = "s3Krit"

POLICY = StreamPolicy(
    streams_secret=STREAMS_SECRET,
    turbo_streams=True,
    turbo_secret=TURBO_SECRET,
    public_streams=False,
)


def turbo_identifier(stream: str, secret: str = TURBO_SECRET) -> str:
    return json.dumps(
        {
            "channel": "Turbo::StreamsChannel",
            "signed_stream_name": sign_stream_name(stream, secret),
        },
        separators=(",", ":"),
    )


def subscribe(identifier: str) -> str:
    return json.dumps({"command": "subscribe", "identifier": identifier})


def sent(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, SendMessage)]


def open_connection(
    *, policy: StreamPolicy = POLICY, ping_interval: float = 3.0, jitter: float = 0.5
) -> CableConnection:
    conn = CableConnection(
        sid="sid-1",
        settings=SessionSettings(ping_interval=ping_interval, policy=policy),
        now=0.0,
        ping_jitter=jitter,
    )
    conn.accept('{"user_id":1}')
    conn.events()
    return conn
