"""The metrics registry: AnyCable-Go's metric names, Prometheus text and the metrics log line.

Pure (no I/O, no trio): the transport increments counters and sets gauges, the metrics
endpoint serves :meth:`Metrics.render_prometheus` and the ``--metrics_log`` task logs
:meth:`Metrics.log_fields` every ``--metrics_rotate_interval`` seconds (spec §13.4)::

    metrics = Metrics()
    metrics.set("clients_num", lambda: len(server.sessions))  # evaluated when read
    metrics.inc("client_msg_total")
    metrics.inc("data_rcvd_total", len(frame))
    body = metrics.render_prometheus(config.metrics_tags)

    previous = metrics.snapshot()
    ...  # every rotate interval:
    log.info("", extra={"context": "metrics", **metrics.log_fields(previous)})
    previous = metrics.snapshot()

Counters are cumulative in Prometheus; the log line shows how much each grew since the
previous snapshot (gauges show their current value), as AnyCable's log writer does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFINITIONS",
    "PREFIX",
    "STATSD_TAG_FORMATS",
    "Metric",
    "Metrics",
    "Number",
    "statsd_lines",
    "statsd_packets",
]

PREFIX = "anycable_go_"

Number = int | float
Kind = Literal["counter", "gauge"]


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric's name (without :data:`PREFIX`), type and ``# HELP`` text."""

    name: str
    kind: Kind
    help: str


#: AnyCable-Go's metrics that Cableway produces, in the order they are rendered (counters,
#: then gauges, as AnyCable renders them). The HELP texts of the metrics AnyCable 1.4 already
#: had are AnyCable's own.
DEFINITIONS: tuple[Metric, ...] = (
    Metric("client_msg_total", "counter", "The total number of received messages from clients"),
    Metric(
        "failed_client_msg_total",
        "counter",
        "The total number of unrecognized messages received from clients",
    ),
    Metric("failed_auths_total", "counter", "The total number of failed authentication attempts"),
    Metric("server_msg_total", "counter", "The total number of messages sent to clients"),
    Metric(
        "failed_server_msg_total",
        "counter",
        "The total number of messages failed to send to clients",
    ),
    Metric(
        "timeout_server_msg_total",
        "counter",
        "The total number of messages that timed out while being sent to clients",
    ),
    Metric("data_sent_total", "counter", "The total amount of bytes sent to clients"),
    Metric("data_rcvd_total", "counter", "The total amount of bytes received from clients"),
    Metric(
        "disconnected_slow_clients_total",
        "counter",
        "The total number of clients disconnected for being too slow",
    ),
    Metric(
        "publications_total",
        "counter",
        "The total number of publications received from broadcasters (HTTP)",
    ),
    Metric(
        "broadcast_msg_total",
        "counter",
        "The total number of messages received through PubSub (for broadcast)",
    ),
    Metric("remote_commands_total", "counter", "The total number of remote commands executed"),
    Metric(
        "failed_broadcast_msg_total",
        "counter",
        "The total number of unrecognized messages received through PubSub",
    ),
    Metric("clients_num", "gauge", "The number of active clients"),
    Metric(
        "clients_uniq_num",
        "gauge",
        "The number of unique clients (with respect to connection identifiers)",
    ),
    Metric("broadcast_streams_num", "gauge", "The number of active broadcasting streams"),
    Metric("disconnect_queue_size", "gauge", "The size of delayed disconnect"),
    Metric("sse_clients_num", "gauge", "The number of active SSE clients"),
)

#: Registered only by nodes that use Redis (adapters, --pubsub=redis, --broker=redis).
REDIS_DEFINITIONS: tuple[Metric, ...] = (
    Metric("redis_up", "gauge", "1 when every Redis connection of this node is up, else 0"),
    Metric(
        "redis_pending_commands",
        "gauge",
        "Commands queued for Redis (publications, broker writes) and not yet sent",
    ),
    Metric(
        "redis_dropped_commands",
        "gauge",
        "Commands dropped since start because the Redis queue was full during an outage",
    ),
)


def _number(value: Number) -> str:
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value)


def _label_value(text: str) -> str:
    """Escape a Prometheus label value (backslash, double quote, newline)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(tags: Iterable[tuple[str, str]]) -> str:
    pairs = [f'{key}="{_label_value(value)}"' for key, value in tags]
    return "{" + ", ".join(pairs) + "}" if pairs else ""


class Metrics:
    """Counters and gauges by name. Unknown names raise ``KeyError``."""

    def __init__(self, definitions: Iterable[Metric] = DEFINITIONS) -> None:
        self._metrics: dict[str, Metric] = {}
        self._values: dict[str, Number] = {}
        self._functions: dict[str, Callable[[], Number]] = {}
        for metric in definitions:
            self.register(metric)

    def register(self, metric: Metric) -> None:
        """Add a metric (starting at 0); its name must be new."""
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name!r} is already registered")
        self._metrics[metric.name] = metric
        self._values[metric.name] = 0

    @property
    def definitions(self) -> tuple[Metric, ...]:
        return tuple(self._metrics.values())

    def inc(self, name: str, n: Number = 1) -> None:
        """Add ``n`` to a counter (``n >= 0``) or to a gauge (any ``n``; negative decreases)."""
        if n >= 0 and name not in self._functions:  # the usual case (a KeyError if unknown)
            self._values[name] += n
            return
        metric = self._metrics[name]
        if metric.kind == "counter" and n < 0:
            raise ValueError(f"counter {name!r} cannot decrease")
        if name in self._functions:
            raise TypeError(f"gauge {name!r} is computed by a function")
        self._values[name] += n

    def delivered(self, broadcasts: int, messages: int, data: int) -> None:
        """``inc`` of ``broadcast_msg_total``, ``server_msg_total`` and ``data_sent_total``
        by these (non-negative) counts, in one call: what one delivered publication
        counts (:class:`cableway.node.intake.Counters`)."""
        values = self._values
        values["broadcast_msg_total"] += broadcasts
        values["server_msg_total"] += messages
        values["data_sent_total"] += data

    def dec(self, name: str, n: Number = 1) -> None:
        """Subtract ``n`` from a gauge."""
        if self._metrics[name].kind != "gauge":
            raise TypeError(f"{name!r} is a counter: it cannot decrease")
        self.inc(name, -n)

    def set(self, name: str, value: Number | Callable[[], Number]) -> None:
        """Set a gauge to a value, or to a function called whenever the gauge is read."""
        if self._metrics[name].kind != "gauge":
            raise TypeError(f"{name!r} is a counter: only gauges can be set")
        if callable(value):
            self._functions[name] = value
            self._values[name] = 0
        else:
            self._functions.pop(name, None)
            self._values[name] = value

    def value(self, name: str) -> Number:
        """The current value (a gauge function is called)."""
        function = self._functions.get(name)
        if function is not None:
            return function()
        return self._values[name]

    def snapshot(self) -> dict[str, Number]:
        """Every metric's current value, by name."""
        return {name: self.value(name) for name in self._metrics}

    def render_prometheus(
        self, tags: Iterable[tuple[str, str]] = (), values: Mapping[str, Number] | None = None
    ) -> str:
        """The Prometheus text exposition, as AnyCable-Go writes it.

        Each metric is a blank line, ``# HELP``, ``# TYPE`` and the sample, named
        ``anycable_go_<name>``, with ``tags`` (``Config.metrics_tags``) as labels.
        ``values`` (e.g. the sum over ``--workers``) replaces this process's values; a
        metric it lacks is rendered as 0.
        """
        labels = _labels(tags)
        out: list[str] = []
        for name, metric in self._metrics.items():
            full = PREFIX + name
            value = self.value(name) if values is None else values.get(name, 0)
            out.append(f"\n# HELP {full} {metric.help}\n")
            out.append(f"# TYPE {full} {metric.kind}\n")
            out.append(f"{full}{labels} {_number(value)}\n")
        return "".join(out)

    def log_fields(self, previous: Mapping[str, Number] | None = None) -> dict[str, Number]:
        """Every metric for the metrics log, sorted by name: counters as their growth since
        ``previous`` (a :meth:`snapshot`; None = since the start), gauges as they are."""
        fields: dict[str, Number] = {}
        for name in sorted(self._metrics):
            value = self.value(name)
            if self._metrics[name].kind == "counter" and previous is not None:
                value -= previous.get(name, 0)
            fields[name] = value
        return fields

    def log_line(self, previous: Mapping[str, Number] | None = None) -> str:
        """:meth:`log_fields` as ``name=value`` pairs separated by spaces."""
        return " ".join(
            f"{name}={_number(value)}" for name, value in self.log_fields(previous).items()
        )


# -- StatsD ----------------------------------------------------------------------------------

#: ``--statsd_tags_format``: (where the tags go, first separator, between tags, key/value)
#: as AnyCable-Go's StatsD client (smira/go-statsd) writes them.
STATSD_TAG_FORMATS: dict[str, tuple[Literal["name", "suffix"], str, str, str]] = {
    "datadog": ("suffix", "|#", ",", ":"),
    "influxdb": ("name", ",", ",", "="),
    "graphite": ("name", ";", ";", "="),
}


def statsd_lines(
    metrics: Metrics,
    previous: Mapping[str, Number] | None,
    *,
    prefix: str = "anycable_go.",
    tags: Iterable[tuple[str, str]] = (),
    tags_format: str = "datadog",
    values: Mapping[str, Number] | None = None,
) -> list[str]:
    """The StatsD lines of one rotate interval, as AnyCable-Go sends them.

    Counters as ``<prefix><name>:<growth since previous>|c`` (left out when they did not
    grow), then gauges as ``<prefix><name>:<value>|g`` (a negative gauge is preceded by a
    ``:0|g``, since StatsD reads ``-n`` as a decrement); ``tags`` in ``tags_format``.
    ``values`` (e.g. the sum over ``--workers``) replaces this process's values; a metric
    it lacks counts as 0.
    """
    placement, first, between, pair = STATSD_TAG_FORMATS[tags_format]
    tag_text = between.join(f"{key}{pair}{value}" for key, value in tags)
    if tag_text:
        tag_text = first + tag_text
    in_name = tag_text if placement == "name" else ""
    suffix = tag_text if placement == "suffix" else ""
    counters: list[str] = []
    gauges: list[str] = []
    for metric in metrics.definitions:
        value = int(metrics.value(metric.name) if values is None else values.get(metric.name, 0))
        name = f"{prefix}{metric.name}{in_name}"
        if metric.kind == "counter":
            growth = value - int(previous.get(metric.name, 0)) if previous is not None else value
            if growth:
                counters.append(f"{name}:{growth}|c{suffix}")
        else:
            if value < 0:
                gauges.append(f"{name}:0|g{suffix}")
            gauges.append(f"{name}:{value}|g{suffix}")
    return counters + gauges


def statsd_packets(lines: Iterable[str], max_size: int) -> list[bytes]:
    """Lines, each ending in a newline, batched into datagrams of at most ``max_size``
    bytes (a longer line goes alone)."""
    packets: list[bytes] = []
    current = bytearray()
    for line in lines:
        data = line.encode() + b"\n"
        if current and len(current) + len(data) > max_size:
            packets.append(bytes(current))
            current = bytearray()
        current += data
    if current:
        packets.append(bytes(current))
    return packets
