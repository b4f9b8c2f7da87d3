"""``--statsd_host``: the metrics sent to a StatsD server over UDP, as AnyCable-Go does.

Every ``--metrics_rotate_interval`` seconds the task sends counters as their growth over
the interval (``|c``) and gauges as they are (``|g``), named ``--statsd_prefix`` plus
the metric's name, with ``--metrics_tags`` in ``--statsd_tags_format``, batched into
datagrams of at most ``--statsd_max_packet_size`` bytes (the lines are
:func:`cableway.metrics.statsd_lines`). UDP is fire-and-forget: a send that fails (no
route, nobody listening) is logged at debug level and the next interval tries again.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping

import trio

from ..config import Config
from ..ops.metrics import Metrics, statsd_lines, statsd_packets
from .worklink import HubLink

__all__ = ["run_statsd"]

log = logging.getLogger("cableway.metrics")


async def _open(host: str, port: int) -> trio.socket.SocketType:
    family, kind, proto, _name, address = (
        await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    )[0]
    sock = trio.socket.socket(family, kind, proto)
    try:
        await sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


async def _values(metrics: Metrics, link: HubLink | None) -> Mapping[str, float] | None:
    """The values to send: this process's, or every worker's summed (None: not now)."""
    if link is None:
        return metrics.snapshot()
    return await link.metrics_sum()


async def run_statsd(metrics: Metrics, config: Config, link: HubLink | None = None) -> None:
    """Send the metrics to ``config.statsd_host`` every rotate interval, until cancelled.

    ``link``: a worker's link to the hub (``--workers N``): the metrics sent are then the
    sum over every worker (:meth:`.HubLink.metrics_sum`, as ``/metrics`` answers), which
    one worker sends for all, so that the collector gets one server's gauges, not each
    worker's in turn. An interval whose sum is not available (the hub is gone) is skipped.
    """
    host, _, port_text = config.statsd_host.rpartition(":")
    host = host.strip("[]")
    interval = config.metrics_rotate_interval
    log.info(
        "Send statsd metrics to %s with every %gs (prefix=%s%s)",
        config.statsd_host,
        interval,
        config.statsd_prefix,
        f", tags={dict(config.metrics_tags)}, style={config.statsd_tags_format}"
        if config.metrics_tags
        else "",
    )
    sock: trio.socket.SocketType | None = None
    previous = await _values(metrics, link)
    try:
        while True:
            await trio.sleep(interval)
            current = await _values(metrics, link)
            if current is None:
                continue  # (the hub is gone: the worker is stopping)
            if previous is None:  # (no sum at the start: the growth counts from here)
                previous = current
                continue
            lines = statsd_lines(
                metrics,
                previous,
                prefix=config.statsd_prefix,
                tags=config.metrics_tags,
                tags_format=config.statsd_tags_format,
                values=current,
            )
            previous = current
            try:
                if sock is None:
                    sock = await _open(host, int(port_text))
                for packet in statsd_packets(lines, config.statsd_max_packet_size):
                    await sock.send(packet)
            except OSError as exc:  # includes name resolution (socket.gaierror)
                log.debug("statsd: cannot send to %s: %s", config.statsd_host, exc)
                if sock is not None:
                    sock.close()
                    sock = None
    finally:
        if sock is not None:
            sock.close()
