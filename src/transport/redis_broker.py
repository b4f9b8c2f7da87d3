"""The Redis broker (``--broker=redis``): history, sessions and presence shared by nodes.

The memory broker (:mod:`cableway.protocol.broker`) keeps everything in one process;
this one keeps it in Redis, so that a client coming back to *another* node finds its
stream history (WebSocket ``history``, SSE ``Last-Event-ID``), its session (restore
with ``?sid=``) and the presence of the streams it reads. The history rules are the
same code (:func:`~cableway.protocol.broker.entries_after` and ``entries_since``).

Layout in Redis (``P`` = ``--redis_broker_prefix``, default ``cableway``; one database,
no cluster: scripts touch keys they compute):

* ``P:epoch`` — the epoch every node stamps with; created by the first publication
  (a random 4-character id), so a flushed or restarted Redis without persistence starts
  a new epoch and clients holding old positions are told (``reject_history``) instead
  of being served wrong offsets.
* ``P:o:<stream>`` (counter) and ``P:h:<stream>`` (a Redis Stream with entry ids
  ``<offset>-0``, trimmed to ``--history_limit``, fields ``d`` data, ``t`` publish time,
  ``b`` broadcast type): stamping a publication is one script (``INCR`` + ``XADD`` and,
  with ``--pubsub=redis``, the ``PUBLISH`` of the stamped message), so offsets and the
  order subscribers see agree on every node. Both keys expire after ``10 ×
  --history_ttl`` without publications, as AnyCable's memory broker forgets a stream
  (Cableway's memory broker forgets it with its last message and never reuses offsets).
* ``P:s:<sid>`` — a session snapshot (JSON); live sessions keep it for ``sessions_ttl
  + 1 h`` (refreshed on every change), a closed one for ``--sessions_ttl``.
* ``P:p:<stream>`` (hash id → info JSON), ``P:pc:<stream>`` (hash id → sessions),
  ``P:ps:<stream>`` (hash sid → id) and ``P:pe`` (sorted set of every presence record by
  expiry: a disconnected session's ``--presence_ttl`` later, a live one's lease, renewed
  by its node, so that the presence of a node that died ends too): presence, changed by
  scripts so that two nodes never announce the same join or leave twice.

Every command goes through the node's ordered command connection
(:class:`~cableway.transport.scaleout.Publisher`), so a read sees the writes posted
before it. Reads have a deadline (``timeout``): a history request Redis does not answer
in time is rejected (``reject_history``, the client may retry), a restore falls back to
an ordinary welcome; writes queued while Redis is down are sent after the reconnect
(bounded queue), except publications a publisher waits for, which fail (HTTP 503).
"""

from __future__ import annotations

import json
import logging
import math
import random
import string
from collections.abc import Callable, Iterable
from typing import Any

import trio

from ..protocol.broadcast import Publication
from ..protocol.broker import (
    HistoryEntry,
    HistoryError,
    HistoryQuery,
    PresenceEvent,
    SessionSnapshot,
    entries_after,
    entries_since,
)
from .redis import RedisError, Reply
from .scaleout import Confirmation, Publisher, encode_stamped

__all__ = ["RedisBroker", "new_epoch"]

log = logging.getLogger("cableway.redis")

#: default of :attr:`RedisBroker.presence_lease`
PRESENCE_LEASE = 60.0

#: keep a live session's snapshot this much longer than sessions_ttl (a node that dies
#: cannot release it; the snapshot must still expire)
LIVE_SESSION_GRACE = 3600

_STAMP = """
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[3], epoch)
end
local offset = redis.call('INCR', KEYS[2])
local ok = redis.pcall('XADD', KEYS[1], 'MAXLEN', ARGV[5], offset .. '-0',
  'd', ARGV[2], 't', ARGV[3], 'b', ARGV[4])
if type(ok) == 'table' and ok.err then
  -- the counter was lost while the stream was kept: go on after the stream's last entry
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  offset = tonumber(string.match(last[1][1], '^(%d+)')) + 1
  redis.call('SET', KEYS[2], offset)
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[5], offset .. '-0',
    'd', ARGV[2], 't', ARGV[3], 'b', ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
if ARGV[7] ~= '' then
  redis.call('PUBLISH', ARGV[7],
    ARGV[8] .. ',"offset":' .. offset .. ',"epoch":' .. cjson.encode(epoch) .. '}')
end
return {offset, epoch}
"""

_HISTORY = """
local epoch = redis.call('GET', KEYS[3]) or ''
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
return {epoch, last, redis.call('XRANGE', KEYS[1], '-', '+')}
"""

# KEYS: p, pc, ps, pe; ARGV: sid, id, info, expiry member, lease expiry
_JOIN = """
local current = redis.call('HGET', KEYS[3], ARGV[1])
if current and current ~= ARGV[2] then return -1 end
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
if current then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then return 1 end
return 0
"""

_LEAVE_BODY = """
local function leave(p, pc, ps, pe, sid, member)
  redis.call('ZREM', pe, member)
  local id = redis.call('HGET', ps, sid)
  if not id then return false end
  redis.call('HDEL', ps, sid)
  if redis.call('HINCRBY', pc, id, -1) <= 0 then
    redis.call('HDEL', pc, id)
    redis.call('HDEL', p, id)
    return id
  end
  return false
end
"""

# KEYS: p, pc, ps, pe; ARGV: sid, expiry member
_LEAVE = (
    _LEAVE_BODY
    + """
return leave(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2])
"""
)

# KEYS: pe; ARGV: now, prefix, max. Returns {stream, id, stream, id, ...} of leaves.
_EXPIRE = (
    _LEAVE_BODY
    + """
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do
  local cut = string.find(member, '\\n', 1, true)
  local stream = string.sub(member, 1, cut - 1)
  local sid = string.sub(member, cut + 1)
  local base = ARGV[2] .. ':p'
  local id = leave(base .. ':' .. stream, base .. 'c:' .. stream, base .. 's:' .. stream,
    KEYS[1], sid, member)
  if id then
    table.insert(out, stream)
    table.insert(out, id)
  end
end
return out
"""
)

# KEYS: ps, pe; ARGV: sid, expiry, member
_DISCONNECT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
end
return 0
"""


_EPOCH_ALPHABET = string.ascii_letters + string.digits


def new_epoch(rng: random.Random | None = None) -> str:
    """A random 4-character epoch, as the memory broker draws one."""
    return "".join((rng or random.SystemRandom()).choices(_EPOCH_ALPHABET, k=4))


class RedisBroker:
    """History, sessions and presence in Redis, shared by every node.

    Args:
        queue: the node's ordered command connection (see the module docstring).
        prefix: prefix of every key.
        timeout: seconds a read waits for Redis before giving up.
    """

    def __init__(
        self,
        queue: Publisher,
        *,
        prefix: str = "cableway",
        history_limit: int = 100,
        history_ttl: float = 300.0,
        sessions_ttl: float = 300.0,
        presence_ttl: float = 15.0,
        timeout: float = 2.0,
    ) -> None:
        self.queue = queue
        self.prefix = prefix
        self.history_limit = history_limit
        self.history_ttl = history_ttl
        self.sessions_ttl = sessions_ttl
        self.presence_ttl = presence_ttl
        self.timeout = timeout
        #: seconds a live session's presence record lasts unless its node renews it
        #: (every third of it): bounds how long a crashed node's clients stay present
        self.presence_lease = PRESENCE_LEASE
        # each stamp proposes a fresh epoch for when Redis has none (it lost its data):
        # never the one it had before, so old positions are refused, not misread
        self._random = random.Random()
        #: the last epoch Redis reported (for logs)
        self.epoch: str | None = None

    @property
    def up(self) -> bool:
        return self.queue.up

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}:{kind}:{name}"

    # -- history -----------------------------------------------------------------------

    def stamp(
        self,
        publication: Publication,
        *,
        now: float,
        channel: str | None,
        confirmation: Confirmation | None = None,
        on_stamped: Callable[[Publication, int, str], None] | None = None,
    ) -> None:
        """Store ``publication`` with the next offset of its stream.

        With ``channel`` the stamped message is also published there, by the same
        script (so every node sees offsets in order); ``on_stamped`` gets the offset and
        epoch once Redis answered.
        """
        stream = publication.stream
        template = encode_stamped(publication, None, None)[:-1]  # without the closing }
        command: tuple[str | bytes | int, ...] = (
            "EVAL",
            _STAMP,
            3,
            self._key("h", stream),
            self._key("o", stream),
            f"{self.prefix}:epoch",
            new_epoch(self._random),
            publication.data,
            repr(now),
            publication.broadcast_type or "",
            self.history_limit,
            max(1, math.ceil(10 * self.history_ttl)),
            channel or "",
            template,
        )

        def stamped(reply: Reply) -> None:
            if isinstance(reply, RedisError):
                raise reply
            offset, epoch = _stamp_reply(reply)
            self.epoch = epoch
            if on_stamped is not None:
                on_stamped(publication, offset, epoch)

        self.queue.send(command, confirmation, stamped)

    async def fetch_history(
        self, queries: Iterable[HistoryQuery], *, now: float
    ) -> tuple[list[HistoryEntry] | None, str]:
        """Serve a whole history request: (entries, epoch), or (None, "") if any query
        fails or Redis does not answer within :attr:`timeout`."""
        queries = list(queries)
        if not self.up:
            return None, ""  # refused at once: the client may retry after the outage
        replies: list[Reply] = []
        confirmation = Confirmation()
        for query in queries:
            stream = query.stream
            self.queue.send(
                (
                    "EVAL",
                    _HISTORY,
                    3,
                    self._key("h", stream),
                    self._key("o", stream),
                    f"{self.prefix}:epoch",
                ),
                confirmation,
                replies.append,
            )
        if not await self._wait(confirmation):
            return None, ""
        out: list[HistoryEntry] = []
        epoch = ""
        for query, reply in zip(queries, replies, strict=True):
            try:
                epoch, last_offset, entries = _history_reply(query.stream, reply)
                horizon = now - self.history_ttl
                entries = [e for e in entries if e.published_at >= horizon]
                if query.epoch is not None and query.offset is not None:
                    if query.epoch != epoch:
                        raise HistoryError("epoch mismatch")
                    out.extend(entries_after(entries, last_offset, query.offset))
                elif query.since is not None:
                    out.extend(entries_since(entries, query.since))
            except HistoryError:
                return None, ""
        return out, epoch

    # -- sessions ----------------------------------------------------------------------

    def save_session(self, sid: str, snapshot: SessionSnapshot) -> None:
        """Store a live session's snapshot."""
        if self.sessions_ttl > 0:
            ttl = math.ceil(self.sessions_ttl) + LIVE_SESSION_GRACE
            self.queue.send(("SET", self._key("s", sid), _dump_snapshot(snapshot), "EX", ttl))

    def release_session(self, sid: str, snapshot: SessionSnapshot | None) -> None:
        """The session closed: its snapshot can be restored for ``sessions_ttl`` more."""
        if self.sessions_ttl > 0 and snapshot is not None:
            ttl = max(1, math.ceil(self.sessions_ttl))
            self.queue.send(("SET", self._key("s", sid), _dump_snapshot(snapshot), "EX", ttl))

    async def restore_session(self, sid: str) -> SessionSnapshot | None:
        """The snapshot saved under ``sid`` (None: unknown, expired, or Redis is away)."""
        if self.sessions_ttl <= 0 or not self.up:
            return None
        replies: list[Reply] = []
        confirmation = Confirmation()
        self.queue.send(("GET", self._key("s", sid)), confirmation, replies.append)
        if not await self._wait(confirmation) or not isinstance(replies[0], bytes):
            return None
        return _load_snapshot(replies[0])

    # -- presence ----------------------------------------------------------------------

    def _presence_keys(self, stream: str) -> tuple[str, str, str, str]:
        return (
            self._key("p", stream),
            self._key("pc", stream),
            self._key("ps", stream),
            f"{self.prefix}:pe",
        )

    def presence_join(
        self,
        stream: str,
        sid: str,
        presence_id: str,
        info: object,
        on_event: Callable[[PresenceEvent], None],
        *,
        now: float,
    ) -> None:
        """Add ``sid`` under ``presence_id``; ``on_event`` gets the ``join`` to announce
        when the id is new in the stream."""

        def joined(reply: Reply) -> None:
            if reply == 1:
                on_event(PresenceEvent(stream, "join", presence_id, info))
            elif reply == -1:
                log.debug("presence id mismatch sid=%s", sid)

        self.queue.send(
            (
                "EVAL",
                _JOIN,
                4,
                *self._presence_keys(stream),
                sid,
                presence_id,
                json.dumps(info, separators=(",", ":")),
                f"{stream}\n{sid}",
                repr(now + self.presence_lease),
            ),
            None,
            joined,
        )

    def presence_renew(self, members: Iterable[tuple[str, str]], *, now: float) -> None:
        """Extend the lease of this node's live presence ``(stream, sid)`` records.

        A live record expires like a disconnected one when its lease runs out: if the
        node dies without closing its sessions, their presence ends ``presence_lease``
        seconds later (announced by another node) instead of staying forever. ``XX``
        never brings back a record that left meanwhile.
        """
        score = repr(now + self.presence_lease)
        batch: list[str] = []
        for stream, sid in members:
            batch += (score, f"{stream}\n{sid}")
            if len(batch) >= 1000:
                self.queue.send(("ZADD", f"{self.prefix}:pe", "XX", *batch))
                batch = []
        if batch:
            self.queue.send(("ZADD", f"{self.prefix}:pe", "XX", *batch))

    def presence_leave(
        self, stream: str, sid: str, on_event: Callable[[PresenceEvent], None]
    ) -> None:
        """Remove ``sid``; ``on_event`` gets the ``leave`` when it was the id's last."""

        def left(reply: Reply) -> None:
            if isinstance(reply, bytes):
                on_event(PresenceEvent(stream, "leave", reply.decode("utf-8", "replace")))

        self.queue.send(
            ("EVAL", _LEAVE, 4, *self._presence_keys(stream), sid, f"{stream}\n{sid}"),
            None,
            left,
        )

    def presence_disconnect(self, stream: str, sid: str, *, now: float) -> None:
        """The session went away: its presence expires after ``presence_ttl``."""
        keys = self._presence_keys(stream)
        self.queue.send(
            (
                "EVAL",
                _DISCONNECT,
                2,
                keys[2],
                keys[3],
                sid,
                repr(now + self.presence_ttl),
                f"{stream}\n{sid}",
            )
        )

    async def presence_info(self, stream: str) -> list[tuple[str, object]] | None:
        """(id, info) of everyone present in ``stream``; None when Redis is away."""
        if not self.up:
            return None
        replies: list[Reply] = []
        confirmation = Confirmation()
        self.queue.send(("HGETALL", self._key("p", stream)), confirmation, replies.append)
        if not await self._wait(confirmation):
            return None
        reply = replies[0]
        if not isinstance(reply, list):
            return None
        records: list[tuple[str, object]] = []
        for index in range(0, len(reply) - 1, 2):
            key, value = reply[index], reply[index + 1]
            if isinstance(key, bytes) and isinstance(value, bytes):
                try:
                    info = json.loads(value)
                except ValueError:
                    info = None
                records.append((key.decode("utf-8", "replace"), info))
        return records

    def expire(self, now: float, on_event: Callable[[PresenceEvent], None]) -> None:
        """Drop presence that outlived its TTL; ``on_event`` gets each ``leave``.

        Every node calls it about once a second; the script hands each expiry to one.
        """
        if not self.up:
            return

        def expired(reply: Reply) -> None:
            if not isinstance(reply, list):
                return
            for index in range(0, len(reply) - 1, 2):
                stream, presence_id = reply[index], reply[index + 1]
                if isinstance(stream, bytes) and isinstance(presence_id, bytes):
                    on_event(
                        PresenceEvent(
                            stream.decode("utf-8", "surrogateescape"),
                            "leave",
                            presence_id.decode("utf-8", "replace"),
                        )
                    )

        self.queue.send(
            ("EVAL", _EXPIRE, 1, f"{self.prefix}:pe", repr(now), self.prefix, 1000),
            None,
            expired,
        )

    async def _wait(self, confirmation: Confirmation) -> bool:
        with trio.move_on_after(self.timeout):
            await confirmation.done.wait()
        if not confirmation.done.is_set():
            confirmation.abandoned = True
            return False
        return confirmation.ok


def _stamp_reply(reply: Reply) -> tuple[int, str]:
    if (
        isinstance(reply, list)
        and len(reply) == 2
        and isinstance(reply[0], int)
        and isinstance(reply[1], bytes)
    ):
        return reply[0], reply[1].decode("utf-8", "replace")
    raise RedisError(f"unexpected reply to the stamp script: {reply!r}")


def _history_reply(stream: str, reply: Reply) -> tuple[str, int, list[HistoryEntry]]:
    """(epoch, last offset, entries) from the history script's reply."""
    if isinstance(reply, RedisError):
        raise HistoryError(str(reply))
    if not (isinstance(reply, list) and len(reply) == 3 and isinstance(reply[0], bytes)):
        raise HistoryError("unexpected reply")
    epoch = reply[0].decode("utf-8", "replace")
    last = reply[1] if isinstance(reply[1], int) else 0
    entries: list[HistoryEntry] = []
    raw = reply[2] if isinstance(reply[2], list) else []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], bytes)):
            continue
        fields = item[1] if isinstance(item[1], list) else []
        values: dict[bytes, bytes] = {}
        for index in range(0, len(fields) - 1, 2):
            key, value = fields[index], fields[index + 1]
            if isinstance(key, bytes) and isinstance(value, bytes):
                values[key] = value
        try:
            offset = int(item[0].split(b"-", 1)[0])
            published_at = float(values.get(b"t", b"0"))
        except ValueError:
            continue
        entries.append(
            HistoryEntry(
                stream,
                offset,
                values.get(b"d", b"").decode("utf-8", "surrogatepass"),
                published_at,
                values.get(b"b", b"").decode("utf-8", "replace") or None,
            )
        )
    return epoch, last, entries


def _dump_snapshot(snapshot: SessionSnapshot) -> str:
    body: dict[str, Any] = {
        "identifiers": snapshot.identifiers,
        "subscriptions": [list(pair) for pair in snapshot.subscriptions],
    }
    if snapshot.delegated or snapshot.app:
        body["delegated"] = list(snapshot.delegated)
        body["app"] = snapshot.app
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def _load_snapshot(raw: bytes) -> SessionSnapshot | None:
    try:
        body = json.loads(raw)
        identifiers = body["identifiers"]
        pairs = tuple((str(i), str(s)) for i, s in body["subscriptions"])
        delegated = tuple(str(i) for i in body.get("delegated", ()))
        app = str(body.get("app", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(identifiers, str):
        return None
    return SessionSnapshot(identifiers, pairs, delegated=delegated, app=app)
