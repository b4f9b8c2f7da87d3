"""The HTTP front door's fast path for broadcasts, through ``handle_connection``.

Unremarkable ``POST /_broadcast`` requests are served without h11; everything else is
handed to h11 with the bytes read so far. The answers must be exactly h11's: each
exchange is compared with the same bytes served with the fast path turned off (its
parser refusing every head, so h11 serves every request).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from functools import partial

import pytest
import trio
import trio.testing

from cableway.protocol import httphead
from cableway.protocol.broadcast import Publication, RemoteDisconnect
from cableway.transport import broadcast_endpoint, httpconn
from cableway.transport.http import handle_connection
from cableway.transport.scaleout import Confirmation
from cableway.transport.server import Server

from .helpers import CONFIG, Client, turbo_identifier

BODY = b'{"stream":"room","data":"hi"}'
CREATED = (
    b"HTTP/1.1 201 Created\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 0\r\n\r\n"
)


def post(
    body: bytes = BODY,
    *,
    key: bytes = b"k",
    extra: bytes = b"",
    length: int | None = None,
    path: bytes = b"/_broadcast",
) -> bytes:
    size = len(body) if length is None else length
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + b"\r\n"
        b"Content-Type: application/json\r\n" + extra + b"Content-Length: %d\r\n\r\n" % size
    ) + body


HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


class Spy:
    """Counts the requests the fast path served; can turn it off (h11 serves all)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.served = 0
        self.parsed = 0  # heads given to the fast path's parser
        self.enabled = True
        parse = httphead.parse_head
        created = httpconn.Conn.created_raw

        def parse_head(buf: bytes | bytearray, size: int) -> httphead.RequestHead | None:
            self.parsed += 1
            return parse(buf, size) if self.enabled else None

        def created_raw(conn: httpconn.Conn, answer: bytes) -> None:
            self.served += 1
            created(conn, answer)

        monkeypatch.setattr(broadcast_endpoint, "parse_head", parse_head)
        monkeypatch.setattr(httpconn.Conn, "created_raw", created_raw)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    return Spy(monkeypatch)


async def exchange(server: Server, *pieces: bytes) -> bytes:
    """Send ``pieces`` (each once the server waits for more), then EOF; all answers."""
    client, server_end = trio.testing.memory_stream_pair()
    output = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, server_end, main=True))
        for piece in pieces:
            await client.send_all(piece)
            await trio.testing.wait_all_tasks_blocked()
        await client.send_eof()
        while data := await client.receive_some(65536):
            output += data
    return bytes(output)


async def both_ways(spy: Spy, *pieces: bytes) -> tuple[bytes, bytes, int]:
    """The answers with the fast path, without it, and how many heads it took."""
    spy.enabled = True
    fast = await exchange(Server(CONFIG), *pieces)
    accepted = spy.served
    spy.enabled = False
    slow = await exchange(Server(CONFIG), *pieces)
    return fast, slow, accepted


def statuses(output: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", output)


async def test_a_broadcast_is_published_and_delivered(spy: Spy) -> None:
    server = Server(CONFIG)
    identifier = turbo_identifier("room")
    sub_end, sub_server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, sub_server_end, main=True))
        subscriber = Client(sub_end)
        await subscriber.handshake()
        assert (await subscriber.recv() or {})["type"] == "welcome"
        await subscriber.send({"command": "subscribe", "identifier": identifier})
        assert (await subscriber.recv() or {})["type"] == "confirm_subscription"
        assert await exchange(server, post()) == CREATED
        assert spy.served == 1
        message = await subscriber.recv()
        assert message is not None
        assert (message["identifier"], message["message"]) == (identifier, "hi")
        assert server.metrics.value("publications_total") == 1
        nursery.cancel_scope.cancel()


async def test_a_batch_and_a_remote_disconnect_are_served(spy: Spy) -> None:
    batch = json.dumps([{"stream": "a", "data": "1"}, {"stream": "b", "data": "2"}]).encode()
    command = json.dumps(
        {"command": "disconnect", "payload": {"identifier": '{"u":"1"}', "reconnect": False}}
    ).encode()
    server = Server(CONFIG)
    assert await exchange(server, post(batch) + post(command)) == CREATED * 2
    assert spy.served == 2
    assert server.metrics.value("publications_total") == 2
    assert server.metrics.value("remote_commands_total") == 1


async def test_keep_alive_between_requests(spy: Spy) -> None:
    fast, slow, accepted = await both_ways(spy, post(), post(), post())
    assert fast == slow == CREATED * 3
    assert accepted == 3


async def test_pipelined_requests_mixing_fast_and_h11(spy: Spy) -> None:
    pipelined = (
        post()
        + post()
        + HEALTH  # h11 serves it, then the fast path takes over again
        + post(path=b"/_broadcast?x=1")
        + post(b"{not json")  # handed to h11: 400, the connection stays open
        + post()
        + post(extra=b"Connection: close\r\n")
        + post()  # after the close: never answered
    )
    fast, slow, accepted = await both_ways(spy, pipelined)
    assert fast == slow
    assert statuses(fast) == [b"201", b"201", b"200", b"201", b"400", b"201", b"201"]
    assert fast.endswith(b"content-length: 0\r\nConnection: close\r\n\r\n")
    assert accepted == 5


async def test_a_repeated_head_is_parsed_once_per_connection(spy: Spy) -> None:
    """A client repeating its head byte for byte (the usual application) has it found,
    parsed and checked once per connection: the same bytes, the same answers; a head
    that differs (another Content-Length) is parsed anew and becomes the known one."""
    other = b'{"stream":"room","data":"hi!"}'
    fast, slow, accepted = await both_ways(
        spy, post() * 4, post() + post(other), post(other) * 2 + post(), post()
    )
    assert fast == slow == CREATED * 10
    assert accepted == 10
    # with the fast path: the first head, the other's, the first again, nothing more
    spy.enabled = True
    spy.parsed = 0
    server = Server(CONFIG)
    pieces = (post() * 4, post() + post(other), post(other) * 2 + post(), post())
    assert await exchange(server, *pieces) == CREATED * 10
    assert spy.parsed == 3  # post(), other, post() again
    assert server.metrics.value("publications_total") == 10


@pytest.mark.parametrize(
    ("second", "answers"),
    [
        # the known head followed by one more header line: judged on its own
        (post(extra=b"Connection: close\r\n") + post(), [b"201", b"201"]),
        (post(extra=b"Expect: 100-continue\r\n"), [b"201", b"201"]),
        (post(key=b"kk"), [b"201", b"401"]),  # the same head but for the key
        (post(path=b"/_broadcasts"), [b"201", b"404"]),
        (post(b'{"stream":"room","data":"hi"} '), [b"201", b"201"]),  # one more byte
        (post(length=len(BODY) - 1), [b"201", b"400", b"400"]),  # one byte less
    ],
)
async def test_a_head_unlike_the_known_one_is_judged_anew(
    spy: Spy, second: bytes, answers: list[bytes]
) -> None:
    """After a head the fast path served, a next head that shares its bytes but for
    the last line, the end, a value or one byte of length gets the answer it gets on
    its own (h11's, as if the fast path were off)."""
    fast, slow, _ = await both_ways(spy, post() + second)
    assert fast == slow
    assert statuses(fast) == answers


async def test_connection_close_is_honoured(spy: Spy) -> None:
    fast, slow, accepted = await both_ways(
        spy, post(extra=b"Connection: keep-alive, Close\r\n") + post()
    )
    assert fast == slow
    assert statuses(fast) == [b"201"]
    assert accepted == 1


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (post(key=b"wrong"), b"401"),
        (post(path=b"/nowhere"), b"404"),
        (post(b"x" * 10, length=CONFIG.max_broadcast_body + 1), b"413"),
        (post(b"[1]"), b"400"),
        (post(b""), b"400"),
        (
            b"GET /_broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
            b"Content-Length: 0\r\n\r\n",
            b"422",
        ),
    ],
)
async def test_refusals_are_h11s(spy: Spy, request_bytes: bytes, status: bytes) -> None:
    fast, slow, accepted = await both_ways(spy, request_bytes)
    assert fast == slow
    assert statuses(fast) == [status]
    assert accepted == 0


@pytest.mark.parametrize(
    "extra",
    [
        b"Content-Length: 5\r\n",  # conflicting lengths: h11 refuses (400)
        b"Content-Length: " + str(len(BODY)).encode() + b"\r\n",  # duplicate, same value
        b"Transfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: identity\r\n",
        b"X-Folded: a\r\n b\r\n",
        b"X-No-Colon\r\n",
        b"X-Space : a\r\n",
        b"X-Ctl: a\x01b\r\n",
        b"Expect: 100-continue\r\n",
        b"Host: y\r\n",
    ],
)
async def test_smuggling_shapes_get_h11s_answer(spy: Spy, extra: bytes) -> None:
    fast, slow, accepted = await both_ways(spy, post(extra=extra))
    assert fast == slow
    assert accepted == 0


async def test_a_bare_lf_head_gets_h11s_answer(spy: Spy) -> None:
    request = post().replace(b"\r\n", b"\n")
    fast, slow, accepted = await both_ways(spy, request + post())
    assert fast == slow
    assert statuses(fast) == [b"201", b"201"]  # h11 accepts bare LF line ends
    assert accepted == 1  # the second one


async def test_a_head_and_body_in_pieces(spy: Spy) -> None:
    request = post()
    half = len(request) // 2
    end = request.index(b"\r\n\r\n") + 4
    pieces = (request[:half], request[half:end], request[end:-3], request[-3:], post())
    fast, slow, accepted = await both_ways(spy, *pieces)
    assert fast == slow == CREATED * 2
    assert accepted == 2  # the rest of the first body is waited for on the fast path


async def test_a_body_in_pieces_is_waited_for_without_h11(
    spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body cut short (by a read, or by the client's writes) keeps its request on the
    fast path: no hand-over to h11; it holds its share of the body budget meanwhile."""
    handed: list[bytes] = []
    hand_over = httpconn.Conn.hand_over

    def spy_hand_over(conn: httpconn.Conn) -> None:
        handed.append(bytes(conn.buf))
        hand_over(conn)

    monkeypatch.setattr(httpconn.Conn, "hand_over", spy_hand_over)
    body = b'{"stream":"room","data":"' + b"x" * 300 + b'"}'
    request = post(body)
    end = request.index(b"\r\n\r\n") + 4
    server = Server(CONFIG)
    door = server.front_door
    client, server_end = trio.testing.memory_stream_pair()
    answers = b""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, server_end, main=True))
        await client.send_all(post() + request[: end + 10])
        await trio.testing.wait_all_tasks_blocked()
        assert door.body_bytes == len(body)  # held while the body arrives
        answers += await client.receive_some(65536)  # the answer before it is not held
        assert answers == CREATED
        await client.send_all(request[end + 10 : end + 200])
        await trio.testing.wait_all_tasks_blocked()
        await client.send_all(request[end + 200 :] + post())
        await trio.testing.wait_all_tasks_blocked()
        assert door.body_bytes == 0  # given back once answered
        await client.send_eof()
        while chunk := await client.receive_some(65536):
            answers += chunk
    assert answers == CREATED * 3
    assert handed == []
    assert spy.served == 3
    assert server.metrics.value("publications_total") == 3


async def test_a_body_cut_by_the_end_of_input_gets_h11s_answer(spy: Spy) -> None:
    request = post()
    end = request.index(b"\r\n\r\n") + 4
    for cut in (end, end + 3, len(request) - 1):
        outputs = []
        for enabled in (True, False):
            spy.enabled = enabled
            server = Server(CONFIG)
            server.front_door.body_limit = len(BODY)  # room for one body at a time
            outputs.append(await exchange(server, post(), request[:cut]))
        assert outputs[0] == outputs[1]
        assert statuses(outputs[0]) == [b"201", b"400"]


async def test_an_invalid_body_in_pieces_gets_h11s_answer(spy: Spy) -> None:
    body = b'{"stream":"room","data":1}'
    assert len(body) <= len(BODY) < 2 * len(body)
    request = post(body)
    end = request.index(b"\r\n\r\n") + 4
    outputs = []
    for enabled in (True, False):
        spy.enabled = enabled
        server = Server(CONFIG)
        server.front_door.body_limit = len(BODY)  # room for one body at a time
        outputs.append(await exchange(server, request[: end + 2], request[end + 2 :], post()))
    assert outputs[0] == outputs[1]
    assert statuses(outputs[0]) == [b"400", b"201"]
    assert spy.served == 1


async def test_a_body_over_the_budget_in_flight_gets_h11s_503(
    spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = post()
    end = request.index(b"\r\n\r\n") + 4
    outputs = []
    for enabled in (True, False):
        spy.enabled = enabled
        server = Server(CONFIG)
        server.front_door.body_limit = len(BODY) - 1
        outputs.append(await exchange(server, request[: end + 2], request[end + 2 :]))
        assert server.front_door.body_bytes == 0
    assert outputs[0] == outputs[1]
    assert statuses(outputs[0]) == [b"503"]


async def test_a_trickled_body_gets_h11s_408_at_the_same_time(
    spy: Spy, autojump_clock: trio.testing.MockClock
) -> None:
    outputs = []
    for fast in (True, False):
        spy.enabled = fast
        server = Server(CONFIG)
        client, server_end = trio.testing.memory_stream_pair()
        with trio.fail_after(server.handshake_timeout * 3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(handle_connection, server, server_end, main=True))
                await client.send_all(post() + post(length=len(BODY) + 5))
                start = trio.current_time()
                await trio.sleep(server.handshake_timeout - 0.5)
                await client.send_all(b"12")  # within the body's deadline, not moving it
                answers = b""
                while chunk := await client.receive_some(65536):
                    answers += chunk
                took = trio.current_time() - start
        assert statuses(answers) == [b"201", b"408"]
        assert server.handshake_timeout <= took < server.handshake_timeout + 0.5
        assert server.front_door.body_bytes == 0
        outputs.append(answers)
    assert outputs[0] == outputs[1]


async def test_a_cut_request_gets_h11s_answer(spy: Spy) -> None:
    for cut in (post()[:10], post()[:-4]):
        fast, slow, _ = await both_ways(spy, cut)
        assert fast == slow


async def test_a_head_over_the_limit_gets_431(spy: Spy) -> None:
    big = post(extra=b"X-Big: " + b"a" * CONFIG.max_header_size + b"\r\n")
    fast, slow, accepted = await both_ways(spy, big)
    assert fast == slow
    assert statuses(fast) == [b"431"]
    assert accepted == 0


async def test_a_trickled_body_gets_408(autojump_clock: trio.testing.MockClock) -> None:
    server = Server(CONFIG)
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, server_end, main=True))
        await client.send_all(post() + post(b"{", length=100))
        await trio.sleep(server.handshake_timeout + 1)
        answers = b""
        while chunk := await client.receive_some(65536):
            answers += chunk
    assert statuses(answers) == [b"201", b"408"]


async def test_an_idle_connection_is_closed_at_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server(CONFIG)
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, server_end, main=True))
        await client.send_all(post() + post()[:20])
        start = trio.current_time()
        answers = b""
        while chunk := await client.receive_some(65536):
            answers += chunk
        assert trio.current_time() - start <= server.handshake_timeout + 1
    assert answers == CREATED  # a partial head is dropped without an answer, as before


async def test_over_a_real_socket(spy: Spy) -> None:
    """Direct reads and writes on the descriptor (a socket pair, no network)."""
    server = Server(CONFIG)
    ours, theirs = trio.socket.socketpair()
    client = trio.SocketStream(ours)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, trio.SocketStream(theirs), main=True))
        await client.send_all(post() * 50)
        answers = b""
        while answers.count(b"HTTP/1.1 ") < 50:
            answers += await client.receive_some(65536)
        await client.send_all(HEALTH + post(extra=b"Connection: close\r\n"))
        while chunk := await client.receive_some(65536):
            answers += chunk
        await client.aclose()
    assert statuses(answers) == [b"201"] * 50 + [b"200", b"201"]
    assert spy.served == 51
    assert server.metrics.value("publications_total") == 51


async def test_a_body_cut_by_the_read_size_stays_on_the_fast_path(spy: Spy) -> None:
    """Pipelined broadcasts past one read: the request cut by the read size is read to
    its end at once (the rest is already there) and served like the others."""
    body = b'{"stream":"room","data":"' + b"x" * 900 + b'"}'
    one = post(body)
    head = len(one) - len(body)
    assert head < httpconn._READ_SIZE % len(one)  # the first read ends inside a body
    count = httpconn._READ_SIZE // len(one) + 3
    server = Server(CONFIG)
    ours, theirs = trio.socket.socketpair()
    client = trio.SocketStream(ours)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, trio.SocketStream(theirs), main=True))
        await client.send_all(one * count + post(extra=b"Connection: close\r\n"))
        answers = b""
        while chunk := await client.receive_some(65536):
            answers += chunk
        await client.aclose()
    assert statuses(answers) == [b"201"] * (count + 1)
    assert spy.served == count + 1  # none of them went through h11
    assert server.metrics.value("publications_total") == count + 1


@pytest.mark.parametrize(
    ("requests", "closes"),
    [
        (post() + post(extra=b"Connection: close\r\n"), True),  # served, then closed
        (post() + HEALTH, False),  # served, then handed to h11
        (post() + post()[:-3], False),  # a body cut by the end of input: h11's
    ],
)
async def test_the_fast_path_leaves_no_deadline_behind(requests: bytes, closes: bool) -> None:
    """The head deadline stays set between requests served back to back (nothing
    awaits there); whatever comes next (h11, the last answers' write) runs without it."""
    server = Server(CONFIG)
    client, server_end = trio.testing.memory_stream_pair()
    conn = httpconn.Conn(
        server_end,
        server.max_header_bytes,
        fast=True,
        door=server.front_door,
        body_timeout=server.handshake_timeout,
    )
    await client.send_all(requests)
    await client.send_eof()
    with conn.deadline:
        assert await broadcast_endpoint.fast_requests(server, conn) is closes
        assert conn.deadline.deadline == math.inf
    assert server.metrics.value("publications_total") >= 1


class WaitingServer(Server):
    """A server whose publishing waits for an acknowledgement (as with ``--pubsub=redis``
    or ``--workers N``): each publication or remote command is acknowledged once
    ``gate`` is set (the one set when it was posted) and ``delay`` virtual seconds
    passed, and then carried out; refused while ``refuse`` is true; never acknowledged
    while ``silent`` is."""

    def __init__(self, *, refuse: bool = False, delay: float = 0.0, silent: bool = False) -> None:
        super().__init__(CONFIG)
        self.refuse = refuse
        self.delay = delay
        self.silent = silent
        self.gate: trio.Event | None = None
        self.waited = 0

    @property
    def publishing_waits(self) -> bool:
        return True

    def _later(self, then: Callable[[], None]) -> Confirmation:
        self.waited += 1
        confirmation = Confirmation(pending=1)
        if not self.silent:
            trio.lowlevel.spawn_system_task(self._settle, confirmation, self.gate, then)
        return confirmation

    async def _settle(
        self, confirmation: Confirmation, gate: trio.Event | None, then: Callable[[], None]
    ) -> None:
        await trio.sleep(self.delay)
        if gate is not None:
            await gate.wait()
        if not self.refuse:
            then()
        confirmation.settle(not self.refuse)

    def post_publications(self, publications: Iterable[Publication]) -> Confirmation | bool:
        items = list(publications)
        return self._later(lambda: self.publish(items))

    def post_remote(self, command: RemoteDisconnect) -> Confirmation | bool:
        return self._later(lambda: self.remote_disconnect(command))


async def waiting_both_ways(
    spy: Spy, *pieces: bytes, refuse: bool = False
) -> tuple[bytes, bytes, int, int]:
    """:func:`both_ways` on servers whose publishing waits; also how many waited."""
    spy.enabled = True
    server = WaitingServer(refuse=refuse)
    fast = await exchange(server, *pieces)
    accepted, waited = spy.served, server.waited
    spy.enabled = False
    slow = await exchange(WaitingServer(refuse=refuse), *pieces)
    return fast, slow, accepted, waited


async def test_a_publication_that_waits_is_served_without_h11(spy: Spy) -> None:
    """``--pubsub=redis`` / ``--workers N``: broadcasts and remote commands are served
    by the fast path once acknowledged, with h11's bytes, pipelined or not."""
    command = json.dumps(
        {"command": "disconnect", "payload": {"identifier": '{"u":"1"}', "reconnect": False}}
    ).encode()
    pieces = (post() * 3, post(command), post() + HEALTH + post(extra=b"Connection: close\r\n"))
    fast, slow, accepted, waited = await waiting_both_ways(spy, *pieces)
    assert fast == slow
    assert statuses(fast) == [b"201"] * 5 + [b"200", b"201"]
    assert accepted == 6
    assert waited == 6


async def test_a_refused_publication_gets_h11s_503(spy: Spy) -> None:
    """Not acknowledged (Redis or the hub unavailable): 503, byte for byte h11's; the
    connection stays usable unless the request said ``Connection: close``."""
    pieces = (post(), post() + HEALTH, post(extra=b"Connection: close\r\n") + post())
    fast, slow, accepted, waited = await waiting_both_ways(spy, *pieces, refuse=True)
    assert fast == slow
    assert statuses(fast) == [b"503", b"503", b"200", b"503"]
    assert fast.endswith(b"Connection: close\r\n\r\n" + broadcast_endpoint.REFUSED[1])
    assert accepted == 3  # the fast path wrote every 503
    assert waited == 3


async def test_answers_are_written_before_a_publication_waits(spy: Spy) -> None:
    """Pipelined broadcasts: the first one's 201 reaches the client while the second
    waits for its acknowledgement (an answer never waits for a later request's)."""
    server = WaitingServer()
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, server_end, main=True))
        await client.send_all(post())
        await trio.testing.wait_all_tasks_blocked()
        server.gate = trio.Event()
        await client.send_all(post())
        await trio.testing.wait_all_tasks_blocked()
        assert server.waited == 2
        assert await client.receive_some(65536) == CREATED
        server.gate.set()
        await client.send_eof()
        rest = b""
        while chunk := await client.receive_some(65536):
            rest += chunk
    assert rest == CREATED
    assert spy.served == 2


async def test_pipelined_publications_are_published_before_any_is_acknowledged(
    spy: Spy,
) -> None:
    """A pipelining publisher: every request of a read is published at once, in order,
    and answered in order once acknowledged (one round trip per read, not per request)."""
    server = WaitingServer()
    server.gate = trio.Event()
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle_connection, server, server_end, main=True))
        await client.send_all(post() * 3 + post(b'{"stream":"room","data":"last"}'))
        await trio.testing.wait_all_tasks_blocked()
        assert server.waited == 4  # all published, none acknowledged yet
        server.gate.set()
        await client.send_eof()
        answers = b""
        while chunk := await client.receive_some(65536):
            answers += chunk
    assert answers == CREATED * 4
    assert spy.served == 4
    assert server.metrics.value("publications_total") == 4


async def test_unacknowledged_publications_get_503_at_their_own_deadline(
    spy: Spy, autojump_clock: trio.testing.MockClock
) -> None:
    """Nothing acknowledges them: each pipelined request gets h11's 503 once its own
    timeout (counted from when it was published) passed; they do not add up."""
    server = WaitingServer(silent=True)
    start = trio.current_time()
    answers = await exchange(server, post() * 3)
    assert answers == broadcast_endpoint.REFUSED_KEEP_ALIVE * 3
    assert trio.current_time() - start < 2 * server.confirm_timeout


async def test_a_publication_that_waits_is_not_cut_by_the_head_deadline(
    spy: Spy, autojump_clock: trio.testing.MockClock
) -> None:
    """The acknowledgement has its own timeout: a request already read is answered even
    when it comes after the head deadline would have passed."""
    server = WaitingServer(delay=CONFIG.handshake_timeout * 3)
    server.confirm_timeout = CONFIG.handshake_timeout * 6
    assert await exchange(server, post(), post()) == CREATED * 2
    assert spy.served == 2
