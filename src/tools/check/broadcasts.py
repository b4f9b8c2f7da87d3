"""The checks of delivery to subscribers: the broadcast endpoint's round trip, unsubscribe,
whisper and presence."""

from __future__ import annotations

import secrets

from .client import (
    CheckFailed,
    Transcript,
    compact,
    pubsub_identifier,
    turbo_identifier,
)
from .harness import Harness
from .model import new_stream


async def broadcast(checker: Harness, transcript: Transcript) -> str:
    secret = checker.options.turbo_key
    assert secret is not None
    stream = new_stream()
    nonce = secrets.token_hex(8)
    identifier = turbo_identifier(stream, secret)
    async with checker.session(transcript) as client:
        await client.confirmed(identifier)
        status = await checker.broadcast(transcript, stream, {"check": nonce})
        message = await client.expect(
            "broadcast", lambda m: m.get("identifier") == identifier and "message" in m
        )
        if message["message"] != {"check": nonce}:
            raise CheckFailed(f"unexpected broadcast payload: {compact(message):.120}")
    return f"POST answered {status}; the subscriber got the message"


async def unsubscribe(checker: Harness, transcript: Transcript) -> str:
    secret = checker.options.turbo_key
    assert secret is not None
    stream = new_stream()
    identifier = turbo_identifier(stream, secret)
    async with checker.session(transcript) as leaver, checker.session(transcript) as witness:
        await leaver.confirmed(identifier)
        await witness.confirmed(identifier)
        await leaver.send({"command": "unsubscribe", "identifier": identifier})
        await checker.settle(leaver)
        await checker.broadcast(transcript, stream, {"check": "after unsubscribe"})
        await witness.expect(
            "broadcast at the witness", lambda m: m.get("identifier") == identifier
        )
        late = [
            m
            for m in await leaver.messages_for(min(0.5, checker.options.timeout))
            if m.get("identifier") == identifier
        ]
        if late:
            raise CheckFailed(f"delivered after unsubscribe: {compact(late[0]):.120}")
    return "a subscriber still on the stream got the broadcast; the one that left did not"


async def whisper(checker: Harness, transcript: Transcript) -> str:
    secret = checker.options.streams_key
    assert secret is not None
    identifier = pubsub_identifier(new_stream(), secret)
    nonce = secrets.token_hex(6)
    async with checker.session(transcript) as sender, checker.session(transcript) as peer:
        await sender.confirmed(identifier)
        await peer.confirmed(identifier)
        await sender.send(
            {"command": "whisper", "identifier": identifier, "data": {"check": nonce}}
        )
        try:
            message = await peer.expect(
                "whisper at the other subscriber",
                lambda m: m.get("identifier") == identifier and "message" in m,
            )
        except CheckFailed as exc:
            raise CheckFailed(
                f"{exc} (the server was said to allow whisper on signed streams)"
            ) from None
        if message["message"] != {"check": nonce}:
            raise CheckFailed(f"unexpected whisper: {compact(message):.120}")
        echoed = [
            m
            for m in await sender.messages_for(min(0.5, checker.options.timeout))
            if m.get("identifier") == identifier and "message" in m
        ]
        if echoed:
            raise CheckFailed("the whisper came back to its sender")
    return "the other subscriber got the whisper, the sender did not"


async def presence(checker: Harness, transcript: Transcript) -> str:
    secret = checker.options.streams_key
    assert secret is not None
    identifier = pubsub_identifier(new_stream(), secret)
    member = f"check-{secrets.token_hex(4)}"
    async with checker.session(transcript) as joiner, checker.session(transcript) as watcher:
        await joiner.confirmed(identifier)
        await watcher.confirmed(identifier)
        await joiner.send(
            {
                "command": "join",
                "identifier": identifier,
                "presence": {"id": member, "info": {"name": "check"}},
            }
        )
        event = await watcher.expect(
            "presence join event",
            lambda m: m.get("type") == "presence" and m.get("identifier") == identifier,
        )
        body = event.get("message") or {}
        if body.get("type") != "join" or body.get("id") != member:
            raise CheckFailed(f"unexpected presence event: {compact(event):.120}")
        await watcher.send({"command": "presence", "identifier": identifier})
        info = await watcher.expect(
            "presence info",
            lambda m: (
                m.get("type") == "presence" and (m.get("message") or {}).get("type") == "info"
            ),
        )
        records = (info.get("message") or {}).get("records") or []
        if not any(isinstance(r, dict) and r.get("id") == member for r in records):
            raise CheckFailed(f"presence info does not list the member: {compact(info):.120}")
    return "join reached the other subscriber; presence info lists the member"
