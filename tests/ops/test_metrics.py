"""cableway.ops.metrics: AnyCable's names, Prometheus exposition text, the metrics log line."""

from __future__ import annotations

import pytest

from cableway.ops.metrics import DEFINITIONS, PREFIX, Metric, Metrics

SMALL = (
    Metric("test_total", "counter", "Total number of smth"),
    Metric("any_total", "counter", "Total number of anything"),
    Metric("tests", "gauge", "Number of active smth"),
)


def test_anycable_metric_names_and_types() -> None:
    kinds = {metric.name: metric.kind for metric in DEFINITIONS}
    gauges = {"clients_num", "clients_uniq_num", "broadcast_streams_num", "sse_clients_num"}
    counters = {
        "client_msg_total",
        "failed_client_msg_total",
        "failed_auths_total",
        "server_msg_total",
        "failed_server_msg_total",
        "timeout_server_msg_total",
        "data_sent_total",
        "data_rcvd_total",
        "disconnected_slow_clients_total",
        "publications_total",
        "broadcast_msg_total",
        "remote_commands_total",
        "failed_broadcast_msg_total",
    }
    assert {name for name, kind in kinds.items() if kind == "gauge"} >= gauges
    assert {name for name, kind in kinds.items() if kind == "counter"} == counters
    assert len(kinds) == len(DEFINITIONS)  # no duplicates
    assert all(metric.help and "\n" not in metric.help for metric in DEFINITIONS)
    # AnyCable renders counters before gauges
    order = [metric.kind for metric in DEFINITIONS]
    assert order == sorted(order)
    assert PREFIX == "anycable_go_"


def test_prometheus_text_is_exactly_anycables() -> None:
    metrics = Metrics(SMALL)
    metrics.inc("test_total", 3)
    metrics.set("tests", 123)
    assert metrics.render_prometheus() == (
        "\n"
        "# HELP anycable_go_test_total Total number of smth\n"
        "# TYPE anycable_go_test_total counter\n"
        "anycable_go_test_total 3\n"
        "\n"
        "# HELP anycable_go_any_total Total number of anything\n"
        "# TYPE anycable_go_any_total counter\n"
        "anycable_go_any_total 0\n"
        "\n"
        "# HELP anycable_go_tests Number of active smth\n"
        "# TYPE anycable_go_tests gauge\n"
        "anycable_go_tests 123\n"
    )


def test_prometheus_tags_become_labels_in_order_and_escaped() -> None:
    metrics = Metrics(SMALL[:1])
    metrics.inc("test_total")
    tags = (("env", "dev"), ("instance", 'R2"D2\\\n'))
    assert metrics.render_prometheus(tags) == (
        "\n"
        "# HELP anycable_go_test_total Total number of smth\n"
        "# TYPE anycable_go_test_total counter\n"
        'anycable_go_test_total{env="dev", instance="R2\\"D2\\\\\\n"} 1\n'
    )


def test_gauge_functions_are_evaluated_when_read() -> None:
    metrics = Metrics(SMALL)
    sessions = ["a", "b"]
    metrics.set("tests", lambda: len(sessions))
    assert metrics.value("tests") == 2
    sessions.append("c")
    assert "anycable_go_tests 3\n" in metrics.render_prometheus()
    assert metrics.snapshot()["tests"] == 3
    with pytest.raises(TypeError):
        metrics.inc("tests")
    metrics.set("tests", 7)  # back to a plain value
    metrics.inc("tests")
    metrics.dec("tests", 3)
    assert metrics.value("tests") == 5


def test_float_values_render_without_a_useless_fraction() -> None:
    metrics = Metrics(SMALL)
    metrics.set("tests", 2.0)
    assert "anycable_go_tests 2\n" in metrics.render_prometheus()
    metrics.set("tests", 0.25)
    assert "anycable_go_tests 0.25\n" in metrics.render_prometheus()


def test_counters_only_grow_and_gauges_only_are_set() -> None:
    metrics = Metrics(SMALL)
    with pytest.raises(ValueError, match="cannot decrease"):
        metrics.inc("test_total", -1)
    with pytest.raises(TypeError):
        metrics.set("test_total", 5)
    with pytest.raises(TypeError):
        metrics.dec("test_total")
    with pytest.raises(KeyError):
        metrics.inc("nope_total")
    with pytest.raises(KeyError):
        metrics.set("nope", 1)
    with pytest.raises(ValueError, match="already registered"):
        metrics.register(SMALL[0])
    assert metrics.snapshot() == {"test_total": 0, "any_total": 0, "tests": 0}


def test_log_line_shows_counter_deltas_and_gauge_values_sorted() -> None:
    metrics = Metrics(SMALL)
    metrics.inc("test_total", 5)
    metrics.set("tests", 2)
    assert metrics.log_line() == "any_total=0 test_total=5 tests=2"
    previous = metrics.snapshot()
    metrics.inc("test_total", 2)
    metrics.inc("any_total")
    metrics.set("tests", 4)
    assert metrics.log_line(previous) == "any_total=1 test_total=2 tests=4"
    assert metrics.log_fields(previous) == {"any_total": 1, "test_total": 2, "tests": 4}
    assert list(metrics.log_fields(previous)) == ["any_total", "test_total", "tests"]
    # still cumulative for Prometheus
    assert "anycable_go_test_total 7\n" in metrics.render_prometheus()


def test_default_registry_renders_every_anycable_metric() -> None:
    metrics = Metrics()
    metrics.inc("client_msg_total", 2)
    metrics.inc("data_rcvd_total", 100)
    metrics.set("clients_num", 1)
    text = metrics.render_prometheus((("node_id", "xyz"),))
    assert text.startswith("\n# HELP ")
    assert text.endswith("\n")
    blocks = text[1:-1].split("\n\n")
    assert len(blocks) == len(DEFINITIONS)
    for block, metric in zip(blocks, DEFINITIONS, strict=True):
        name = PREFIX + metric.name
        help_line, type_line, sample = block.split("\n")
        assert help_line == f"# HELP {name} {metric.help}"
        assert type_line == f"# TYPE {name} {metric.kind}"
        assert sample.startswith(name + '{node_id="xyz"} ')
    assert 'anycable_go_client_msg_total{node_id="xyz"} 2\n' in text
    assert 'anycable_go_data_rcvd_total{node_id="xyz"} 100\n' in text
    assert "# TYPE anycable_go_clients_num gauge\n" in text
    assert 'anycable_go_clients_num{node_id="xyz"} 1\n' in text
    assert (
        "# HELP anycable_go_failed_auths_total The total number of failed authentication attempts\n"
    ) in text
    assert metrics.log_line().split()[0] == "broadcast_msg_total=0"


def test_one_delivery_counts_the_publication_messages_and_bytes_in_one_call() -> None:
    metrics = Metrics()
    metrics.inc("server_msg_total", 5)
    metrics.delivered(1, 1, 304)
    metrics.delivered(0, 3, 0)
    assert metrics.value("broadcast_msg_total") == 1
    assert metrics.value("server_msg_total") == 5 + 1 + 3
    assert metrics.value("data_sent_total") == 304
    assert "anycable_go_data_sent_total 304\n" in metrics.render_prometheus()
