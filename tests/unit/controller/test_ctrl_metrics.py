"""Prometheus text rendering by hand: counters, gauges (set and callbacks), histograms, escaping."""
from __future__ import annotations

import pytest

from imageclone_controller.metrics import ControllerMetrics, Registry, format_value


def test_counters_and_gauges_render_in_the_text_format():
    registry = Registry()
    reconciles = registry.counter("x_reconcile_total", "Reconciles by result.", ("kind", "result"))
    reconciles.inc(kind="Deployment", result="rewritten")
    reconciles.inc(2, kind="Deployment", result="unchanged")
    registry.gauge("x_depth", "Depth.", callback=lambda: 7)
    registry.gauge("x_leader", "Leader.").set(1)
    assert registry.render() == (
        "# HELP x_reconcile_total Reconciles by result.\n"
        "# TYPE x_reconcile_total counter\n"
        'x_reconcile_total{kind="Deployment",result="rewritten"} 1\n'
        'x_reconcile_total{kind="Deployment",result="unchanged"} 2\n'
        "# HELP x_depth Depth.\n# TYPE x_depth gauge\nx_depth 7\n"
        "# HELP x_leader Leader.\n# TYPE x_leader gauge\nx_leader 1\n"
    )


def test_label_values_and_help_are_escaped():
    registry = Registry()
    registry.counter("x_total", 'Help with \\ and\nnewline.', ("reason",)).inc(reason='a "quoted" \\ value\n')
    text = registry.render()
    assert "# HELP x_total Help with \\\\ and\\nnewline." in text
    assert 'x_total{reason="a \\"quoted\\" \\\\ value\\n"} 1' in text


def test_histograms_are_cumulative_with_sum_and_count():
    registry = Registry()
    latency = registry.histogram("x_seconds", "Latency.", buckets=(0.5, 1, 5))
    for value in (0.2, 0.7, 0.9, 3, 10):
        latency.observe(value)
    lines = registry.render().splitlines()
    assert 'x_seconds_bucket{le="0.5"} 1' in lines
    assert 'x_seconds_bucket{le="1"} 3' in lines
    assert 'x_seconds_bucket{le="5"} 4' in lines
    assert 'x_seconds_bucket{le="+Inf"} 5' in lines
    assert "x_seconds_sum 14.8" in lines and "x_seconds_count 5" in lines


def test_callback_samples_with_labels_and_a_failing_callback_does_not_break_the_scrape():
    registry = Registry()
    registry.gauge("x_remaining", "Quota left.", ("registry",),
                   callback=lambda: [({"registry": "docker.io"}, 99), ({"registry": "quay.io"}, 3)])
    registry.gauge("x_broken", "Broken.", callback=lambda: 1 / 0)
    text = registry.render()
    assert 'x_remaining{registry="docker.io"} 99' in text and 'x_remaining{registry="quay.io"} 3' in text
    assert "# TYPE x_broken gauge" in text


def test_misuse_is_refused():
    registry = Registry()
    counter = registry.counter("x_total", "x", ("a",))
    with pytest.raises(ValueError):
        counter.inc(b="1")
    with pytest.raises(ValueError):
        counter.inc(-1, a="1")
    with pytest.raises(ValueError):
        registry.counter("x_total", "again")
    with pytest.raises(ValueError):
        registry.histogram("h", "h", buckets=(2, 1))


def test_values_format_like_prometheus():
    assert [format_value(v) for v in (1.0, 2.5, float("inf"), float("nan"))] == ["1", "2.5", "+Inf", "NaN"]


def test_the_controller_metric_set_renders_with_its_families():
    metrics = ControllerMetrics("9.9.9")
    metrics.reconciles.inc(kind="CronJob", result="rewritten")
    metrics.rewrite_latency.observe(0.4)
    metrics.leader.set(1)
    text = metrics.registry.render()
    for family in ("imageclone_build_info", "imageclone_reconcile_total", "imageclone_reconcile_failures_total",
                   "imageclone_image_backups_total", "imageclone_rewrite_latency_seconds", "imageclone_leader",
                   "imageclone_events_total", "imageclone_watch_restarts_total"):
        assert f"# TYPE {family} " in text
    assert 'imageclone_build_info{version="9.9.9"} 1' in text and "imageclone_leader 1" in text
