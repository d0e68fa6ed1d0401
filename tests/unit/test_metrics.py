"""The instance's metrics: DataSphere's node_* families, and alias_* for alias traffic."""

from __future__ import annotations

from checkpoint2svc.runtime.metrics import MAX_ALIASES, NodeMetrics


def test_alias_requests_count_for_the_node_and_for_their_alias() -> None:
    metrics = NodeMetrics("greeter")
    metrics.observe(0.002, http_code=200)
    metrics.observe(0.02, http_code=200, alias="greet")
    metrics.observe(0.5, grpc_code="OK", alias="greet")
    text = metrics.render()
    assert 'node_requests_total{node_id="greeter"} 3' in text
    assert 'alias_requests_total{alias_id="greet"} 2' in text
    assert 'alias_http_codes_total{alias_id="greet",code="200"} 1' in text
    assert 'alias_grpc_codes_total{alias_id="greet",code="OK"} 1' in text
    assert 'alias_request_durations_bucket{alias_id="greet",le="0.025"} 1' in text
    assert 'alias_request_durations_bucket{alias_id="greet",le="+Inf"} 2' in text
    assert text.count("# TYPE alias_requests counter") == 1


def test_without_alias_traffic_there_are_no_alias_families() -> None:
    metrics = NodeMetrics("greeter")
    metrics.observe(0.001, http_code=200)
    assert "alias_" not in metrics.render()


def test_alias_label_values_are_bounded() -> None:
    metrics = NodeMetrics("n")
    for i in range(MAX_ALIASES + 10):
        metrics.observe(0.001, http_code=200, alias=f"a{i}")
    assert metrics.render().count("alias_requests_total{") == MAX_ALIASES
