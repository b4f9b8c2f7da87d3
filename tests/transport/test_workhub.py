"""The workers' hub, message by message (no sockets): stamping, relay, a worker's exit."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from cableway.protocol.broadcast import Publication
from cableway.protocol.broker import MemoryBroker, SessionSnapshot
from cableway.transport.hubwire import FrameReader, HubWireError, snapshot_to_wire
from cableway.transport.scaleout import Confirmation
from cableway.transport.supervisor import _unix_listener
from cableway.transport.workhub import Hub, WorkerLink
from cableway.transport.worklink import (
    HUB_DIR_PREFIX,
    HubLink,
    hub_directory,
    remove_orphaned_hub,
)


def _broker(**kw: Any) -> MemoryBroker:
    return MemoryBroker(epoch="ep01", **kw)


def _link(hub: Hub, index: int) -> WorkerLink:
    link = WorkerLink(index + 1, cast(trio.abc.Stream, None))
    hub.links[link.number] = link
    hub.take(link, {"op": "hello", "index": index, "pid": 1000 + index})
    link.queue.clear()
    link.queued = 0
    return link


def _sent(link: WorkerLink) -> list[dict[str, Any]]:
    messages = FrameReader().feed(b"".join(link.queue))
    link.queue.clear()
    link.queued = 0
    return messages


def _pub(stream: str, data: str, transient: bool = False) -> list[Any]:
    return [[stream, data, None, transient, None], None, None]


def test_publications_from_any_worker_share_one_offset_sequence_and_reach_every_worker() -> None:
    hub = Hub(_broker(), workers=2, clock=lambda: 100.0)
    a, b = _link(hub, 0), _link(hub, 1)
    hub.take(a, {"op": "pub", "id": 1, "stamp": True, "m": [_pub("chat", "1")]})
    hub.take(b, {"op": "pub", "stamp": True, "m": [_pub("chat", "2"), _pub("chat", "t", True)]})
    for link in (a, b):
        delivered = [m for m in _sent(link) if m["op"] == "deliver"]
        items = [item for m in delivered for item in m["m"]]
        assert [(wire[1], offset, epoch) for wire, offset, epoch in items] == [
            ("1", 1, "ep01"),
            ("2", 2, "ep01"),
            ("t", None, None),  # transient: relayed, never stamped
        ]
    assert hub.relayed == 3


def test_the_asker_gets_its_answer_after_the_relay() -> None:
    hub = Hub(_broker(), workers=1, clock=lambda: 100.0)
    a = _link(hub, 0)
    hub.take(a, {"op": "pub", "id": 9, "stamp": True, "m": [_pub("chat", "1")]})
    assert [m["op"] for m in _sent(a)] == ["deliver", "re"]


def test_a_worker_that_is_gone_leaves_its_sessions_restorable_until_they_expire() -> None:
    now = [100.0]
    hub = Hub(_broker(sessions_ttl=60.0), workers=2, clock=lambda: now[0])
    a = _link(hub, 0)
    snapshot = SessionSnapshot("{}", (('{"channel":"$pubsub"}', "chat"),))
    hub.take(a, {"op": "save", "sid": "s1", "s": snapshot_to_wire(snapshot)})
    hub._gone(a)
    broker = hub.broker
    assert broker is not None
    assert broker.restore_session("s1", now=150.0) == snapshot
    assert broker.restore_session("s1", now=161.0) is None
    assert hub.joined == set()


def test_a_worker_far_behind_is_dropped() -> None:
    hub = Hub(None, workers=2, max_backlog=300, clock=lambda: 100.0)  # ~107 a frame
    a, b = _link(hub, 0), _link(hub, 1)
    for i in range(5):
        hub.take(a, {"op": "pub", "m": [_pub("chat", "x" * 40 + str(i))]})
        _sent(a)  # a keeps up, b does not
    assert b.closed
    assert not a.closed
    assert not b.queue


def test_an_unknown_message_is_an_error() -> None:
    hub = Hub(None, workers=1)
    a = _link(hub, 0)
    with pytest.raises(HubWireError):
        hub.take(a, {"op": "nonsense"})


async def test_publications_posted_in_one_tick_go_to_the_hub_as_one_message(
    tmp_path: Path,
) -> None:
    """A POST's batch stays a batch: one ``pub`` message to the hub, one ``deliver`` to each
    worker (which delivers it as runs, one write per subscriber), every confirmation
    settled by the hub's one answer."""
    seen: list[str] = []

    class Recording(Hub):
        def take(self, link: WorkerLink, message: dict[str, Any]) -> None:
            seen.append(message["op"])
            super().take(link, message)

    hub = Recording(_broker(), workers=1, clock=lambda: 100.0)
    delivered: list[list[tuple[Publication, int | None, str | None]]] = []
    done = trio.Event()

    def on_deliver(items: list[tuple[Publication, int | None, str | None]]) -> None:
        delivered.append(items)
        done.set()

    path = str(tmp_path / "hub.sock")
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.serve, await _unix_listener(path))
        link = HubLink(
            path,
            index=0,
            on_deliver=on_deliver,
            on_remote=lambda text: None,
            on_presence=lambda event: None,
            metrics=dict,
            on_lost=lambda: None,
        )
        await link.connect()
        nursery.start_soon(link.run)
        confirmation = Confirmation()
        for i in range(3):  # in one tick, as Node.publish does for a POST's array
            link.publish(
                Publication("chat", str(i)), None, None, stamp=True, confirmation=confirmation
            )
        with trio.fail_after(5):
            await confirmation.done.wait()
            await done.wait()
        assert confirmation.ok
        assert seen == ["hello", "pub"]
        assert [[(p.data, offset) for p, offset, _epoch in items] for items in delivered] == [
            [("0", 1), ("1", 2), ("2", 3)]
        ]
        link.closing = True
        nursery.cancel_scope.cancel()


def test_the_hub_directory_fits_a_unix_socket_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``$TMPDIR`` too long for a Unix socket path: the hub's directory goes to /tmp."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    short = hub_directory()
    assert os.path.dirname(short) == str(tmp_path)
    os.rmdir(short)
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    moved = hub_directory()
    try:
        assert os.path.dirname(moved) == "/tmp"
        assert os.path.basename(moved).startswith(HUB_DIR_PREFIX)
        path = os.path.join(moved, "hub.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(path)  # it fits
        assert os.stat(moved).st_mode & 0o777 == 0o700
    finally:
        shutil.rmtree(moved, ignore_errors=True)


def test_an_orphaned_hub_directory_is_removed_a_live_one_kept(tmp_path: Path) -> None:
    """What a worker does as it exits: the directory of a hub nobody listens on any more
    goes (a killed supervisor); one with a live listener stays; another directory is
    never touched."""
    live = tmp_path / f"{HUB_DIR_PREFIX}live"
    dead = tmp_path / f"{HUB_DIR_PREFIX}dead"
    other = tmp_path / "elsewhere"
    for directory in (live, dead, other):
        directory.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening:
        listening.bind(str(live / "hub.sock"))
        listening.listen()
        for directory in (dead, other):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as closed:
                closed.bind(str(directory / "hub.sock"))  # the file stays, nobody listens
        assert not remove_orphaned_hub(str(live / "hub.sock"))
        assert remove_orphaned_hub(str(dead / "hub.sock"))
        assert not remove_orphaned_hub(str(other / "hub.sock"))
    assert live.exists()
    assert other.exists()
    assert not dead.exists()
