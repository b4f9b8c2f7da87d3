"""The checks of JWT identification: a valid token is welcomed, an expired or forged one refused."""

from __future__ import annotations

from .client import (
    CheckFailed,
    Closed,
    HandshakeRefused,
    Transcript,
    Unusable,
    compact,
)
from .harness import Harness


async def jwt_valid(checker: Harness, transcript: Transcript) -> str:
    async with checker.connect(transcript, jwt=checker.token()) as client:
        await client.welcome()
    return f"a valid token (?{checker.options.jwt_param}=) is welcomed"


async def _refused(
    checker: Harness, transcript: Transcript, token: str, reasons: tuple[str, ...]
) -> str:
    """The same handshake as 'JWT valid' (which passed), with ``token``: refused."""
    try:
        async with checker.connect(transcript, jwt=token) as client:
            try:
                message = await client.recv()
            except Closed as exc:  # closed at once, without a message
                return f"closed without a message ({exc})"
            except TimeoutError:
                raise CheckFailed("no answer at all to the token") from None
            if message.get("type") == "welcome":
                raise CheckFailed("the token was accepted (welcome)")
            if message.get("type") != "disconnect":
                raise CheckFailed(f"unexpected answer: {compact(message):.120}")
            reason = message.get("reason")
            if reason not in reasons:
                raise CheckFailed(f"disconnect reason {reason!r}, expected one of {reasons}")
            if message.get("reconnect") is not False:
                raise CheckFailed(
                    f'disconnect without "reconnect":false (got {message.get("reconnect")!r})'
                    ": clients would retry the same token forever"
                )
            if not await client.is_closed(checker.options.timeout):
                raise CheckFailed("the connection stayed open after the disconnect")
            return f"disconnect {reason!r}, reconnect false, closed"
    except HandshakeRefused as exc:
        if exc.status in (401, 403):
            return f"refused at the handshake: HTTP {exc.status}"
        raise CheckFailed(str(exc)) from None
    except Unusable as exc:  # 'JWT valid' connected: this is not an unreachable server
        raise CheckFailed(str(exc)) from None


async def jwt_expired(checker: Harness, transcript: Transcript) -> str:
    return await _refused(
        checker, transcript, checker.token(expired=True), ("token_expired", "unauthorized")
    )


async def jwt_forged(checker: Harness, transcript: Transcript) -> str:
    key = (checker.options.jwt_secret or "") + "-forged-key-of-at-least-32-bytes"
    return await _refused(checker, transcript, checker.token(key=key), ("unauthorized",))
