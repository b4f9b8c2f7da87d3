"""The per-publication costs of `cableway --workers N`'s hub hop, in-process (issue 20).

    PYTHONPATH=<dir holding cableway> python bench/hub_costs.py [--json out.jsonl]

Times, for one publication like the benchmarks' (a stream of its own, ~300 bytes of
data), each step of the hop that ``--workers`` adds, with the real code and no sockets:

* ``worker send``: the accepting worker's :meth:`HubLink.publish` (the message made and
  encoded, the confirmation registered) and its answer (``re``) read back and settled;
* ``hub``: the hub reading the frame (:class:`FrameReader`), :meth:`Hub.take` (with
  ``--broker=memory``: :meth:`MemoryBroker.add`, the stamp) and one ``deliver`` frame
  queued to each of W workers, then each worker's queue joined into its write (batches
  of 64 frames), for W = 1, 2, 4, 8, 16;
* ``worker receive``: one worker reading a ``deliver`` frame and handing the
  publication to its node (:meth:`Server.deliver`) when no subscriber of that stream is
  on this worker -- what every worker pays for every publication;
* ``unix write+read``: a batch's bytes through a Unix stream socket pair (one
  ``send`` and one ``recv`` per batch of B frames), per frame.

Each figure is the fastest of 7 repeats of 20 000 publications (µs per publication; on a
shared machine the fastest repeat is the least disturbed one), with the garbage collector
tuned as the server tunes it (``tune_garbage_collector``). What the processes'
scheduling and the trio loop's wake-ups add on top is in the end-to-end figures of
``bench/run.py --targets cableway-w2``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from typing import Any

import trio

from cableway.config import Config
from cableway.protocol.broadcast import Publication
from cableway.protocol.hubwire import FrameReader, encode, publication_to_wire
from cableway.transport.scaleout import Confirmation
from cableway.transport.server import Server
from cableway.transport.startup import tune_garbage_collector
from cableway.transport.workhub import Hub, WorkerLink
from cableway.transport.worklink import WorkerRole

COUNT, REPEATS = 20_000, 7
DATA = json.dumps({"message": ["cwb", 1, 12345, 1733622000000000000, "x" * 200]})


def publications(n: int) -> list[Publication]:
    return [Publication(f"s{i % 1000}", DATA, None, False, None) for i in range(n)]


def median_us(fn: Any, n: int = COUNT) -> float:
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) / n * 1e6  # the least disturbed repeat (a shared machine)


def hub_cost(workers: int, memory: bool) -> float:
    broker = Config(broker="memory").new_broker() if memory else None
    hub = Hub(broker, workers=workers)
    links = [WorkerLink(i + 1, None) for i in range(workers)]  # type: ignore[arg-type]
    for link in links:
        hub.links[link.number] = link
    stamp = {"stamp": True} if memory else {}  # what a worker asks with each broker
    frames = [
        encode({"op": "pub", "m": [[publication_to_wire(p), None, None]], **stamp, "id": i})
        for i, p in enumerate(publications(COUNT))
    ]
    chunks = [b"".join(frames[i : i + 64]) for i in range(0, len(frames), 64)]
    sender = links[0]

    def run() -> None:
        reader = FrameReader()
        for chunk in chunks:
            for message in reader.feed(chunk):
                hub.take(sender, message)
            for link in links:  # the writer's batch (its send_all is timed apart)
                b"".join(link.queue)
                link.queue.clear()
                link.queued = 0

    return median_us(run)


def worker_costs() -> tuple[float, float]:
    """(send: publish + its answer settled, receive: a deliver with no local subscriber)."""
    cfg = Config(public=True, turbo_streams=True, turbo_streams_secret="s" * 32, broker="none")
    server = Server(cfg, worker=WorkerRole(0, "/nonexistent/hub.sock"))
    link = server.link
    assert link is not None
    pubs = publications(COUNT)
    answers = [{"op": "re", "id": i} for i in range(1, COUNT * REPEATS + 1)]
    cursor = [0]

    def send() -> None:
        link._queue.clear()
        for p in pubs:
            confirmation = Confirmation()
            link.publish(p, None, None, stamp=True, confirmation=confirmation)
            k = cursor[0]
            cursor[0] = k + 1
            link._take(answers[k])  # the hub's answer: the confirmation settles
        link._queue.clear()

    deliver = b"".join(
        encode({"op": "deliver", "m": [[publication_to_wire(p), None, None]]}) for p in pubs
    )
    chunks = [deliver[i : i + 256 * 1024] for i in range(0, len(deliver), 256 * 1024)]

    def receive() -> None:
        reader = FrameReader()
        for chunk in chunks:
            for message in reader.feed(chunk):
                link._take(message)

    return median_us(send), median_us(receive)


def unix_cost(batch: int) -> float:
    frame = encode({"op": "deliver", "m": [[publication_to_wire(publications(1)[0]), 1, "e"]]})
    data = frame * batch
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    rounds = COUNT // batch

    def run() -> None:
        for _ in range(rounds):
            a.sendall(data)
            got = 0
            while got < len(data):
                got += len(b.recv(256 * 1024))

    try:
        return median_us(run, rounds * batch)
    finally:
        a.close()
        b.close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tune_garbage_collector()  # as every Cableway process does at start-up
    out: dict[str, Any] = {"kind": "hub_costs", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
    send, receive = worker_costs()
    out["worker_send_us"] = round(send, 3)
    out["worker_receive_us"] = round(receive, 3)
    for memory in (False, True):
        key = "hub_memory_us" if memory else "hub_none_us"
        out[key] = {w: round(hub_cost(w, memory), 3) for w in (1, 2, 4, 8, 16)}
    out["unix_us"] = {b: round(unix_cost(b), 3) for b in (1, 8, 64)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="append the result (one JSON line) here")
    parser.add_argument("--count", type=int, default=20_000, help="publications per repeat")
    args = parser.parse_args()
    global COUNT
    COUNT = args.count
    result = trio.run(main_async, args)
    print(f"worker send (publish + answer settled):       {result['worker_send_us']:.2f} µs")
    print(f"worker receive (deliver, no local subscriber): {result['worker_receive_us']:.2f} µs")
    for key, label in (("hub_none_us", "--broker=none"), ("hub_memory_us", "--broker=memory")):
        cells = ", ".join(f"W={w}: {v:.2f}" for w, v in result[key].items())
        print(f"hub per publication ({label}): {cells} µs")
    cells = ", ".join(f"B={b}: {v:.2f}" for b, v in result["unix_us"].items())
    print(f"unix socket write+read per frame: {cells} µs")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
