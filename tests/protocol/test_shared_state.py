"""What sessions share instead of keeping a copy each (memory per idle connection).

Many clients subscribe with the same identifier (a page's Turbo stream): their sessions
keep one identifier, one stream name and one resolved subscription between them, and
the identifier keeps working exactly as the client sent it. What a subscription allows
(whispers, presence) is resolved again when a command asks, with the same answer.
"""

from __future__ import annotations

import json

from cableway.protocol.channels import REMEMBERED_LENGTH, StreamPolicy, resolve
from cableway.protocol.events import Publish, SendMessage, StreamAdded

from .helpers import POLICY, STREAMS_SECRET, open_connection, sent, subscribe, turbo_identifier


def _subscribed(identifier: str, policy: StreamPolicy = POLICY) -> tuple[str, str]:
    """(identifier, stream) a new session keeps after subscribing with a fresh copy of
    ``identifier`` (decoded from its own message, as from a client)."""
    conn = open_connection(policy=policy)
    conn.receive_message(subscribe(identifier).encode(), now=1.0)
    events = conn.events()
    assert isinstance(events[0], StreamAdded)
    assert sent(events) == [
        json.dumps(
            {"type": "confirm_subscription", "identifier": identifier}, separators=(",", ":")
        )
    ]
    ((kept, stream),) = conn.subscriptions.items()
    assert kept == identifier
    return kept, stream


def test_sessions_subscribed_with_equal_identifiers_keep_one_copy() -> None:
    identifier = turbo_identifier("rooms/1")
    first, second = _subscribed(identifier), _subscribed(identifier)
    assert first[0] is second[0]  # one identifier string for both sessions
    assert first[1] is second[1]  # one stream name


def test_a_long_identifier_is_kept_as_sent_and_not_remembered() -> None:
    identifier = turbo_identifier("x" * REMEMBERED_LENGTH)
    assert len(identifier) > REMEMBERED_LENGTH
    first, second = _subscribed(identifier), _subscribed(identifier)
    assert first == second
    assert first[0] is not second[0]


def test_an_identifier_accepted_before_a_secret_rotation_is_rejected_after() -> None:
    identifier = turbo_identifier("rooms/2")
    assert resolve(identifier, POLICY) is not None
    rotated = StreamPolicy(turbo_streams=True, turbo_secret="another-secret")
    assert resolve(identifier, rotated) is None
    conn = open_connection(policy=rotated)
    conn.receive_message(subscribe(identifier), now=1.0)
    assert "reject_subscription" in sent(conn.events())[0]
    assert conn.subscriptions == {}


def test_whispers_and_presence_follow_the_subscription_without_a_copy_per_session() -> None:
    policy = StreamPolicy(public_streams=True, streams_secret=STREAMS_SECRET)
    identifier = json.dumps({"channel": "$pubsub", "stream_name": "lobby"})
    conn = open_connection(policy=policy)
    conn.receive_message(subscribe(identifier), now=1.0)
    conn.events()
    whisper = {"command": "whisper", "identifier": identifier, "data": {"typing": True}}
    conn.receive_message(json.dumps(whisper), now=1.1)
    (published,) = conn.events()
    assert isinstance(published, Publish)
    assert published.publication.stream == "lobby"
    turbo = turbo_identifier("rooms/3")
    conn.receive_message(subscribe(turbo), now=1.2)
    conn.events()
    whisper["identifier"] = turbo  # Turbo streams allow no whispers
    conn.receive_message(json.dumps(whisper), now=1.3)
    assert not any(isinstance(e, Publish | SendMessage) for e in conn.events())
