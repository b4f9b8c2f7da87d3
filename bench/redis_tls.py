"""What TLS to Redis costs Cableway's Redis hop: ``redis://`` against ``rediss://``, one run.

One redis-server (127.0.0.1, a fresh port, no persistence) listens on a plain port and a TLS
port (certificates made now with trustme). For each transport, in turn and ``--rounds`` times,
one Cableway connection publishes ``--messages`` Turbo-Stream-sized messages in pipelines of
512 (as the pub/sub publisher does) to a channel another Cableway connection is subscribed to
(as a node's subscriber is), until the subscriber has read them all. It prints messages per
second and this process's CPU seconds per 10 000 messages (both ends are in this process),
medians over the rounds, and the TLS/plain ratios::

    .venv/bin/python bench/redis_tls.py --messages 50000 --rounds 3

Bounded: every round has ``--max-seconds``; redis-server is killed on exit.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import trio
import trustme

from cableway.transport.redis import RedisConnection, RedisTls, encode_command, parse_redis_url

PAYLOAD = (
    '{"stream":"chat/1","data":"\\"<turbo-stream action=\\\\\\"append\\\\\\" target=\\\\\\"messages'
    '\\\\\\"><template><div id=\\\\\\"message_1\\\\\\" class=\\\\\\"message\\\\\\">'
    + "Hello from the bench, a message of a typical size. " * 4
    + '</div></template></turbo-stream>\\""}'
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def one_round(
    url_text: str, tls: RedisTls, messages: int, max_seconds: float
) -> tuple[float, float]:
    url = replace(parse_redis_url(url_text), tls_options=tls)
    subscriber = await RedisConnection.open(url)
    publisher = await RedisConnection.open(url)
    try:
        await subscriber.send(encode_command("SUBSCRIBE", "bench"))
        assert (await subscriber.read())[0] == b"subscribe"  # type: ignore[index]
        command = ("PUBLISH", "bench", PAYLOAD)
        with trio.fail_after(max_seconds):
            cpu, wall = time.process_time(), time.perf_counter()
            async with trio.open_nursery() as nursery:

                async def publish() -> None:
                    for start in range(0, messages, 512):
                        await publisher.pipeline([command] * min(512, messages - start))

                nursery.start_soon(publish)
                for _ in range(messages):
                    reply = await subscriber.read()
                    assert isinstance(reply, list)
                    assert reply[0] == b"message"
            return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await subscriber.aclose()
        await publisher.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()
    executable = shutil.which("redis-server")
    if executable is None:
        print("redis-server is not on PATH", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="cableway-bench-tls-") as tmp:
        directory = Path(tmp)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        ca.cert_pem.write_to_path(str(directory / "ca.pem"))
        cert.private_key_pem.write_to_path(str(directory / "server.key"))
        with open(directory / "server.pem", "wb") as file:
            for blob in cert.cert_chain_pems:
                file.write(blob.bytes())
        port, tls_port = free_port(), free_port()
        cmd = [
            executable,
            "--port",
            str(port),
            "--tls-port",
            str(tls_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tmp,
            "--tls-cert-file",
            str(directory / "server.pem"),
            "--tls-key-file",
            str(directory / "server.key"),
            "--tls-ca-cert-file",
            str(directory / "ca.pem"),
            "--tls-auth-clients",
            "no",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # bounded by redis-server's own start-up or exit
                if b"Ready to accept connections" in line:
                    break
            else:
                print("redis-server did not start", file=sys.stderr)
                return 1
            targets = {
                "redis://": (f"redis://127.0.0.1:{port}", RedisTls()),
                "rediss://": (
                    f"rediss://127.0.0.1:{tls_port}",
                    RedisTls(ca_cert_path=str(directory / "ca.pem")),
                ),
            }
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, (url, tls) in targets.items():
                    results[name].append(
                        trio.run(one_round, url, tls, args.messages, args.max_seconds)
                    )
        finally:
            proc.kill()
            proc.wait(timeout=10)
    print(f"{args.messages} messages of {len(PAYLOAD)} bytes, median of {args.rounds} rounds")
    rates: dict[str, float] = {}
    cpus: dict[str, float] = {}
    for name, rounds in results.items():
        rates[name] = statistics.median(args.messages / wall for wall, _ in rounds)
        cpus[name] = statistics.median(cpu for _, cpu in rounds) / args.messages * 10_000
        print(f"{name:10} {rates[name]:10.0f} msg/s   {cpus[name]:6.3f} CPU s per 10k messages")
    print(
        f"rediss/redis: rate x{rates['rediss://'] / rates['redis://']:.2f}, "
        f"CPU x{cpus['rediss://'] / cpus['redis://']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
