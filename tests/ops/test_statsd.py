"""StatsD (``--statsd_host`` and companions, AnyCable-Go's names): the lines (pure) and the
periodic sender, received by a UDP listener on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import cast

import pytest
import trio

from cableway.config import ConfigError, load_config
from cableway.ops.metrics import Metrics, statsd_lines, statsd_packets
from cableway.transport.statsd import run_statsd
from cableway.transport.worklink import HubLink

from ..integration.helpers import cable, config, running, welcome
from ..integration.workers import hub_and_workers


def test_lines_counters_as_growth_then_gauges() -> None:
    metrics = Metrics()
    previous = metrics.snapshot()
    metrics.inc("client_msg_total", 3)
    metrics.inc("data_sent_total", 120)
    metrics.set("clients_num", 2)
    lines = statsd_lines(metrics, previous)
    assert lines[:2] == ["anycable_go.client_msg_total:3|c", "anycable_go.data_sent_total:120|c"]
    # counters that did not grow are left out (go-statsd skips Incr(0)); every gauge is sent
    assert not any(line.endswith("|c") for line in lines[2:])
    assert "anycable_go.clients_num:2|g" in lines
    assert "anycable_go.sse_clients_num:0|g" in lines
    previous = metrics.snapshot()
    metrics.inc("client_msg_total")
    assert statsd_lines(metrics, previous, prefix="cw.")[0] == "cw.client_msg_total:1|c"


@pytest.mark.parametrize(
    ("tags_format", "counter", "gauge"),
    [
        (
            "datadog",
            "p.client_msg_total:1|c|#env:prod,node:a",
            "p.clients_num:0|g|#env:prod,node:a",
        ),
        ("influxdb", "p.client_msg_total,env=prod,node=a:1|c", "p.clients_num,env=prod,node=a:0|g"),
        ("graphite", "p.client_msg_total;env=prod;node=a:1|c", "p.clients_num;env=prod;node=a:0|g"),
    ],
)
def test_lines_tag_formats(tags_format: str, counter: str, gauge: str) -> None:
    metrics = Metrics()
    metrics.inc("client_msg_total")
    lines = statsd_lines(
        metrics, None, prefix="p.", tags=[("env", "prod"), ("node", "a")], tags_format=tags_format
    )
    assert lines[0] == counter
    assert gauge in lines


def test_negative_gauge_is_reset_first() -> None:
    metrics = Metrics()
    metrics.set("clients_num", -2)
    lines = statsd_lines(metrics, None)
    index = lines.index("anycable_go.clients_num:0|g")
    assert lines[index + 1] == "anycable_go.clients_num:-2|g"


def test_packets_respect_the_size_limit() -> None:
    lines = [f"anycable_go.metric_{index}:{index}|g" for index in range(200)]
    packets = statsd_packets(lines, 100)
    assert all(len(packet) <= 100 for packet in packets)
    assert b"".join(packets).decode().splitlines() == lines  # nothing lost, order kept
    assert all(packet.endswith(b"\n") for packet in packets)
    assert statsd_packets(["x" * 150], 100) == [b"x" * 150 + b"\n"]  # too long: alone


def test_options_as_anycable_names_them() -> None:
    loaded = load_config(
        [],
        {
            "ANYCABLE_STATSD_HOST": "127.0.0.1:8125",
            "ANYCABLE_STATSD_PREFIX": "cable.",
            "ANYCABLE_STATSD_MAX_PACKET_SIZE": "512",
            "ANYCABLE_STATSD_TAGS_FORMAT": "influxdb",
        },
    )
    assert (loaded.statsd_host, loaded.statsd_prefix) == ("127.0.0.1:8125", "cable.")
    assert (loaded.statsd_max_packet_size, loaded.statsd_tags_format) == (512, "influxdb")
    defaults = load_config([], {})
    assert (defaults.statsd_host, defaults.statsd_prefix) == ("", "anycable_go.")
    assert (defaults.statsd_max_packet_size, defaults.statsd_tags_format) == (1400, "datadog")
    with pytest.raises(ConfigError, match="--statsd_tags_format"):
        load_config(["--statsd_tags_format=okmeter"], {})
    with pytest.raises(ConfigError, match="host:port"):
        load_config(["--statsd_host=localhost"], {})


@asynccontextmanager
async def udp_listener() -> AsyncIterator[tuple[trio.socket.SocketType, str]]:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        await sock.bind(("127.0.0.1", 0))
        yield sock, f"127.0.0.1:{sock.getsockname()[1]}"


async def test_sends_every_rotate_interval(autojump_clock: trio.testing.MockClock) -> None:
    metrics = Metrics()
    async with udp_listener() as (sock, address), trio.open_nursery() as nursery:
        settings = replace(
            config(), statsd_host=address, metrics_rotate_interval=15.0, statsd_max_packet_size=200
        )
        nursery.start_soon(run_statsd, metrics, settings)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        metrics.inc("client_msg_total", 5)
        first = (await sock.recv(65536)).decode()
        assert trio.current_time() - start == 15.0  # the rotate interval (virtual clock)
        lines = [first]
        # the rest of this interval's datagrams (max 200 bytes each) come at once
        while True:
            with trio.move_on_after(1):
                data = await sock.recv(65536)
                assert len(data) <= 200
                lines.append(data.decode())
                continue
            break
        text = "".join(lines)
        assert text.startswith("anycable_go.client_msg_total:5|c\n")
        assert "anycable_go.clients_num:0|g\n" in text
        metrics.inc("client_msg_total", 2)
        second = (await sock.recv(65536)).decode()
        assert second.startswith("anycable_go.client_msg_total:2|c\n")  # the growth only
        assert trio.current_time() - start == 30.0
        nursery.cancel_scope.cancel()


async def test_server_sends_its_metrics() -> None:
    # real sockets run on the real clock (the autojump clock would jump while the kernel
    # carries bytes and fire the server's deadlines); a short interval keeps it quick, and
    # the wait is for the datagram itself, bounded
    async with udp_listener() as (sock, address):
        settings = config(
            statsd_host=address,
            metrics_rotate_interval=0.05,
            metrics_tags=(("env", "test"),),
            statsd_tags_format="datadog",
        )
        async with running(settings) as server, cable(server) as ws:
            await welcome(ws)
            with trio.fail_after(10):
                while b"clients_num:1|g" not in (data := await sock.recv(65536)):
                    pass
            assert b"anycable_go.clients_num:1|g|#env:test\n" in data


async def test_nobody_listening_is_not_an_error(autojump_clock: trio.testing.MockClock) -> None:
    async with udp_listener() as (sock, address):
        pass  # closed: sends are refused
    metrics = Metrics()
    with trio.move_on_after(100):  # several intervals, none of which may raise
        await run_statsd(metrics, replace(config(), statsd_host=address, metrics_rotate_interval=1))
    assert sock.fileno() == -1


def test_lines_from_given_values() -> None:
    """``values`` (the sum over ``--workers``) replaces the process's own metrics."""
    metrics = Metrics()
    metrics.set("clients_num", 7)  # this process's: not what is sent
    lines = statsd_lines(
        metrics, {"client_msg_total": 4}, values={"client_msg_total": 10, "clients_num": 3}
    )
    assert lines[0] == "anycable_go.client_msg_total:6|c"
    assert "anycable_go.clients_num:3|g" in lines
    assert "anycable_go.sse_clients_num:0|g" in lines  # a metric the values lack: 0


class SummingLink:
    """A worker's hub link whose ``metrics_sum`` answers from a script (None: the hub is
    gone for that interval)."""

    def __init__(self, sums: list[dict[str, float] | None]) -> None:
        self.sums = sums

    async def metrics_sum(self) -> dict[str, float] | None:
        await trio.lowlevel.checkpoint()
        return self.sums.pop(0) if self.sums else None


async def test_a_worker_sends_every_workers_sum(autojump_clock: trio.testing.MockClock) -> None:
    """``--workers``: the sum over every worker is sent (one server's gauges and counter
    growth); an interval whose sum is missing is skipped, and the growth after it is
    counted from the last sum sent."""
    link = SummingLink(
        [
            {"client_msg_total": 5, "clients_num": 2},  # at the start
            {"client_msg_total": 9, "clients_num": 3},
            None,
            {"client_msg_total": 20, "clients_num": 4},
        ]
    )
    async with udp_listener() as (sock, address), trio.open_nursery() as nursery:
        settings = replace(config(), statsd_host=address, metrics_rotate_interval=10.0)
        nursery.start_soon(run_statsd, Metrics(), settings, cast(HubLink, link))
        start = trio.current_time()
        first = (await sock.recv(65536)).decode()
        assert trio.current_time() - start == 10.0
        assert first.startswith("anycable_go.client_msg_total:4|c\n")
        assert "anycable_go.clients_num:3|g\n" in first
        second = (await sock.recv(65536)).decode()
        assert trio.current_time() - start == 30.0  # the interval without a sum: nothing
        assert second.startswith("anycable_go.client_msg_total:11|c\n")
        assert "anycable_go.clients_num:4|g\n" in second
        nursery.cancel_scope.cancel()


async def test_workers_send_one_sum_from_one_worker() -> None:
    """Two workers with a client each: the collector gets ``clients_num`` 2 (the sum), all
    from one worker (each worker sending its own, 1, would overwrite each other)."""
    async with udp_listener() as (sock, address):
        settings = config(statsd_host=address, metrics_rotate_interval=0.05)
        async with (
            hub_and_workers(settings) as (_hub, servers),
            cable(servers[0]) as first,
            cable(servers[1]) as second,
        ):
            await welcome(first)
            await welcome(second)
            senders = set()
            with trio.fail_after(10):
                while (
                    b"anycable_go.clients_num:2|g\n" not in (got := await sock.recvfrom(65536))[0]
                ):
                    senders.add(got[1])
                senders.add(got[1])
                # more intervals: still one sender, never one worker's own count
                for _ in range(5):
                    data, sender = await sock.recvfrom(65536)
                    senders.add(sender)
                    assert b"anycable_go.clients_num:1|g\n" not in data
            assert len(senders) == 1
