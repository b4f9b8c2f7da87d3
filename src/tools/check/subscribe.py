"""The checks of subscribing: signed streams, identifiers (key order, duplicates), the
application channel and its actions, unknown channels and signed ``$pubsub`` streams."""

from __future__ import annotations

import json
import secrets

from .client import (
    CheckFailed,
    Closed,
    Transcript,
    compact,
    pubsub_identifier,
    turbo_identifier,
)
from .harness import Harness
from .model import new_stream


async def before_welcome(checker: Harness, transcript: Transcript) -> str:
    identifier = checker.subscribable()
    assert identifier is not None
    command = {"command": "subscribe", "identifier": identifier}
    async with checker.connect(transcript, early=[command]) as client:
        await client.welcome()
        reply = await client.expect(
            "answer to the subscribe sent before the welcome",
            lambda m: m.get("identifier") == identifier,
        )
        if reply.get("type") != "confirm_subscription":
            raise CheckFailed(f"the early subscribe got {reply.get('type')}")
    return "welcome first, then the early subscribe confirmed"


async def signed_subscribe(checker: Harness, transcript: Transcript) -> str:
    secret = checker.options.turbo_key
    assert secret is not None
    stream = new_stream()
    async with checker.session(transcript) as client:
        good = turbo_identifier(stream, secret)
        reply = await client.subscribe(good)
        if reply.get("type") != "confirm_subscription":
            raise CheckFailed(f"a correctly signed stream got {reply.get('type')}")
        forged = turbo_identifier(stream, secret + "-forged")
        reply = await client.subscribe(forged)
        if reply.get("type") != "reject_subscription":
            raise CheckFailed("a stream signed with another key was confirmed")
    return "signed stream confirmed, forged one rejected, each echoing its identifier"


async def key_order(checker: Harness, transcript: Transcript) -> str:
    identifier = checker.subscribable()
    assert identifier is not None
    decoded = json.loads(identifier)
    if len(decoded) < 2:
        raise CheckFailed("needs an identifier with two keys or more (--params)")
    reordered = compact(dict(reversed(list(decoded.items()))))
    async with checker.session(transcript) as client:
        await client.confirmed(identifier)
        reply = await client.subscribe(reordered)
        if reply.get("type") != "confirm_subscription":
            raise CheckFailed(f"the same keys in another order got {reply.get('type')}")
    return "the same keys in another order: a subscription of its own, echoed as sent"


async def duplicate(checker: Harness, transcript: Transcript) -> str:
    identifier = checker.subscribable()
    assert identifier is not None
    async with checker.session(transcript) as client:
        await client.confirmed(identifier)
        await client.send({"command": "subscribe", "identifier": identifier})
        extra = [
            m
            for m in await client.messages_for(min(1.0, checker.options.timeout))
            if m.get("identifier") == identifier
        ]
        if any(m.get("type") == "confirm_subscription" for m in extra):
            raise CheckFailed("the duplicate subscribe was confirmed a second time")
        if any(m.get("type") == "reject_subscription" for m in extra):
            raise CheckFailed("the duplicate subscribe rejected the live subscription")
        await client.send({"command": "unsubscribe", "identifier": identifier})
        await checker.settle(client)
        await client.confirmed(identifier)
    return "one confirmation; unsubscribe and resubscribe still work"


async def channel(checker: Harness, transcript: Transcript) -> str:
    identifier = checker.subscribable()
    assert identifier is not None
    async with checker.session(transcript) as client:
        reply = await client.subscribe(identifier)
        if reply.get("type") != "confirm_subscription":
            raise CheckFailed(f"{identifier} got {reply.get('type')}")
    return f"{identifier} confirmed"


async def perform(checker: Harness, transcript: Transcript) -> str:
    identifier = checker.subscribable()
    assert identifier is not None
    action = checker.options.action
    nonce = secrets.token_hex(8)
    async with checker.session(transcript) as client:
        await client.confirmed(identifier)
        data = compact({"action": action, "check": nonce})
        await client.send({"command": "message", "identifier": identifier, "data": data})
        reply = await client.expect(
            f"message for {identifier} after performing {action!r} (does it transmit?)",
            lambda m: m.get("identifier") == identifier and "message" in m,
        )
    return f"{action!r} performed; the channel transmitted {compact(reply['message']):.80}"


async def unknown_channel(checker: Harness, transcript: Transcript) -> str:
    identifier = compact({"channel": "CablewayCheckNoSuchChannel"})
    async with checker.session(transcript) as client:
        try:
            reply = await client.subscribe(identifier)
        except Closed:
            raise
        except CheckFailed:
            raise CheckFailed(
                "no answer to a subscribe to an unknown channel (Rails never answers one; "
                "reject_subscription there is AnyCable's extension)"
            ) from None
        if reply.get("type") != "reject_subscription":
            raise CheckFailed(f"an unknown channel got {reply.get('type')}")
    return "reject_subscription"


async def pubsub(checker: Harness, transcript: Transcript) -> str:
    secret = checker.options.streams_key
    assert secret is not None
    stream = new_stream()
    async with checker.session(transcript) as client:
        try:
            reply = await client.subscribe(pubsub_identifier(stream, secret))
        except Closed:
            raise
        except CheckFailed as exc:
            raise CheckFailed(f"{exc} ($pubsub is AnyCable's channel)") from None
        if reply.get("type") != "confirm_subscription":
            raise CheckFailed(f"a signed $pubsub stream got {reply.get('type')}")
        reply = await client.subscribe(pubsub_identifier(stream, secret + "-forged"))
        if reply.get("type") != "reject_subscription":
            raise CheckFailed("a $pubsub stream signed with another key was confirmed")
    return "signed $pubsub stream confirmed, forged one rejected"
