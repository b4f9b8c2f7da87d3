"""The checks of reliable streams: session restore (``?sid=``) and history replay."""

from __future__ import annotations

import time

from .client import (
    EXT,
    CheckFailed,
    Transcript,
    compact,
    turbo_identifier,
)
from .harness import Harness
from .model import new_stream


async def restore(checker: Harness, transcript: Transcript) -> str:
    identifier = checker.subscribable()
    assert identifier is not None
    async with checker.connect(transcript, subprotocols=(EXT,)) as client:
        welcome = await client.welcome()
        sid = welcome.get("sid")
        await client.confirmed(identifier)
    async with checker.connect(transcript, subprotocols=(EXT,), sid=str(sid)) as client:
        welcome = await client.welcome()
        if welcome.get("restored") is not True:
            raise CheckFailed(f"?sid= did not restore the session: {compact(welcome):.120}")
        if identifier not in (welcome.get("restored_ids") or []):
            raise CheckFailed("restored_ids does not list the subscription")
    return "?sid= restores the session and its subscription (restored_ids)"


async def history(checker: Harness, transcript: Transcript) -> str:
    secret = checker.options.turbo_key
    assert secret is not None
    stream = new_stream()
    identifier = turbo_identifier(stream, secret)
    since = int(time.time()) - 60
    await checker.broadcast(transcript, stream, {"check": "history"})
    async with checker.session(transcript, subprotocols=(EXT,)) as client:
        await client.confirmed(identifier, history={"since": since})
        message = await client.expect(
            "history (the message broadcast before subscribing)",
            lambda m: m.get("identifier") == identifier and "message" in m,
        )
        if message.get("message") != {"check": "history"}:
            raise CheckFailed(f"unexpected history message: {compact(message):.120}")
        if not {"stream_id", "epoch", "offset"} <= message.keys():
            raise CheckFailed("the replayed message has no stream_id/epoch/offset")
        answer = await client.expect(
            "confirm_history",
            lambda m: m.get("type") in ("confirm_history", "reject_history"),
        )
        if answer.get("type") != "confirm_history":
            raise CheckFailed("the history request got reject_history")
    return "a message published before subscribing is replayed with its offset, then confirmed"
