"""The node layer: the rules of a whole node, for every driver (pure, like the core).

What sits between sessions and the outside world lives here once, for the trio server
and the ASGI app alike: which sessions read which streams (:mod:`.registry`), how a
publication is planned for fan-out (:mod:`.publish`), how a session's core events turn
into driver actions (:mod:`.dispatch`), how a broadcast body is judged and accounted
(:mod:`.intake`), remote disconnects (:mod:`.remote`), and the one :class:`.Backend`
interface that the memory broker and the Redis broker both implement (:mod:`.backend`);
how sessions open (:mod:`.opening`), the node's half of every session (:mod:`.session`),
the fan-out rules (:mod:`.fanout`), the outbox bound (:mod:`.bound`) and the application
calls around a session (:mod:`.rpc`). A rule that is a sequence of waits is a plain
``async def`` awaiting only what the driver hands in.

No trio, no asyncio, no sockets, no clocks: time comes in as arguments, and whatever
must wait (a Redis answer) is handed back to the driver as an awaitable.
"""

from __future__ import annotations
